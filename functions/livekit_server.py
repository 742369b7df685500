"""The embedded LiveKit server: find the pinned `livekit-server` binary and run it
in dev mode on loopback with freshly generated API keys.

Used by `app.py` when no LIVEKIT_URL is configured, and by the test fixtures.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from functions.errors import ConfigError, LiveKitError
from functions.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

LIVEKIT_VERSION = "1.13.5"
LOCAL_BIN = PROJECT_ROOT / ".tools" / "bin" / "livekit-server"
INSTALL_HELP = (
    f"livekit-server {LIVEKIT_VERSION} not found. Run `make setup` (builds it with Go into .tools/bin), "
    "or install it from https://docs.livekit.io/home/self-hosting/local/ "
    "(`curl -sSL https://get.livekit.io | bash`, or `brew install livekit`) and set LIVEKIT_SERVER_BIN."
)


def binary_version(path: str | Path) -> str | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().rsplit(" ", 1)[-1] if out else None


def find_livekit_server(settings: Settings) -> Path:
    """The configured binary, else one on PATH of the pinned version, else `.tools/bin`."""
    if settings.livekit_server_bin:
        path = Path(settings.livekit_server_bin)
        if not path.exists():
            raise ConfigError(f"LIVEKIT_SERVER_BIN points at {path}, which does not exist")
        return path
    on_path = shutil.which("livekit-server")
    if on_path and binary_version(on_path) == LIVEKIT_VERSION:
        return Path(on_path)
    if LOCAL_BIN.exists():
        return LOCAL_BIN
    raise ConfigError(INSTALL_HELP)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port below the kernel's ephemeral range (32768+), where WebRTC clients and
    other processes bind their random ports: that keeps pick-then-bind races rare."""
    for _ in range(50):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedLiveKit:
    """A `livekit-server --dev` child process bound to 127.0.0.1."""

    def __init__(self, settings: Settings, *, port: int | None = None) -> None:
        self.binary = find_livekit_server(settings)
        self._fixed_port = bool(port or settings.livekit_port)
        self.port = port or settings.livekit_port or free_port()
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.api_key = "API" + secrets.token_hex(6)
        self.api_secret = secrets.token_urlsafe(32)
        self._dir = tempfile.TemporaryDirectory(prefix="livekit-")
        self.log_path = Path(self._dir.name) / "livekit.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def settings_for(self, settings: Settings) -> Settings:
        """The app's settings pointed at this server."""
        return settings.model_copy(
            update={
                "livekit_url": self.url,
                "livekit_api_key": self.api_key,
                "livekit_api_secret": type(settings.livekit_api_secret)(self.api_secret),
            }
        )

    def _config(self) -> str:
        return (
            f"port: {self.port}\n"
            "bind_addresses: ['127.0.0.1']\n"
            "rtc:\n"
            f"  tcp_port: {self.tcp_port}\n"
            f"  udp_port: {self.udp_port}\n"
            "  use_external_ip: false\n"
            "  node_ip: 127.0.0.1\n"
            "keys:\n"
            f"  {self.api_key}: {self.api_secret}\n"
            "room:\n"
            "  empty_timeout: 600\n"
            "  departure_timeout: 20\n"
            "logging:\n"
            "  level: info\n"
        )

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedLiveKit:
        """Start and wait until it answers. A port taken between picking and binding
        (other processes pick free ports too) is retried with fresh ports."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except LiveKitError as e:
                if "address already in use" not in str(e) or attempt == attempts - 1 or self._fixed_port:
                    raise
                self.port, self.tcp_port, self.udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> EmbeddedLiveKit:
        cfg = Path(self._dir.name) / "livekit.yaml"
        cfg.write_text(self._config())
        logf = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [str(self.binary), "--dev", "--config", str(cfg)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LiveKitError(f"livekit-server exited with {self._proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as r:
                    if r.status == 200:
                        log.info("livekit-server %s ready on %s", LIVEKIT_VERSION, self.url)
                        return self
            time.sleep(0.1)
        self.stop()
        raise LiveKitError(f"livekit-server did not answer on port {self.port} within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> EmbeddedLiveKit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()
