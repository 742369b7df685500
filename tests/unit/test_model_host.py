"""The worker's model host (`media.model_host`): what a job process gets back from it.

The peer here is the runner itself, called through a loopback stand-in for livekit-agents' IPC
(`do_inference` → `FunctionsRunner.run` in a thread, the way the inference process runs it). The
real inference process is exercised by the integration and browser tiers, where B hears the brief.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from functions.audio import read_wav, tone
from functions.errors import InvalidInput, ProviderError, ProviderTimeout
from functions.gateway import ENTRY_POINTS, make_gateway
from functions.models import SpeechRequest, SpeechResult, SummarizeRequest, TranscriptSegment
from functions.services import build_services
from functions.settings import Settings
from functions.tts.protocol import PcmChunk
from media.model_host import HOSTED, METHOD, FunctionsRunner, HostBackend

pytestmark = pytest.mark.unit


class ToneSpeaker:
    """One 100 ms tone per word with a letter or digit in it (so "..." says nothing)."""

    name = "tone"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def synthesize(self, text: str, voice: str | None = None):
        self.calls.append(text)
        for _ in [w for w in text.split() if any(c.isalnum() for c in w)]:
            yield PcmChunk(tone(440, 0.1, 16000), 16000)


class BrokenSpeaker:
    name = "broken"

    def synthesize(self, text: str, voice: str | None = None):
        raise RuntimeError("onnxruntime exploded")


class Loopback:
    """livekit-agents' `InferenceExecutor`, with the inference process replaced by a thread."""

    def __init__(self, runner: FunctionsRunner, *, delay_s: float = 0.0, fail: str = "") -> None:
        self.runner = runner
        self.delay_s = delay_s
        self.fail = fail
        self.methods: list[str] = []

    async def do_inference(self, method: str, data: bytes) -> bytes | None:
        self.methods.append(method)
        if self.fail:
            raise RuntimeError(self.fail)
        await asyncio.sleep(self.delay_s)
        return await asyncio.to_thread(self.runner.run, data)


class CountingLocal:
    """The job's own backend, for what the host does not run."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def call(self, ep, request):
        self.names.append(ep.name)
        return ep.run(request, build_services(_settings(Path("/tmp"))))


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        livekit_url="wss://livekit.example.test",
        livekit_api_key="APIunit",
        livekit_api_secret="s" * 40,
        openai_api_key="",
        summarizer_provider="offline",
    )


def _runner(tmp_path: Path, speaker) -> FunctionsRunner:
    runner = FunctionsRunner()
    runner.services = build_services(_settings(tmp_path), speaker=speaker)  # what initialize() would build
    return runner


def test_speech_runs_in_the_host_and_comes_back_as_the_same_audio(tmp_path: Path) -> None:
    speaker = ToneSpeaker()
    ipc = Loopback(_runner(tmp_path, speaker))
    backend = HostBackend(lambda: ipc, CountingLocal())

    result = asyncio.run(backend.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="three short words")))

    assert isinstance(result, SpeechResult)
    assert ipc.methods == [METHOD] and speaker.calls == ["three short words"]
    pcm, rate = read_wav(result.audio_wav)
    assert rate == 16000 and len(pcm) == 3 * 1600 * 2  # three 100 ms tones, byte for byte through the wire
    assert result.engine == "tone"


def test_what_the_host_does_not_run_stays_in_the_job(tmp_path: Path) -> None:
    ipc = Loopback(_runner(tmp_path, ToneSpeaker()))
    local = CountingLocal()
    backend = HostBackend(lambda: ipc, local)
    req = SummarizeRequest(segments=[TranscriptSegment(speaker="caller", text="I was charged twice.")])

    summary = asyncio.run(backend.call(ENTRY_POINTS["summarize"], req))

    assert "summarize" not in HOSTED
    assert local.names == ["summarize"] and ipc.methods == []
    assert "charged twice" in summary.brief.lower()


def test_a_refusal_comes_back_as_the_same_error_class(tmp_path: Path) -> None:
    ipc = Loopback(_runner(tmp_path, ToneSpeaker()))
    backend = HostBackend(lambda: ipc, CountingLocal())

    with pytest.raises(InvalidInput, match="nothing to say") as err:
        asyncio.run(backend.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="...")))
    assert err.value.retryable is False


def test_a_crashing_model_is_a_provider_error_not_a_hang(tmp_path: Path) -> None:
    ipc = Loopback(_runner(tmp_path, BrokenSpeaker()))
    backend = HostBackend(lambda: ipc, CountingLocal())

    with pytest.raises(ProviderError, match="onnxruntime exploded"):
        asyncio.run(backend.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="hello there")))


def test_a_host_that_is_gone_or_slow_fails_within_its_bound(tmp_path: Path) -> None:
    runner = _runner(tmp_path, ToneSpeaker())
    gone = HostBackend(lambda: Loopback(runner, fail="process not started"), CountingLocal())
    with pytest.raises(ProviderError, match="process not started") as err:
        asyncio.run(gone.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="hello")))
    assert err.value.retryable is True

    slow = HostBackend(lambda: Loopback(runner, delay_s=5.0), CountingLocal(), timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"did not answer synthesize_speech in 0\.3s"):
        asyncio.run(slow.call(ENTRY_POINTS["synthesize_speech"], SpeechRequest(text="hello")))
    assert time.monotonic() - started < 2.0


def test_the_gateway_uses_the_host_as_its_local_backend(tmp_path: Path) -> None:
    speaker = ToneSpeaker()
    ipc = Loopback(_runner(tmp_path, speaker))
    settings = _settings(tmp_path)
    gateway = make_gateway(settings, build_services(settings), local=HostBackend(lambda: ipc, CountingLocal()))

    result = asyncio.run(gateway.synthesize_speech(SpeechRequest(text="hello B")))

    assert speaker.calls == ["hello B"] and result.duration_s == pytest.approx(0.2)
