"""The functions gateway: the local backend, the Modal backend's errors and time bounds, and the fallback.

Modal is really "unreachable" here: no token is configured, so `modal.Function.from_name(...)` fails
with Modal's own AuthError. Other Modal failures (not deployed, hanging, refusing, answering garbage) use
a stand-in for the lookup that raises Modal's real exception types. No fake Modal token is ever set.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import modal.exception
import pytest
from pydantic import BaseModel

from functions.errors import ConfigError, InvalidInput, ProviderError, ProviderTimeout
from functions.gateway import (
    ENTRY_POINTS,
    EntryPoint,
    FunctionsGateway,
    LocalBackend,
    ModalBackend,
    ModalMismatch,
    ModalNotConfigured,
    ModalNotDeployed,
    ModalTimeout,
    ModalUnavailable,
    from_wire,
    make_gateway,
    merge_status,
    modal_token_problem,
    to_wire,
)
from functions.models import (
    BriefingAnswer,
    BriefingQuestion,
    CallSummary,
    DialRequest,
    DialResult,
    FunctionStatus,
    QuestionKind,
    Role,
    SpeechRequest,
    SpeechResult,
    SummarizeRequest,
    TokenRequest,
    TokenResponse,
    TranscribeRequest,
    TranscribeResult,
    TranscriptSegment,
    Word,
)
from functions.services import build_services
from functions.settings import Settings, load_settings

pytestmark = pytest.mark.unit

SECRET = "unit-secret-" + "y" * 32
SEGMENTS = [
    TranscriptSegment(speaker="caller", text="Hi, this is Maria Lopez, account number 4471."),
    TranscriptSegment(speaker="caller", text="I was charged twice and I want a refund."),
]
BOUND_S = 5.0  # every failure below must surface well within this


@pytest.fixture(autouse=True)
def no_modal_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "livekit_url": "wss://livekit.example.test",
        "livekit_api_key": "APIunit",
        "livekit_api_secret": SECRET,
        "openai_api_key": "",
        "openai_base_url": "",
        "summarizer_provider": "offline",
        "twilio_account_sid": "",
        "functions_backend": "modal",
        "modal_timeout_s": 0.5,
        "modal_fallback_local": False,
    }
    return load_settings(**{**values, **overrides})


# --- stand-ins for the Modal side -------------------------------------------------------------------------


class _Aio:
    def __init__(self, fn) -> None:
        self.aio = fn


class FakeHandle:
    """Shaped like `modal.Function`: `hydrate.aio()` and `remote.aio(payload)`."""

    def __init__(self, *, hydrate=None, remote=None) -> None:
        self.hydrations = 0
        self.payloads: list[dict] = []

        async def _hydrate() -> None:
            self.hydrations += 1
            if hydrate is not None:
                await hydrate()

        async def _remote(payload: dict) -> Any:
            self.payloads.append(payload)
            return await remote(payload)

        self.hydrate = _Aio(_hydrate)
        self.remote = _Aio(_remote)


def token_ok() -> None:
    """For the stand-in lookups: as if a token were configured (nothing is contacted either way)."""
    return None


def stand_in(settings: Settings, handles: FakeHandle | dict[str, FakeHandle], seen=None) -> ModalBackend:
    """A Modal backend whose lookup is the stand-in, as if a token were configured."""
    return ModalBackend(settings, lookup=lookup_of(handles, seen), token_problem=token_ok)


def lookup_of(handles: FakeHandle | dict[str, FakeHandle], seen: list[tuple[str, str]] | None = None):
    """A stand-in for `modal.Function.from_name`: one handle for every function, or one per name."""

    def lookup(app_name: str, name: str) -> FakeHandle:
        if seen is not None:
            seen.append((app_name, name))
        return handles[name] if isinstance(handles, dict) else handles

    return lookup


def serving(settings: Settings, name: str):
    """A remote that does what the deployed wrapper does: wire dict in, entry point, wire dict out."""
    services = build_services(settings)
    ep = ENTRY_POINTS[name]

    async def remote(payload: dict) -> dict:
        return to_wire(ep.run(from_wire(ep.request, payload), services))

    return remote


async def hang(*_args: object) -> None:
    await asyncio.Event().wait()


class RecordingBackend:
    """A fallback that records what it was asked to run (so tests can prove dial_phone ran 0 or 1 times)."""

    kind = "local"
    label = "local (in-process)"

    def __init__(self, result: BaseModel) -> None:
        self.result = result
        self.calls: list[tuple[str, BaseModel]] = []

    async def call(self, ep: EntryPoint, request: BaseModel) -> BaseModel:
        self.calls.append((ep.name, request))
        return self.result


DIAL = DialRequest(to="+14155550123", transfer_id="tr-1")
DIALED = DialResult(call_sid="CA" + "1" * 32, to="+14155550123", status="queued")


# --- wire format ---------------------------------------------------------------------------------------------


def test_wire_round_trip_every_model() -> None:
    audio = bytes(range(256)) * 4  # not UTF-8: pydantic's mode="json" alone would fail on it
    samples: list[BaseModel] = [
        TokenRequest(identity="agent-1", role=Role.agent, room="call-1", ttl_s=60),
        TokenResponse(token="t", url="wss://x", room="call-1", identity="agent-1", expires_at=1.5),
        TranscribeRequest(audio=audio, encoding="mulaw", sample_rate=8000),
        TranscribeResult(text="hi", words=[Word(word="hi", start=0.0, end=0.2)], duration_s=0.2, engine="whisper"),
        SummarizeRequest(segments=SEGMENTS),
        CallSummary(caller_name="Maria", issue="double charge", sentiment="frustrated"),
        SpeechRequest(text="hello"),
        SpeechResult(audio_wav=audio, sample_rate=22050, duration_s=0.1, engine="piper"),
        DIAL,
        DIALED,
        BriefingQuestion(question="What's the account number?", summary=CallSummary(), transcript=SEGMENTS),
        BriefingAnswer(answer="The account number is 4471.", kind=QuestionKind.identifier, found=True),
    ]
    for ep in ENTRY_POINTS.values():
        assert any(type(s) is ep.request for s in samples) and any(type(s) is ep.response for s in samples)
    for sample in samples:
        wire = to_wire(sample)
        json.dumps(wire)  # plain JSON types only
        assert from_wire(type(sample), wire) == sample
    assert to_wire(samples[2])["audio"] != audio and isinstance(to_wire(samples[2])["audio"], str)
    with pytest.raises(ValueError, match="not base64"):
        from_wire(SpeechResult, {**to_wire(samples[7]), "audio_wav": "not base64!"})


# --- local backend ------------------------------------------------------------------------------------------------


async def test_local_gateway_calls_functions_directly(tmp_path: Path) -> None:
    from functions.summary.summarization import summarize
    from functions.tokens import mint_token

    settings = make_settings(tmp_path, functions_backend="local")
    services = build_services(settings)
    gateway = make_gateway(settings, services)
    assert isinstance(gateway.primary, LocalBackend) and gateway.fallback is None
    assert gateway.backend_label == "local (in-process)"

    req = SummarizeRequest(segments=SEGMENTS)
    assert await gateway.summarize(req) == summarize(req, services)

    token_req = TokenRequest(identity="caller-1", role=Role.caller, room="call-1")
    token = await gateway.mint_token(token_req)
    claims = jwt.decode(token.token, SECRET, algorithms=["HS256"])
    expected = jwt.decode(mint_token(token_req, settings).token, SECRET, algorithms=["HS256"])
    assert {k: v for k, v in claims.items() if k not in ("exp", "nbf")} == {
        k: v for k, v in expected.items() if k not in ("exp", "nbf")
    }
    assert claims["video"]["canPublishData"] is False  # a caller's grants

    with pytest.raises(TypeError, match="takes a SpeechRequest"):
        await gateway.synthesize_speech(req)  # type: ignore[arg-type]


# --- Modal really unreachable: no token configured -----------------------------------------------------------------


@pytest.fixture
def no_modal_credentials() -> None:
    if modal_token_problem() is None:
        pytest.skip("a Modal token is configured on this machine (~/.modal.toml); this test needs none")


async def test_modal_without_credentials_fails_fast_and_clearly(tmp_path: Path, no_modal_credentials) -> None:
    settings = make_settings(tmp_path, modal_timeout_s=30)
    gateway = make_gateway(settings, build_services(settings))
    assert isinstance(gateway.primary, ModalBackend) and gateway.fallback is None
    assert gateway.backend_label == "Modal · app warm-transfer"

    started = time.monotonic()
    with pytest.raises(ModalNotConfigured) as info:
        await asyncio.wait_for(gateway.summarize(SummarizeRequest(segments=SEGMENTS)), BOUND_S)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"took {elapsed:.2f}s"
    err = info.value
    assert isinstance(err, ConfigError)
    assert "FUNCTIONS_BACKEND=modal" in err.message and "modal token new" in err.message
    # Checked before contacting anything: Modal is never looked up without a token.
    looked_up: list[tuple[str, str]] = []
    backend = ModalBackend(settings, lookup=lookup_of(FakeHandle(), looked_up))  # the real token check
    with pytest.raises(ModalNotConfigured, match="no Modal token"):
        await asyncio.wait_for(backend.call(ENTRY_POINTS["dial_phone"], DIAL), BOUND_S)
    assert looked_up == []


async def test_modal_without_credentials_falls_back_to_local(tmp_path: Path, no_modal_credentials) -> None:
    from functions.summary.summarization import summarize

    settings = make_settings(tmp_path, modal_fallback_local=True, modal_timeout_s=30)
    services = build_services(settings)
    gateway = make_gateway(settings, services)
    assert gateway.backend_label == "Modal · app warm-transfer (falls back to local)"

    req = SummarizeRequest(segments=SEGMENTS)
    started = time.monotonic()
    result = await asyncio.wait_for(gateway.summarize(req), BOUND_S)
    assert time.monotonic() - started < 2.0
    assert result == summarize(req, services)
    assert "last summarize ran locally" in gateway.backend_label
    assert "not configured" in gateway.backend_label

    # dial_phone never reached Modal either, so it may run locally too
    recorder = RecordingBackend(DIALED)
    phone_gateway = FunctionsGateway(gateway.primary, recorder)
    assert await asyncio.wait_for(phone_gateway.dial_phone(DIAL), BOUND_S) == DIALED
    assert recorder.calls == [("dial_phone", DIAL)]


# --- Modal failures through a stand-in lookup -----------------------------------------------------------------------


async def test_not_deployed_names_the_fix(tmp_path: Path) -> None:
    async def missing() -> None:
        raise modal.exception.NotFoundError("Lookup failed for Function 'transcribe' from the 'warm-transfer' app")

    backend = stand_in(make_settings(tmp_path), FakeHandle(hydrate=missing))
    gateway = FunctionsGateway(backend)
    with pytest.raises(ModalNotDeployed, match=r"modal deploy modal_deploy\.py") as info:
        await gateway.transcribe(TranscribeRequest(audio=b"\0\0" * 160, encoding="pcm_s16le", sample_rate=8000))
    assert isinstance(info.value, ConfigError) and "warm-transfer.transcribe" in info.value.message

    recorder = RecordingBackend(DIALED)
    assert await FunctionsGateway(backend, recorder).dial_phone(DIAL) == DIALED  # never dialed remotely
    assert len(recorder.calls) == 1


async def test_hanging_lookup_times_out_within_the_bound(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, modal_timeout_s=0.3)
    handle = FakeHandle(hydrate=hang)
    recorder = RecordingBackend(DIALED)
    gateway = FunctionsGateway(stand_in(settings, handle), recorder)

    started = time.monotonic()
    assert await asyncio.wait_for(gateway.dial_phone(DIAL), BOUND_S) == DIALED  # the lookup hung: nothing dialed
    assert 0.3 <= time.monotonic() - started < 1.5
    assert recorder.calls == [("dial_phone", DIAL)]
    assert "did not answer within 0.3s looking up warm-transfer.dial_phone" in gateway.backend_label


async def test_hanging_call_times_out_and_dial_is_not_repeated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, modal_timeout_s=0.3)
    handle = FakeHandle(remote=hang)
    recorder = RecordingBackend(DIALED)
    gateway = FunctionsGateway(stand_in(settings, handle), recorder)

    started = time.monotonic()
    with pytest.raises(ModalTimeout, match="MODAL_TIMEOUT_S") as info:
        await asyncio.wait_for(gateway.dial_phone(DIAL), BOUND_S)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert isinstance(info.value, ProviderTimeout) and info.value.retryable
    assert recorder.calls == []  # the phone may already be ringing: no second dial
    assert handle.payloads == [to_wire(DIAL)]

    # an idempotent function does fall back after the same timeout
    summary = CallSummary(issue="x")
    gateway = FunctionsGateway(stand_in(settings, handle), RecordingBackend(summary))
    assert await asyncio.wait_for(gateway.summarize(SummarizeRequest(segments=SEGMENTS)), BOUND_S) == summary


async def test_unreachable_modal_is_a_provider_error(tmp_path: Path) -> None:
    async def refused() -> None:
        raise modal.exception.ConnectionError("Deadline exceeded connecting to api.modal.com")

    gateway = FunctionsGateway(stand_in(make_settings(tmp_path), FakeHandle(hydrate=refused)))
    with pytest.raises(ModalUnavailable, match="unreachable") as info:
        await gateway.synthesize_speech(SpeechRequest(text="hello"))
    assert isinstance(info.value, ProviderError) and info.value.retryable and info.value.before_call


async def test_modal_round_trip_equals_local(tmp_path: Path) -> None:
    """With a remote that serves the wire format like the deployed wrapper, results equal the local call."""
    settings = make_settings(tmp_path)
    handle = FakeHandle(remote=serving(settings, "summarize"))
    handles = {"summarize": handle, "mint_token": FakeHandle(remote=serving(settings, "mint_token"))}
    seen: list[tuple[str, str]] = []
    gateway = FunctionsGateway(stand_in(settings, handles, seen))
    local = FunctionsGateway(LocalBackend(build_services(settings)))

    req = SummarizeRequest(segments=SEGMENTS)
    assert await gateway.summarize(req) == await local.summarize(req)
    assert await gateway.summarize(req) == await local.summarize(req)
    assert seen == [("warm-transfer", "summarize")] and handle.hydrations == 1  # looked up once, then cached
    assert handle.payloads[0] == to_wire(req)

    token = await gateway.mint_token(TokenRequest(identity="agent-2", role=Role.agent, room="call-2"))
    assert jwt.decode(token.token, SECRET, algorithms=["HS256"])["sub"] == "agent-2"
    assert seen == [("warm-transfer", "summarize"), ("warm-transfer", "mint_token")]


async def test_function_refusals_pass_through_without_fallback(tmp_path: Path) -> None:
    async def refuse(payload: dict) -> None:
        raise InvalidInput("'+1900' is a premium-rate number")

    recorder = RecordingBackend(DIALED)
    backend = stand_in(make_settings(tmp_path), FakeHandle(remote=refuse))
    with pytest.raises(InvalidInput, match="premium-rate"):
        await FunctionsGateway(backend, recorder).dial_phone(DIAL)
    assert recorder.calls == []


async def test_garbage_answer_is_a_mismatch(tmp_path: Path) -> None:
    async def old_version(payload: dict) -> dict:
        return {"transcript": "hello"}  # not a TranscribeResult

    backend = stand_in(make_settings(tmp_path), FakeHandle(remote=old_version))
    with pytest.raises(ModalMismatch, match="redeploy"):
        await FunctionsGateway(backend).transcribe(TranscribeRequest(audio=b"RIFF"))


async def test_token_from_another_livekit_falls_back_to_local(tmp_path: Path) -> None:
    """Tokens minted with the Modal secret's keys are useless if the app talks to another LiveKit."""
    settings = make_settings(tmp_path, modal_fallback_local=True)
    remote_settings = make_settings(tmp_path, livekit_url="wss://other.example.test")
    remote = serving(remote_settings, "mint_token")
    gateway = FunctionsGateway(stand_in(settings, FakeHandle(remote=remote)), LocalBackend(build_services(settings)))
    token = await gateway.mint_token(TokenRequest(identity="agent-3", role=Role.agent, room="call-3"))
    assert token.url == "wss://livekit.example.test"
    assert "LIVEKIT_URL (wss://other.example.test) is not this app's" in gateway.backend_label

    strict = FunctionsGateway(stand_in(settings, FakeHandle(remote=remote)))
    with pytest.raises(ModalMismatch, match="put this app's LIVEKIT_URL"):
        await strict.mint_token(TokenRequest(identity="agent-3", role=Role.agent, room="call-3"))


async def test_label_clears_once_modal_answers_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, modal_timeout_s=0.2)
    state = {"hang": True}
    remote_ok = serving(settings, "summarize")

    async def flaky(payload: dict) -> Any:
        if state["hang"]:
            await hang()
        return await remote_ok(payload)

    gateway = FunctionsGateway(stand_in(settings, FakeHandle(remote=flaky)), LocalBackend(build_services(settings)))
    req = SummarizeRequest(segments=SEGMENTS)
    await gateway.summarize(req)
    assert "ran locally" in gateway.backend_label
    state["hang"] = False
    await gateway.summarize(req)
    assert gateway.backend_label == "Modal · app warm-transfer (falls back to local)"


def test_every_gateway_method_is_an_entry_point() -> None:
    public = {n for n in vars(FunctionsGateway) if not n.startswith("_") and callable(getattr(FunctionsGateway, n))}
    assert public == set(ENTRY_POINTS)
    assert not ENTRY_POINTS["dial_phone"].idempotent
    assert all(ep.idempotent for name, ep in ENTRY_POINTS.items() if name != "dial_phone")


# --- per-function status ---------------------------------------------------------------------------------------


async def test_status_says_where_each_function_last_ran(tmp_path: Path) -> None:
    """Peer: none (the local backend in this process)."""
    settings = make_settings(tmp_path, functions_backend="local")
    gateway = make_gateway(settings, build_services(settings))
    seen: list[FunctionStatus] = []
    gateway.listeners.append(seen.append)
    assert gateway.function_status == []
    before = time.time()
    await gateway.summarize(SummarizeRequest(segments=SEGMENTS))
    await gateway.mint_token(TokenRequest(identity="caller-1", role=Role.caller, room="call-1"))
    status = gateway.function_status
    assert [st.function for st in status] == ["mint_token", "summarize"]  # in ENTRY_POINTS order
    summ = status[1]
    assert (summ.backend, summ.kind, summ.origin, summ.fell_back, summ.ok) == (
        "local (in-process)",
        "local",
        "control plane",
        False,
        True,
    )
    assert before <= summ.at <= time.time() and 0 <= summ.duration_s < BOUND_S
    assert seen == [status[1], status[0]]  # listeners hear each call as it ends

    with pytest.raises(TypeError):
        await gateway.synthesize_speech(SummarizeRequest(segments=SEGMENTS))  # type: ignore[arg-type]
    speech = gateway.function_status[-1]
    assert speech.function == "synthesize_speech" and not speech.ok and "takes a SpeechRequest" in speech.error


async def test_status_without_a_modal_token_says_every_function_fell_back_at_once(
    tmp_path: Path, no_modal_credentials
) -> None:
    """Peer: none: Modal without a token (nothing is contacted); the local backend runs each function."""
    settings = make_settings(tmp_path, modal_fallback_local=True, modal_timeout_s=30)
    gateway = make_gateway(settings, build_services(settings))
    started = time.monotonic()
    await asyncio.wait_for(gateway.summarize(SummarizeRequest(segments=SEGMENTS)), BOUND_S)
    await asyncio.wait_for(gateway.mint_token(TokenRequest(identity="a-1", role=Role.agent, room="r")), BOUND_S)
    assert time.monotonic() - started < 2.0  # not MODAL_TIMEOUT_S (30 s)
    for st in gateway.function_status:
        assert st.backend == "local (in-process)" and st.fell_back and st.ok
        assert "Modal is not configured: no Modal token" in st.reason


async def test_status_of_a_failed_call_names_the_backend_and_the_error(tmp_path: Path) -> None:
    """Peer: a stand-in Modal lookup that hangs; no fallback for dial_phone after a call timed out."""
    settings = make_settings(tmp_path, modal_timeout_s=0.2)
    gateway = FunctionsGateway(stand_in(settings, FakeHandle(remote=hang)), RecordingBackend(DIALED))
    with pytest.raises(ModalTimeout):
        await asyncio.wait_for(gateway.dial_phone(DIAL), BOUND_S)
    (st,) = gateway.function_status
    assert st.backend == "Modal · app warm-transfer" and st.kind == "modal"
    assert not st.ok and not st.fell_back and "did not answer within 0.2s" in st.error
    assert 0.2 <= st.duration_s < 1.5


def test_merge_keeps_the_newest_status_per_function() -> None:
    def st(function: str, at: float, backend: str = "local (in-process)") -> FunctionStatus:
        return FunctionStatus(function=function, backend=backend, kind="local", at=at)

    mine = [st("summarize", 10.0), st("transcribe", 5.0)]
    theirs = [st("transcribe", 7.0, "local (media worker)"), st("summarize", 9.0, "local (media worker)")]
    merged = merge_status(mine, theirs)
    assert [(m.function, m.backend) for m in merged] == [
        ("transcribe", "local (media worker)"),
        ("summarize", "local (in-process)"),
    ]


class PostedReports:
    """Reporter stand-in (the job's real one POSTs to the control plane): keeps what it was given."""

    def __init__(self) -> None:
        self.posted: list = []

    def post(self, report) -> None:
        self.posted.append(report)


async def test_a_job_reports_its_function_status_when_it_changes(tmp_path: Path) -> None:
    """Peer: none (the local backend); the reports are kept by a stand-in for the job's reporter."""
    from media.function_reports import FunctionReports

    settings = make_settings(tmp_path, functions_backend="local")
    gateway = make_gateway(settings, build_services(settings), origin="media worker")
    reports = PostedReports()
    watch = FunctionReports(gateway, reports, "call-1", refresh_s=60).start()  # type: ignore[arg-type]
    req = SummarizeRequest(segments=SEGMENTS)
    for _ in range(3):
        await gateway.summarize(req)
    assert len(reports.posted) == 1  # unchanged since: nothing more to say within refresh_s
    (report,) = reports.posted
    assert report.call_id == "call-1" and report.functions[0].origin == "media worker"
    with pytest.raises(TypeError):
        await gateway.summarize(SpeechRequest(text="x"))  # type: ignore[arg-type]
    assert len(reports.posted) == 2 and not reports.posted[1].functions[0].ok  # a change: reported
    watch.refresh_s = 0.0
    await gateway.summarize(req)
    assert len(reports.posted) == 3  # and, after refresh_s, the same state again with its new time
    watch.close()
    await gateway.summarize(req)
    assert len(reports.posted) == 3 and gateway.listeners == []
