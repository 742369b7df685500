"""What the control plane and the media plane (LiveKit Agents workers) say to each other.

Everything travels over LiveKit or one authenticated HTTP route, never a side channel:

- control → job, at dispatch: `CallJob` / `ConsultJob` as the dispatch's metadata (JSON).
- control → call job, during the call: the call room's metadata (`CallRoomState`). It is a level,
  not an event: a job that (re)joins reads it and plays hold audio if `hold` is set, so a
  re-dispatched job after a worker crash resumes by itself.
- job → control: `POST {control_url}/internal/media` with a `MediaReport` (transcript segments,
  hold audio started/stopped, brief spoken, B's questions to the briefing and their answers, where
  the job's service functions ran), authenticated
  by `internal_token`.

Workers are stateless: they keep nothing a restart of either side would need.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.models import BriefingExchange, CallSummary, FunctionStatus, TranscriptSegment

INTERNAL_PATH = "/internal/media"
ALIVE_PATH = INTERNAL_PATH + "/alive"  # a worker's held liveness connection (see WorkerGone)
WEBHOOK_PATH = "/livekit/webhook"


def media_identity(call_id: str) -> str:
    """The call job's participant identity in `call-<id>`."""
    return f"media-{call_id}"


def briefing_identity(transfer_id: str) -> str:
    """The consult job's participant identity in `consult-<tid>`."""
    return f"briefing-{transfer_id}"


def job_identity(call_id: str, transfer_id: str | None = None) -> str:
    """The identity of the job a spec or report is about: the consult's if it names a transfer."""
    return briefing_identity(transfer_id) if transfer_id else media_identity(call_id)


def internal_token(api_secret: str) -> str:
    """Bearer token for job → control reports. Derived from the LiveKit API secret, which every
    worker already needs to register with the server, so there is no second secret to deploy."""
    return hmac.new(api_secret.encode(), b"warm-transfer/internal/v1", hashlib.sha256).hexdigest()


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_id: str
    caller_identity: str
    control_url: str = Field(description="where the job reports (base URL of the control plane)")
    transcribe: bool = True


class CallJob(_Job):
    """In the caller's room for the whole call: transcribes, plays hold audio on request."""

    kind: Literal["call"] = "call"

    @property
    def identity(self) -> str:
        return media_identity(self.call_id)


class ConsultJob(_Job):
    """In the consult room: sends the card and speaks the brief to B only; transcribes the consult."""

    kind: Literal["consult"] = "consult"
    transfer_id: str
    target: str
    summary: CallSummary
    # B's questions to the briefing are answered from the summary and this (functions.qa.briefing_qa).
    transcript: list[TranscriptSegment] = Field(default_factory=list, max_length=2000)
    answer_questions: bool = True

    @property
    def identity(self) -> str:
        return briefing_identity(self.transfer_id)


JobSpec = Annotated[CallJob | ConsultJob, Field(discriminator="kind")]


class JobEnvelope(BaseModel):
    job: JobSpec


class CallRoomState(BaseModel):
    """The call room's metadata: what the call job should be doing, and saying to the caller.

    Level-triggered like `hold`: a job that (re)joins reads it. The texts belong to one hold
    `episode` (its transfer's id): the job says `announce` when that hold starts, `remind` every
    `remind_every_s` of it, and `say` when it ends (the caller back with A), each once per episode,
    and only while fresh (`at`), so a job re-dispatched later does not repeat old news."""

    v: int = 1
    hold: bool = False
    episode: str = Field("", max_length=64)
    announce: str = Field("", max_length=300)
    remind: str = Field("", max_length=300)
    remind_every_s: float = Field(0.0, ge=0)
    say: str = Field("", max_length=300)
    at: float = Field(0.0, description="when the control plane wrote it (Unix time)")


class SegmentReport(BaseModel):
    kind: Literal["segment"] = "segment"
    call_id: str
    transfer_id: str | None = None
    segment: TranscriptSegment
    lag_s: float = Field(0.0, description="end of utterance → report, seconds")
    dropped: int = Field(0, ge=0, description="utterances this room's job dropped so far (too far behind)")


class TranscriptionStatus(BaseModel):
    """How far a room's live transcription is behind, sent when it crosses BEHIND_WARN_S either way,
    when it drops audio, and every few seconds while behind (`media.listen`)."""

    kind: Literal["transcription"] = "transcription"
    call_id: str
    transfer_id: str | None = None
    behind_s: float = Field(0.0, ge=0, description="now - end of the oldest utterance not yet transcribed")
    dropped: int = Field(0, ge=0, description="utterances dropped so far (they waited longer than MAX_BEHIND_S)")
    dropped_s: float = Field(0.0, ge=0, description="seconds of speech dropped so far")


BEHIND_WARN_S = 3.0  # captions this far behind are shown as behind, and the brief says it may miss them
MAX_BEHIND_S = 8.0  # an utterance that waited longer than this is dropped: new speech stays current


class MediaEvent(BaseModel):
    kind: Literal["event"] = "event"
    call_id: str
    transfer_id: str | None = None
    event: Literal["joined", "listening", "hold_started", "hold_stopped", "brief_started", "brief_done", "brief_failed"]
    detail: str = ""


class QAReport(BaseModel):
    """A question B asked the briefing and the answer the consult job spoke (`media.briefing_qa`)."""

    kind: Literal["qa"] = "qa"
    call_id: str
    transfer_id: str
    exchange: BriefingExchange


class FunctionsReport(BaseModel):
    """A job's gateway: where its service functions ran (transcribe, synthesize_speech, …), sent when a
    function's status changes and at most every FUNCTIONS_REFRESH_S otherwise (`media.function_reports`)."""

    kind: Literal["functions"] = "functions"
    call_id: str
    transfer_id: str | None = None
    functions: list[FunctionStatus] = Field(default_factory=list, max_length=20)


FUNCTIONS_REFRESH_S = 15.0


class JobRef(BaseModel):
    room: str
    identity: str


class WorkerHeartbeat(BaseModel):
    """A worker's main process, every HEARTBEAT_S: the jobs it runs for this control plane. LiveKit
    keeps the participant of a job whose process died for its 15 s ping timeout and sends no event
    when a worker goes away; the heartbeat is how the control plane learns of both in seconds."""

    kind: Literal["heartbeat"] = "heartbeat"
    worker_id: str
    jobs: list[JobRef] = Field(default_factory=list, max_length=500)
    stopping: bool = Field(False, description="a clean stop: its jobs leave their rooms themselves")
    held: bool = Field(False, description="its liveness connection to this control plane is open (ALIVE_PATH)")


class WorkerGone(BaseModel):
    """Made by the control plane itself, not sent: the worker's liveness connection (ALIVE_PATH) broke
    without the worker ending it. The kernel closes a process's connections when it dies, so this
    comes within milliseconds of a `kill -9`; a worker that is only starved of CPU keeps it open."""

    kind: Literal["worker_gone"] = "worker_gone"
    worker_id: str


HEARTBEAT_S = 0.5
# No heartbeat for this long: the worker is gone, its job participants are ghosts. A worker holding its
# liveness connection is known to be alive (its death would have closed it), so it is only taken as
# stuck after WORKER_STUCK_S: a starved worker's late beats no longer cut healthy hold audio.
WORKER_SILENT_S = 2.5
WORKER_STUCK_S = 10.0
ALIVE_KEEPALIVE_S = 5.0  # a byte on the liveness connection this often: no idle timeout closes it
ALIVE_ROTATE_S = 1800.0  # then it is ended and opened again: its body stays far below the route's limit
WORKER_ID_RE = r"^worker-[0-9a-f]{12}$"


MediaReport = Annotated[
    SegmentReport | MediaEvent | FunctionsReport | TranscriptionStatus | QAReport | WorkerHeartbeat | WorkerGone,
    Field(discriminator="kind"),
]


class ReportEnvelope(BaseModel):
    report: MediaReport
