"""Real offline models: piper and espeak-ng speak, faster-whisper (Whisper base from PyPI) listens.

WER bounds (word error rate over the six caller sentences below, after normalizing spoken forms and
splitting digits; measured on this machine: piper 0.01-0.07, espeak-ng 16 kHz 0.08, espeak-ng 8 kHz
μ-law 0.41-0.47):
- piper, 16 kHz and 8 kHz μ-law: WER ≤ 0.15, and every account/order/ticket number exactly;
- espeak-ng, 16 kHz: WER ≤ 0.20;
- espeak-ng, 8 kHz μ-law: WER ≤ 0.60 (espeak's formant voice through a phone-band μ-law channel is hard
  for Whisper base; this is the fallback voice, not what callers hear by default).
"""

from __future__ import annotations

import io
import time
import wave

import numpy as np
import pytest

from functions.audio import read_wav, resample, wav_bytes
from functions.errors import ConfigError, InvalidInput
from functions.model_cache import ModelCache
from functions.models import SpeechRequest, TranscribeRequest
from functions.services import Services
from functions.stt.transcription import WhisperTranscriber, make_transcriber, transcribe
from functions.summary.summarization import OfflineSummarizer
from functions.tts.speech import EspeakSpeaker, PiperSpeaker, make_speaker, synthesize_speech
from tests.ai.conftest import offline_settings
from tests.ai.helpers import digits, norm_words, synth, telephone, wer

SENTENCES = [
    ("Hi, my name is Maria Lopez and my account number is 4471-9902.", "44719902"),
    ("I was charged $89.99 twice on March 3rd and I would like a refund.", "8999"),
    ("My internet has been down since Monday and I restarted the router twice.", ""),
    ("The order number is 88213 and the package never arrived.", "88213"),
    ("Please send a technician to fix the connection tomorrow morning.", ""),
    ("My ticket number is 5500712.", "5500712"),
]
WER_BOUND = {("piper", "16k"): 0.15, ("piper", "8k"): 0.15, ("espeak", "16k"): 0.20, ("espeak", "8k"): 0.60}


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(wer(ref, hyp) * len(norm_words(ref)) for ref, hyp in pairs)
    return errors / sum(len(norm_words(ref)) for ref, _ in pairs)


@pytest.mark.parametrize("voice", ["piper", "espeak"])
@pytest.mark.parametrize("channel", ["16k", "8k"])
def test_whisper_transcribes_generated_speech_within_the_wer_bound(voice, channel, request, whisper) -> None:
    speaker = request.getfixturevalue(voice)
    pairs, digit_misses = [], []
    for text, number in SENTENCES:
        pcm, rate = synth(speaker, text)
        if channel == "16k":
            result = whisper.transcribe(resample(pcm, rate, 16000), 16000)
        else:
            ulaw, _ = telephone(pcm, rate)
            result = transcribe(  # through the entry point, as raw μ-law like a phone bridge sends it
                TranscribeRequest(audio=ulaw, encoding="mulaw", sample_rate=8000),
                Services(whisper.settings, transcriber=whisper),
            )
        pairs.append((text, result.text))
        if number and number not in digits(result.text):
            digit_misses.append((number, result.text))
        assert result.engine == "whisper-base"
        assert result.words, "word timings are returned"
        assert all(0 <= w.start <= w.end <= result.duration_s + 0.5 for w in result.words)
    score = corpus_wer(pairs)
    print(f"\nWER {voice} {channel}: {score:.3f}")
    assert score <= WER_BOUND[(voice, channel)], pairs
    if voice == "piper":
        assert not digit_misses, digit_misses


def test_round_trip_tts_to_stt_recovers_the_brief(piper, whisper) -> None:
    """The brief the receiving agent hears (piper) is what Whisper hears back: name, account digits, amount."""
    from tests.unit.test_summarizer_offline import CALLS_DIR, load_call

    segments, _ = load_call(CALLS_DIR / "billing_double_charge.json")
    brief = OfflineSummarizer().summarize(segments).brief
    pcm, rate = synth(piper, brief)
    result = whisper.transcribe(pcm, rate)  # piper's native 22.05 kHz, resampled inside
    score = wer(brief, result.text)
    print(f"\nbrief: {brief}\nheard: {result.text}\nWER {score:.3f}")
    assert score <= 0.15
    assert "44719902" in digits(result.text)
    assert "Lopez" in result.text
    assert "89" in result.text and "99" in result.text


def test_webrtc_48k_wav_request(piper, whisper) -> None:
    pcm, rate = synth(piper, "Please send a technician tomorrow morning.")
    wav = wav_bytes(resample(pcm, rate, 48000), 48000)
    result = transcribe(TranscribeRequest(audio=wav), Services(whisper.settings, transcriber=whisper))
    assert wer("Please send a technician tomorrow morning.", result.text) <= 0.2
    assert abs(result.duration_s - len(pcm) / 2 / rate) < 0.05


def test_transcribe_rejects_bad_input(whisper) -> None:
    with pytest.raises(InvalidInput):
        whisper.transcribe(b"\x00\x00" * 100, 4000)
    with pytest.raises(InvalidInput):
        transcribe(
            TranscribeRequest(audio=b"\x00" * 10, encoding="pcm_s16le"), Services(whisper.settings, transcriber=whisper)
        )
    assert whisper.transcribe(b"", 16000).text == ""


def test_silence_transcribes_to_little_or_nothing(whisper) -> None:
    result = whisper.transcribe(b"\x00\x00" * 16000 * 2, 16000)
    assert len(result.text.split()) <= 2


def test_speech_streams_chunks_and_the_first_comes_early(piper) -> None:
    text = (
        "Caller Maria Lopez, account 4471-9902. Charged $89.99 twice on March 3rd. Wants a refund. "
        "Caller is frustrated."
    )
    t0 = time.perf_counter()
    stamps = []
    for chunk in piper.synthesize(text):
        stamps.append((time.perf_counter() - t0, chunk))
    assert len(stamps) >= 3, "several chunks, not one blob"
    first_at, first = stamps[0]
    total = stamps[-1][0]
    assert first.sample_rate == 22050
    assert first_at < total / 2  # playback can start well before synthesis ends
    assert first_at < 1.0


def test_speech_entry_point_returns_a_wav(ai_settings, piper) -> None:
    result = synthesize_speech(SpeechRequest(text="Account 4471, $89.99."), Services(ai_settings, speaker=piper))
    pcm, rate = read_wav(result.audio_wav)
    assert rate == result.sample_rate == 22050 and result.engine == "piper"
    assert abs(len(pcm) / 2 / rate - result.duration_s) < 0.01
    assert result.duration_s > 2.0  # "account 4, 4, 7, 1, 89 dollars and 99 cents" takes a while to say
    with wave.open(io.BytesIO(result.audio_wav)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2


def test_speech_normalizes_amounts_before_speaking(piper, whisper) -> None:
    pcm, rate = synth(piper, "The refund is $89.99.")
    heard = whisper.transcribe(pcm, rate).text
    assert "89" in heard and "99" in heard, heard


def test_espeak_fallback_when_the_piper_voice_cannot_load(ai_data_dir, tmp_path) -> None:
    settings = offline_settings(ai_data_dir, piper_voice_path=str(tmp_path / "missing.onnx"))
    speaker = make_speaker(settings)
    assert isinstance(speaker, EspeakSpeaker)
    chunks = list(speaker.synthesize("Hello there."))
    assert chunks and np.frombuffer(chunks[0].data, dtype="<i2").std() > 100  # real sound, not silence


def test_factories_pick_offline_providers_by_default(ai_settings) -> None:
    assert isinstance(make_transcriber(ai_settings), WhisperTranscriber)
    speaker = make_speaker(ai_settings)
    assert isinstance(speaker, PiperSpeaker)
    assert make_speaker(offline_settings(ai_settings.data_dir, tts_provider="espeak")).name == "espeak"


def test_piper_voice_is_loaded_once_per_cache(ai_settings) -> None:
    models = ModelCache()
    first = PiperSpeaker(ai_settings, models=models).load()
    PiperSpeaker(ai_settings, models=models).load()
    assert models.loads == 1 and len(models.loaded()) == 1
    PiperSpeaker(ai_settings.model_copy(update={"piper_cpu_threads": 2}), models=models).load()
    assert models.loads == 2  # a different thread count is a different ONNX session
    assert first.sample_rate == 22050


def test_bad_whisper_model_path_is_a_config_error(ai_data_dir, tmp_path) -> None:
    settings = offline_settings(ai_data_dir, whisper_model_path=str(tmp_path))
    with pytest.raises(ConfigError, match="WHISPER_MODEL_PATH"):
        WhisperTranscriber(settings).load()
