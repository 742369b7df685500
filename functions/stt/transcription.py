"""Speech → text, with word timings where the engine gives them.

- `WhisperTranscriber` (offline default): faster-whisper with a CTranslate2 Whisper model that installs
  from PyPI (`functions.stt.whisper_model`), loaded once per process with `HF_HUB_OFFLINE=1`.
- `OpenAITranscriber`: OpenAI audio transcriptions against any OpenAI-compatible server
  (`OPENAI_BASE_URL`, model `OPENAI_STT_MODEL`).

Both take mono int16 PCM at any rate from 8 kHz telephone audio to 48 kHz WebRTC audio and
resample to the 16 kHz Whisper expects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.audio import mulaw_decode, read_wav, resample, wav_bytes
from functions.errors import InvalidInput, ProviderError
from functions.model_cache import PROCESS_MODELS, ModelCache
from functions.models import TranscribeRequest, TranscribeResult, Word
from functions.openai_common import OpenAIClientHolder, convert_openai_error
from functions.stt.protocol import Transcriber

if TYPE_CHECKING:
    from functions.services import Services
    from functions.settings import Settings

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000
MIN_RATE, MAX_RATE = 8_000, 48_000
MAX_AUDIO_S = 30 * 60


def _check_pcm(pcm: bytes, sample_rate: int) -> None:
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InvalidInput(f"sample rate {sample_rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if len(pcm) % 2:
        raise InvalidInput("PCM must be 16-bit samples (even number of bytes)")
    if len(pcm) / 2 / sample_rate > MAX_AUDIO_S:
        raise InvalidInput(f"audio longer than {MAX_AUDIO_S // 60} minutes")


# --- faster-whisper -------------------------------------------------------------------------------

FRAMES_PER_S = 100  # Whisper's mel frames


def _windowed(whisper_model_cls: type, context_s: float) -> type:
    """faster-whisper with a shorter encoder window for short utterances.

    faster-whisper pads every utterance to Whisper's 30 s window, and the encoder's cost grows faster
    than linearly with it: base on one thread, 3000 frames 1.85 s, 1000 frames 0.28 s (measured). An
    utterance is a few seconds, so the encoder runs on the utterance plus padding up to `context_s`
    instead. Below ~10 s Whisper starts looping on digit strings ("5 5 0 0 0 0 ..."), so the window
    never gets shorter than that; live captions use 20 s (bench/live_transcription.py measures WER for each).
    The padding is where faster-whisper's `pad_or_trim` put exact zeros: real log-mel frames never
    are zero in all 80 bands."""

    class WindowedWhisper(whisper_model_cls):  # type: ignore[misc, valid-type]
        def encode(self, features: np.ndarray) -> Any:
            if context_s and features.shape[-1] > context_s * FRAMES_PER_S:
                flat = features.reshape(-1, features.shape[-1])
                used = np.flatnonzero(np.any(flat != 0, axis=0))
                content = int(used[-1]) + 1 if len(used) else 0
                frames = max(int(context_s * FRAMES_PER_S), -(-(content + FRAMES_PER_S) // FRAMES_PER_S) * FRAMES_PER_S)
                if frames < features.shape[-1]:
                    features = np.ascontiguousarray(features[..., :frames])
            return super().encode(features)

    return WindowedWhisper


def _load_whisper(path: str, compute_type: str, threads: int = 0, context_s: float = 0.0, workers: int = 1) -> Any:
    """Load faster-whisper from a local directory (callers cache it: `ModelCache`)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local path never needs the hub; make sure nothing tries
    from faster_whisper import WhisperModel

    try:
        return _windowed(WhisperModel, context_s)(
            path,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads or os.cpu_count() or 2,
            num_workers=workers,  # replicas: with several, concurrent utterances do not queue
            local_files_only=True,
        )
    except Exception as e:
        raise ProviderError(f"cannot load the Whisper model at {path}: {e}") from e


class WhisperTranscriber:
    def __init__(
        self,
        settings: Settings,
        *,
        beam_size: int = 1,
        temperature_fallback: bool = False,
        models: ModelCache = PROCESS_MODELS,
    ) -> None:
        self.settings = settings
        self.models = models
        self.beam_size = beam_size
        # Whisper's re-decoding at higher temperatures (when a segment looks repetitive or unlikely) can
        # multiply the latency of a hard segment; off by default to keep the real-time factor bounded.
        self.temperatures = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if temperature_fallback else [0.0]
        self._model: Any = None
        self.model_name = ""
        self.name = "whisper"

    def load(self) -> WhisperTranscriber:
        if self._model is None:
            from functions.stt.whisper_model import resolve_whisper_model

            path, self.model_name = resolve_whisper_model(self.settings)
            s = self.settings
            key = (str(path), s.whisper_compute_type, s.whisper_cpu_threads, s.whisper_context_s, s.whisper_workers)
            self._model = self.models.get(("whisper", *key), lambda: _load_whisper(*key))
            self.name = f"whisper-{self.model_name}"
        return self

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        _check_pcm(pcm, sample_rate)
        self.load()
        duration = len(pcm) / 2 / sample_rate
        if not pcm:
            return TranscribeResult(text="", words=[], duration_s=0.0, engine=self.name)
        audio = np.frombuffer(resample(pcm, sample_rate, WHISPER_RATE), dtype="<i2").astype(np.float32) / 32768.0
        if not self._model.model.is_multilingual:
            language = "en" if language in (None, "en") else language
            if language != "en":
                raise InvalidInput(f"the Whisper model {self.model_name} is English-only; got language={language}")
        try:
            segments, _info = self._model.transcribe(
                audio,
                language=language,
                beam_size=self.beam_size,
                temperature=self.temperatures,
                word_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
                # A looping decode ("0 0 0 ...") stops at a generous bound on speech: about 8 tokens/s.
                max_new_tokens=min(400, 40 + int(duration * 8)),
            )
            segments = list(segments)
        except Exception as e:
            raise ProviderError(f"Whisper failed: {type(e).__name__}: {e}") from e
        words = [
            Word(word=w.word.strip(), start=round(w.start, 3), end=round(w.end, 3))
            for seg in segments
            for w in seg.words or []
            if w.word.strip()
        ]
        text = " ".join(seg.text.strip() for seg in segments if seg.text.strip())
        return TranscribeResult(text=text, words=words, duration_s=round(duration, 3), engine=self.name)


class LoadAwareTranscriber:
    """Two Whisper models sharing one machine's cores: the accurate one while it keeps up, the fast
    one for an utterance that had to wait for a core (the worker is behind).

    Live captions on 2 cores: base keeps up with about 5 calls, tiny.en with 10 (bench/
    live_transcription.py), and tiny.en mishears more (a caller's "Sarah" as "Eric" on WebRTC audio).
    So a lightly loaded worker transcribes every utterance with base, and under load the utterances
    that queued go to tiny.en instead of falling seconds behind. `slots` bounds the utterances being
    transcribed at once by either model (one per core: no thread oversubscription). Each result's
    `engine` names the model that made it, and `fallback` says it was the fast one (the summarizer
    trusts the accurate model's reading of a number over the fast one's)."""

    def __init__(
        self,
        accurate: Transcriber,
        fast: Transcriber,
        *,
        slots: int,
        fast_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accurate = accurate
        self.fast = fast
        self.slots = slots
        self.fast_after_s = fast_after_s
        self._clock = clock
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def name(self) -> str:
        return f"{self.accurate.name}+{self.fast.name}"

    def warm(self) -> None:
        """Load both models now (a worker's first busy moment must not wait for tiny.en to load)."""
        for engine in (self.accurate, self.fast):
            engine.transcribe(b"\0\0" * WHISPER_RATE, WHISPER_RATE)

    def pick(self, waited_s: float, still_waiting: int) -> Transcriber:
        """The fast model when this utterance waited for a core, or others wait behind it."""
        if waited_s > self.fast_after_s or still_waiting >= self.slots:
            return self.fast
        return self.accurate

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        queued = self._clock()
        with self._lock:
            self._waiting += 1
        self._free.acquire()
        try:
            with self._lock:
                self._waiting -= 1
                behind = self._waiting
            engine = self.pick(self._clock() - queued, behind)
            result = engine.transcribe(pcm, sample_rate, language)
            return result.model_copy(update={"fallback": True}) if engine is self.fast else result
        finally:
            self._free.release()


# --- OpenAI ---------------------------------------------------------------------------------------


class OpenAITranscriber:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Transcribing can take a while for long audio; allow a few times the chat timeout.
        self._client = OpenAIClientHolder(settings, timeout_s=max(settings.llm_timeout_s * 4, 15.0)).warm()

    @property
    def wants_verbose(self) -> bool:
        """gpt-4o(-mini)-transcribe only return `json`; whisper-style models give `verbose_json` with words."""
        return not self.settings.openai_stt_model.startswith("gpt-")

    def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = "en") -> TranscribeResult:
        _check_pcm(pcm, sample_rate)
        duration = len(pcm) / 2 / sample_rate
        if not pcm:
            return TranscribeResult(text="", words=[], duration_s=0.0, engine=self.name)
        if sample_rate > WHISPER_RATE:  # the server resamples to 16 kHz anyway: send less
            pcm, sample_rate = resample(pcm, sample_rate, WHISPER_RATE), WHISPER_RATE
        kwargs: dict[str, Any] = {
            "file": ("audio.wav", wav_bytes(pcm, sample_rate), "audio/wav"),
            "model": self.settings.openai_stt_model,
        }
        if language:
            kwargs["language"] = language
        if self.wants_verbose:
            kwargs["response_format"] = "verbose_json"
            kwargs["timestamp_granularities"] = ["word"]
        else:
            kwargs["response_format"] = "json"
        try:
            resp = self._client.get().audio.transcriptions.create(**kwargs)
        except Exception as e:
            raise convert_openai_error(e, "transcription") from e
        text = getattr(resp, "text", None)
        if not isinstance(text, str):
            raise ProviderError("transcription: the server's answer has no text")
        words = []
        for w in getattr(resp, "words", None) or []:
            get = w.get if isinstance(w, dict) else lambda k, w=w: getattr(w, k, None)
            if get("word") is not None and get("start") is not None and get("end") is not None:
                words.append(Word(word=str(get("word")).strip(), start=float(get("start")), end=float(get("end"))))
        return TranscribeResult(text=text.strip(), words=words, duration_s=round(duration, 3), engine=self.name)


# --- factory and entry point ------------------------------------------------------------------------


def make_transcriber(settings: Settings) -> Transcriber:
    """`auto` = OpenAI when configured, else faster-whisper with the PyPI-shipped model (loaded lazily)."""
    provider = settings.stt_provider
    if provider == "auto":
        provider = "openai" if settings.openai_configured else "whisper"
    if provider == "openai":
        return OpenAITranscriber(settings)
    return WhisperTranscriber(settings)


def decode_request_audio(req: TranscribeRequest) -> tuple[bytes, int]:
    """The request's audio as mono int16 PCM and its rate."""
    if req.encoding == "wav":
        return read_wav(req.audio)
    if not req.sample_rate:
        raise InvalidInput(f"sample_rate is required for encoding={req.encoding}")
    if req.encoding == "mulaw":
        return mulaw_decode(req.audio).tobytes(), req.sample_rate
    return req.audio, req.sample_rate


def transcribe(req: TranscribeRequest, services: Services) -> TranscribeResult:
    pcm, rate = decode_request_audio(req)
    return services.transcriber.transcribe(pcm, rate, req.language)
