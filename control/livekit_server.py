"""The embedded LiveKit server: find the pinned `livekit-server` binary and run it in dev mode
on loopback, as its own process (own session: an app crash does not take it down).

With a `state_dir` (the app: DATA_DIR/livekit) its API key, secret and ports are generated once
and kept there (0600), with its pid: a restarted app re-attaches to the running server (checked
with an authenticated RoomService call, not any HTTP 200), so calls, consults and caller tickets
live through a control-plane restart. Without one (tests) everything is fresh and temporary.

The server sends its webhooks to `webhook_url` (the control plane), signed with the API key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("LIVEKIT_")}


class EmbeddedLiveKit:
    """A `livekit-server --dev` process bound to 127.0.0.1."""

    def __init__(
        self,
        settings: Settings,
        *,
        port: int | None = None,
        webhook_url: str = "",
        state_dir: Path | None = None,
    ) -> None:
        self.binary = find_livekit_server(settings)
        self.webhook_url = webhook_url
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="livekit-")
        self.dir = Path(state_dir or self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "livekit.log"
        self._proc: subprocess.Popen | None = None
        self._pid: int | None = None  # a server started by an earlier run that we re-attached to
        kept = self._load_state()
        self._fixed_port = bool(port or settings.livekit_port or kept)
        self.port = port or settings.livekit_port or kept.get("port") or free_port()
        self.udp_port = kept.get("udp_port") or free_port(socket.SOCK_DGRAM)
        self.api_key = kept.get("api_key") or "API" + secrets.token_hex(6)
        self.api_secret = kept.get("api_secret") or secrets.token_urlsafe(32)
        # Keep what says which server is running, or `attach()` could never find it again.
        self._save_state(**{k: kept[k] for k in ("pid", "webhook_url") if k in kept})

    # --- kept state (keys, ports, pid) ----------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.dir / "server.json"

    def _load_state(self) -> dict:
        if self._tmp is not None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self._state_path.read_text())
        return {}

    def _save_state(self, **extra: object) -> None:
        state = {
            "port": self.port,
            "udp_port": self.udp_port,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            **extra,
        }
        # 0600 from the first byte: the secret signs every token.
        fd = os.open(self._state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._pid

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        if self._pid is None:
            return False
        try:
            os.kill(self._pid, 0)
        except OSError:
            return False
        return True

    def exit_status(self) -> str:
        """How a server that is no longer alive ended, for the log."""
        if self._proc is not None and self._proc.returncode is not None:
            code = self._proc.returncode
            return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return "not our child: exit status unknown"

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
        webhook = (
            f"webhook:\n  api_key: {self.api_key}\n  urls:\n    - {self.webhook_url}\n" if self.webhook_url else ""
        )
        return webhook + (
            f"port: {self.port}\n"
            "bind_addresses: ['127.0.0.1']\n"
            "rtc:\n"
            # Media on loopback only, like signalling: UDP on 127.0.0.1 and no ICE-TCP port (the
            # server binds that one on every interface).
            "  tcp_port: 0\n"
            f"  udp_port: {self.udp_port}\n"
            "  ips:\n"
            "    includes: ['127.0.0.1/32']\n"
            "  enable_loopback_candidate: true\n"
            "  use_external_ip: false\n"
            "  node_ip: 127.0.0.1\n"
            # Clients get STUN servers either way (the default is three public hostnames). An IP on
            # loopback with nothing listening means no DNS and a fast "unreachable": unresolvable
            # names made every WebRTC client here start resolver threads that piled up (measured:
            # 779 threads for 20 rooms in one worker). Not the server's own RTC port: stray binding
            # requests there would reach its ICE mux.
            "  stun_servers: ['127.0.0.1:9']\n"
            "keys:\n"
            f"  {self.api_key}: {self.api_secret}\n"
            "room:\n"
            # Only the control plane creates rooms (RoomService, with their job). Joining, or a
            # dispatch arriving late, never re-creates a room the control plane has deleted.
            "  auto_create: false\n"
            "  empty_timeout: 600\n"
            "  departure_timeout: 20\n"
            "logging:\n"
            "  level: info\n"
        )

    def ready(self, timeout: float = 1.0) -> bool:
        """An authenticated RoomService call succeeds: the server is up *and* holds our keys."""
        from livekit import api

        token = api.AccessToken(self.api_key, self.api_secret).with_grants(api.VideoGrants(room_list=True)).to_jwt()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/twirp/livekit.RoomService/ListRooms",
            data=b"{}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status == 200
        return False

    def attach(self) -> bool:
        """Re-attach to the server an earlier run left running (same keys, same config)."""
        if self._tmp is not None:
            return False
        state = self._load_state()
        pid = state.get("pid")
        if not pid or state.get("webhook_url", "") != self.webhook_url:
            return False
        self._pid = int(pid)
        if self.alive() and self.ready():
            log.info("re-attached to livekit-server (pid %s) on %s", pid, self.url)
            return True
        self._pid = None
        return False

    def start(self, timeout: float = 20.0, attempts: int = 3) -> EmbeddedLiveKit:
        """Re-attach, or start and wait until it answers. A port taken between picking and binding
        (other processes pick free ports too) is retried with fresh ports."""
        if self.attach():
            return self
        self._stop_stale()
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except LiveKitError as e:
                if "address already in use" not in str(e) or attempt == attempts - 1 or self._fixed_port:
                    raise
                self.port, self.udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> EmbeddedLiveKit:
        cfg = self.dir / "livekit.yaml"
        cfg.write_text(self._config())
        cfg.chmod(0o600)
        logf = self.log_path.open("wb")
        cmd = [str(self.binary), "--dev", "--config", str(cfg)]
        self._proc = subprocess.Popen(
            # A server without kept state (tests, benches) is nobody's to re-attach to: it dies with
            # whoever started it, however that process ends. One with DATA_DIR state outlives the app.
            dies_with_parent(cmd) if self._tmp is not None else cmd,
            # livekit-server reads LIVEKIT_* variables as flags over its config file (our own
            # LIVEKIT_PORT=0 made it listen on a random port): it gets none of them.
            env=_server_env(),
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LiveKitError(f"livekit-server exited with {self._proc.returncode}: {self.log_tail()}")
            if self.ready():
                log.info("livekit-server %s ready on %s", LIVEKIT_VERSION, self.url)
                self._save_state(pid=self._proc.pid, webhook_url=self.webhook_url)
                return self
            time.sleep(0.1)
        self.stop()
        raise LiveKitError(f"livekit-server did not answer on port {self.port} within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def _stop_stale(self) -> None:
        """A server of ours from an earlier run that we cannot use (other config, unresponsive)."""
        pid = self._load_state().get("pid")
        if pid and _is_livekit(int(pid)):
            log.warning("stopping a stale livekit-server (pid %s) left by an earlier run", pid)
            _terminate_pid(int(pid))

    def stop(self) -> None:
        """Bounded: SIGTERM, then SIGKILL after 5 s."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        elif self._pid is not None and self.alive():
            _terminate_pid(self._pid)
        self._proc = None
        self._pid = None
        if self._tmp is None:
            self._save_state()  # keys and ports stay; no pid: nothing is running

    def __enter__(self) -> EmbeddedLiveKit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def _is_livekit(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "livekit-server" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return False


def _terminate_pid(pid: int, timeout: float = 5.0) -> None:
    import signal

    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def dies_with_parent(cmd: list[str]) -> list[str]:
    """`cmd`, made to get SIGTERM when the thread that starts it ends (Linux's PR_SET_PDEATHSIG),
    through util-linux's `setpriv` (in Debian's essential set); `cmd` unchanged without it.

    Not a `preexec_fn`: Python code between fork and exec in a multi-threaded process (the SDK's
    threads, executors) can block for good on a lock another thread held at the fork. Seen on a
    fresh-clone run: a forked child of the test session stuck on a futex before its exec, holding the
    tier's output pipe open, so the tier never finished."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd
