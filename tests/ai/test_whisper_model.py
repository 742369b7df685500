"""The Whisper model shipped on PyPI: assembled from its two halves, verified by SHA-256, reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from functions.errors import ConfigError
from functions.model_cache import ModelCache
from functions.stt import whisper_model as wm
from functions.stt.transcription import WhisperTranscriber
from tests.ai.conftest import offline_settings
from tests.ai.helpers import synth


def test_base_model_is_assembled_and_verified(ai_settings) -> None:
    path, name = wm.resolve_whisper_model(ai_settings)
    assert name == "base"
    assert path.parent == Path(ai_settings.data_dir) / "models"
    assert wm.sha256_file(path / "model.bin") == wm.BUILTIN_MODELS["base"].sha256["model.bin"]
    assert (path / ".verified.json").is_file()


def test_second_assembly_reuses_the_verified_copy(ai_settings) -> None:
    path, _ = wm.resolve_whisper_model(ai_settings)
    mtime = (path / "model.bin").stat().st_mtime_ns
    again = wm.assemble_builtin(wm.BUILTIN_MODELS["base"], Path(ai_settings.data_dir) / "models")
    assert again == path and (path / "model.bin").stat().st_mtime_ns == mtime


def test_a_tampered_half_is_refused(tmp_path) -> None:
    spec = wm.BUILTIN_MODELS["base"]
    fake_dirs = []
    for i in range(2):
        d = tmp_path / f"pkg{i}"
        shutil.copytree(wm.package_dir(spec, i), d)
        fake_dirs.append(d)
    part = fake_dirs[1] / spec.parts[1]
    data = bytearray(part.read_bytes())
    data[1000] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="SHA-256"):
        wm.assemble_builtin(spec, tmp_path / "cache", sources=fake_dirs)
    assert not any((tmp_path / "cache").glob("whisper-base-*"))  # nothing half-made is left to be reused


def test_tiny_en_and_a_user_directory_also_work(ai_settings, ai_data_dir, piper) -> None:
    pcm, rate = synth(piper, "Please send a technician tomorrow.")
    tiny = WhisperTranscriber(offline_settings(ai_data_dir, whisper_model_path="tiny.en")).load()
    assert tiny.name == "whisper-tiny.en"
    assert "technician" in tiny.transcribe(pcm, rate).text.lower()
    base_dir, _ = wm.resolve_whisper_model(ai_settings)
    user = WhisperTranscriber(offline_settings(ai_data_dir, whisper_model_path=str(base_dir))).load()
    assert user.name == f"whisper-{base_dir.name}"
    assert "technician" in user.transcribe(pcm, rate).text.lower()


class EncoderSpy:
    """CTranslate2's Whisper, recording how many mel frames each encoder call is given."""

    def __init__(self, real, frames: list[int]) -> None:
        self.real, self.frames = real, frames

    def __getattr__(self, name):
        return getattr(self.real, name)

    def encode(self, features, *args, **kwargs):
        self.frames.append(features.shape[-1])
        return self.real.encode(features, *args, **kwargs)


def test_a_short_utterance_is_encoded_in_the_short_window_with_the_same_words(ai_settings, piper) -> None:
    """WHISPER_CONTEXT_S: a 4 s utterance goes through the encoder as 15 s, not faster-whisper's 30 s,
    and the words come out the same as with the full window (the speech set's WER for each window is
    in bench/live_transcription.py)."""
    from functions.audio import resample

    text = "Please send a technician to fix the connection tomorrow morning."
    pcm, rate = synth(piper, text)
    pcm = resample(pcm, rate, 16000)
    heard = {}
    for window in (0.0, 15.0):
        models = ModelCache()  # this test's own: the spy never reaches another test's model
        stt = WhisperTranscriber(ai_settings.model_copy(update={"whisper_context_s": window}), models=models).load()
        (whisper,) = models.loaded()
        frames: list[int] = []
        whisper.model = EncoderSpy(whisper.model, frames)  # CTranslate2's Whisper: what the encoder is given
        heard[window] = stt.transcribe(pcm, 16000).text
        assert frames, "the encoder ran"
        assert frames[0] == (3000 if window == 0 else 1500), (window, frames)
    assert heard[0.0].lower().strip(" .") == heard[15.0].lower().strip(" ."), heard
