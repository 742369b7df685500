"""Small, dependency-light audio helpers shared by providers and participants:
WAV in/out, μ-law decoding, resampling, level measurement and tone synthesis."""

from __future__ import annotations

import io
import wave

import numpy as np

from functions.errors import InvalidInput


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Wrap int16 PCM in a WAV container."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """Decode a PCM WAV to mono int16 PCM and its sample rate.

    Accepts 8/16/32-bit PCM and μ-law (format 7) WAVs, any channel count (mixed down)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidInput("audio is not a WAV file (missing RIFF/WAVE header)")
    fmt_tag = _wav_format_tag(data)
    if fmt_tag == 7:  # μ-law: the stdlib wave module refuses it, decode by hand
        channels, rate, payload = _raw_wav_payload(data)
        samples = mulaw_decode(payload)
        return _mixdown(samples, channels).tobytes(), rate
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise InvalidInput(f"unreadable WAV: {e}") from e
    if width == 2:
        samples = np.frombuffer(frames, dtype="<i2")
    elif width == 1:
        samples = ((np.frombuffer(frames, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 4:
        samples = (np.frombuffer(frames, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise InvalidInput(f"unsupported WAV sample width: {width * 8} bits")
    return _mixdown(samples, channels).tobytes(), rate


def _wav_format_tag(data: bytes) -> int:
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            return int.from_bytes(data[pos + 8 : pos + 10], "little")
        pos += 8 + size + (size & 1)
    raise InvalidInput("WAV has no fmt chunk")


def _raw_wav_payload(data: bytes) -> tuple[int, int, bytes]:
    pos, channels, rate = 12, 1, 8000
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
        elif cid == b"data":
            return channels, rate, body
        pos += 8 + size + (size & 1)
    raise InvalidInput("WAV has no data chunk")


def _mixdown(samples: np.ndarray, channels: int) -> np.ndarray:
    if channels <= 1:
        return samples.astype(np.int16, copy=False)
    usable = len(samples) - len(samples) % channels
    return samples[:usable].reshape(-1, channels).mean(axis=1).astype(np.int16)


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes → int16 samples."""
    u = ~np.frombuffer(data, dtype=np.uint8)
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa.astype(np.int32) << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def mulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → G.711 μ-law bytes (for tests and telephone paths)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    x = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (x >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample mono int16 PCM: windowed-sinc low-pass (when downsampling) + linear
    interpolation. numpy only, ~real-time x500 on one core; ample for speech."""
    if src_rate == dst_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if dst_rate < src_rate:
        cutoff = 0.95 * dst_rate / src_rate  # of src Nyquist, a little margin
        n = np.arange(-32, 33)
        h = (cutoff * np.sinc(cutoff * n) * np.hamming(len(n))).astype(np.float32)
        x = np.convolve(x, h / h.sum(), mode="same")
    out_len = round(len(x) * dst_rate / src_rate)
    t = np.arange(out_len, dtype=np.float64) * (src_rate / dst_rate)
    y = np.interp(t, np.arange(len(x)), x)
    return np.clip(y, -32768, 32767).astype("<i2").tobytes()


def rms_dbfs(pcm: bytes | np.ndarray, silence: float = float("-inf")) -> float:
    """Level of int16 PCM (bytes, or samples) in dBFS; `silence` for digital silence or no samples.
    The one level measure: the segmenter's VAD, the hold clip's trim and the test peers' ears."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    if not len(samples):
        return silence
    x = samples.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(rms) if rms > 1e-9 else silence


def dominant_hz(pcm: bytes, sample_rate: int) -> float:
    """Strongest frequency in a block of int16 PCM (used to tell sources apart)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(x) < 32:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate)[int(np.argmax(spec))])


def tone(freq_hz: float, seconds: float, sample_rate: int = 48000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * freq_hz * t) * level * 32767).astype("<i2").tobytes()
