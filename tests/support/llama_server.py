"""llama-cpp-python's OpenAI-compatible server with Gemma 3 270M (Q4_K_M GGUF from PyPI), as a
subprocess on a free loopback port: the one local LLM the AI tests (tests/ai/conftest.py) and the
summary-quality bench (bench/summary_quality.py) both talk to through the real OpenAI SDK."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ALIAS = "gemma3-270m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(model: Path, log_path: Path, timeout_s: float = 90.0) -> tuple[subprocess.Popen, str]:
    """The running server and its base URL (…/v1), once `/v1/models` answers. Raises RuntimeError
    (with the log's tail) if it exits or does not answer within `timeout_s`; it is stopped then."""
    port = free_port()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                ALIAS,
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
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, base_url
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"llama server did not start in {timeout_s:.0f} s: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill after 10 s: bounded."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
