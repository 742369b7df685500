"""The media plane stays below the control plane and livekit-server on a shared machine, and
leaves nothing behind when it stops.

Measured with bench/test_capacity.py (25 calls put on hold at once on 2 cores): the control plane
itself needed little CPU (0.03 cores) but waited for it. Its event loop lagged up to 8 s at a time,
and that lag was time spent runnable on the run queue (from /proc/self/schedstat), behind a hundred
job-process threads. Every RoomService call and webhook waited with it, and so did initiate. So:

- `below_the_control_plane(nice)`: a worker's job processes and its model host run at a lower
  priority (WORKER_NICE; the host lower still). The control plane and the SFU are light and every
  call depends on them; the media plane's heavy part gets what they leave. The worker's main
  process is not lowered: it is light (registration, IPC, the heartbeat), and its heartbeat is how
  the control plane tells a live worker from a dead one. With the kernel's autogroup scheduling
  on, the CPU is split between sessions first, so these levels order only the worker's own
  processes; `session_below_the_control_plane` lowers the worker's session as a whole.

- Real-time scheduling is refused. WebRTC (inside the LiveKit SDK) asks for it for its audio threads
(`AudioEncoderQueue`, `SyntheticAudioDevice`, `AudioSourceCapture`: SCHED_FIFO 49, seen with
`ps -eLo cls,rtprio` during the capacity bench). Unprivileged, the request fails and they run as
normal threads. As root (containers, CI, `make run` on a dev box) it succeeds, and on a 2-core
machine a hundred job processes' FIFO threads run ahead of everything else: the SFU that forwards
every caller's audio, and the control plane whose RoomService calls and webhooks then wait
seconds. Dropping CAP_SYS_NICE at worker start (bounding, permitted, effective and inheritable
sets, before any thread or child exists) makes those requests fail as they would for any user;
the job processes inherit it. Nothing else the worker does needs the capability. (A nice level
means nothing to a SCHED_FIFO thread, so without this the first point would not hold as root.)
- `end_descendants()`: livekit-agents' forkserver and its idle job processes outlived a stopped
  worker as orphans; the worker ends them on its way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)

CAP_SYS_NICE = 23
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_realtime_scheduling() -> bool:
    """Drop CAP_SYS_NICE from this process (and so from every process it starts).

    Returns True when the process can no longer take real-time scheduling (already unprivileged, or
    dropped now). False (logged) when the kernel refused: the worker still runs, as before."""
    if os.geteuid() != 0 and not _has_sys_nice():
        return True
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
        log.warning("could not drop CAP_SYS_NICE from the bounding set: %s", os.strerror(ctypes.get_errno()))
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        log.warning("capget failed: %s; audio threads may take real-time priority", os.strerror(ctypes.get_errno()))
        return False
    bit = ~(1 << CAP_SYS_NICE) & 0xFFFFFFFF  # CAP_SYS_NICE (23) is in the first 32-bit word
    data[0].effective &= bit
    data[0].permitted &= bit
    data[0].inheritable &= bit
    if libc.capset(ctypes.byref(header), data) != 0:
        log.warning("capset failed: %s; audio threads may take real-time priority", os.strerror(ctypes.get_errno()))
        return False
    return not _has_sys_nice()


def _has_sys_nice() -> bool:
    """Whether this thread still has CAP_SYS_NICE in its effective set (from /proc)."""
    try:
        with open("/proc/thread-self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << CAP_SYS_NICE))
    except OSError:
        pass
    return False


def no_realtime_for_the_media_plane() -> None:
    """Call once at worker start, before any thread or child exists (both inherit it)."""
    if not drop_realtime_scheduling():
        log.warning("audio threads of this worker may run at real-time priority (CAP_SYS_NICE kept)")


def below_the_control_plane(nice: int) -> None:
    """Lower every thread of this process by `nice`, and what it starts after (they inherit it).

    Per thread, because Linux keeps a nice value per thread: `os.nice` alone would leave the
    threads a job process already has (livekit-agents' IPC, the SDK's) at the old priority."""
    if nice <= 0:
        return
    if not os.path.isdir("/proc/self/task"):  # not Linux: the process's nice is the threads'
        os.nice(nice)
        return
    _renice_threads(os.getpid(), lambda now: min(19, now + nice))


def _renice_threads(pid: int, nice_of: Callable[[int], int]) -> None:
    """Every thread of process `pid` from its nice value `now` to `nice_of(now)`: Linux keeps a nice
    value per thread. Threads or a process that ended meanwhile are skipped."""
    with contextlib.suppress(OSError):
        for tid in map(int, os.listdir(f"/proc/{pid}/task")):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, nice_of(os.getpriority(os.PRIO_PROCESS, tid)))


def session_below_the_control_plane(nice: int) -> bool:
    """Lower this session's autogroup to `nice`: the whole media plane (this worker, its job
    processes and model host, which share its session) against the control plane and livekit-server.

    With autogroup scheduling on (/proc/sys/kernel/sched_autogroup_enabled, 1 on most distributions)
    the kernel splits the CPU between sessions first, and per-process nice values only order the
    processes inside one. Measured with bench/test_capacity.py, 25 calls on hold at once on 2 cores:
    the control plane's event loop lagged up to 10.6 s (15 s of 25 runnable but not scheduled,
    /proc/self/schedstat) with the worker's session at nice 0; 39 ms (0.2 s waiting) at nice 10, and
    initiate p95 went from 16.4 s to 2.2 s. Only a session leader does it (a worker started by the
    app, `make run` or the tests): `python worker.py` typed in a terminal shares the terminal's
    session, which is not the worker's to lower (start it with `setsid` for the same effect)."""
    if nice <= 0:
        return False
    if os.getsid(0) != os.getpid():
        log.info("this worker does not lead its session: its autogroup (the terminal's) is left as it is")
        return False
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as e:  # a kernel without autogroups: per-process nice is all there is
        log.info("autogroup nice not set: %s", e)
        return False
    return True


def descendants_last() -> None:
    """Every thread of every process this one started to nice 19: a stopping worker's own steps (its
    goodbye, the bounded close, the kill of what is left) come before its job processes' work. Nice is
    per thread on Linux, and raising it needs no privilege."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            _renice_threads(child.pid, lambda _now: 19)


def end_descendants() -> None:
    """SIGKILL every process this one started, however deep (the worker's last step: its jobs have
    left their rooms, or had their bounded time to)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
