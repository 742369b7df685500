"""The media plane stays below the control plane (media.priority): a worker cannot take real-time
scheduling for its audio threads, its job processes run at WORKER_NICE, and it leaves no process
behind. Each case runs in a subprocess, since dropping a capability or raising nice cannot be undone
in this one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from functions.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit


def run(code: str, timeout: float = 30) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_worker_and_its_children_cannot_take_realtime_priority() -> None:
    out = run(
        """
        import os, subprocess, sys
        from media.priority import no_realtime_for_the_media_plane
        start = os.nice(0)
        no_realtime_for_the_media_plane()
        def fifo():
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
                return "granted"
            except PermissionError:
                return "refused"
        child = subprocess.run([sys.executable, "-c",
            "import os\\ntry:\\n os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)); print('granted')\\n"
            "except PermissionError: print('refused')"], capture_output=True, text=True).stdout.strip()
        print(fifo(), child, os.nice(0) - start)
        """
    )
    # Refused here and in a child; the worker's own priority is unchanged (its heartbeat stays on time).
    assert out.split() == ["refused", "refused", "0"]


def test_a_job_process_lowers_every_thread_it_has_and_what_it_starts_after() -> None:
    out = run(
        """
        import os, subprocess, sys, threading
        from media.priority import below_the_control_plane
        start = os.nice(0)
        tids, go = [], threading.Event()
        early = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), go.wait(10)))
        early.start()
        while not tids:
            pass
        below_the_control_plane(7)
        child = subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"], capture_output=True, text=True)
        late = []
        t = threading.Thread(target=lambda: late.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        t.start(); t.join()
        print(os.nice(0) - start, os.getpriority(os.PRIO_PROCESS, tids[0]) - start, int(child.stdout) - start,
              late[0] - start)
        go.set()
        """
    )
    # This thread, a thread that existed before (livekit-agents' IPC, the SDK's), a child, a later thread.
    assert out.split() == ["7", "7", "7", "7"]


def test_end_descendants_leaves_no_orphan() -> None:
    out = run(
        """
        import subprocess, sys, time
        from media.priority import end_descendants
        # A child whose own child would be orphaned (like livekit-agents' forkserver and its job processes).
        child = subprocess.Popen([sys.executable, "-c",
            "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            " print(p.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        grandchild = int(child.stdout.readline())
        print(child.pid, grandchild, flush=True)
        end_descendants()
        child.wait(5)
        """
    )
    pids = [int(p) for p in out.split()]
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.05)


def _autogroup_nice(*, own_session: bool) -> tuple[str, str]:
    """(what the call returned, its autogroup after) in a fresh process, a session leader or not.

    The autogroup reads as "/autogroup-<id> nice <n>", or as nothing for a process in the root group
    (sessions started before autogroups were on, as in some containers and CI machines): "root"."""
    code = """
        from media.priority import session_below_the_control_plane
        done = session_below_the_control_plane(10)
        print(done, open("/proc/self/autogroup").read().strip() or "root", sep="|")
        """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=own_session,
    )
    assert out.returncode == 0, out.stderr
    done, group = out.stdout.strip().split("|")
    return done, group


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="this kernel has no autogroups")
def test_a_worker_leading_its_session_lowers_the_whole_session() -> None:
    # As the app, `make run` and the tests start it: the session's autogroup goes to nice 10, so the
    # kernel's first split of the CPU (between sessions) favours the control plane and livekit-server.
    done, group = _autogroup_nice(own_session=True)
    assert (done, group.split()[-1]) == ("True", "10"), group


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="this kernel has no autogroups")
def test_a_worker_in_someone_elses_session_leaves_it_alone() -> None:
    # `python worker.py` in a terminal: the session is the terminal's (and this test's), not the worker's.
    before = Path("/proc/self/autogroup").read_text().strip() or "root"
    assert _autogroup_nice(own_session=False) == ("False", before)


def test_a_stopping_worker_puts_every_thread_of_its_job_processes_last() -> None:
    out = run(
        """
        import os, subprocess, sys, time
        from media.priority import descendants_last
        # A job process with a second thread, as livekit-agents' are (nice is per thread on Linux).
        child = subprocess.Popen([sys.executable, "-c",
            "import threading, time\\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\\n"
            "print('up', flush=True)\\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        descendants_last()
        tids = os.listdir(f"/proc/{child.pid}/task")
        print(len(tids), *sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in tids}), os.nice(0))
        child.kill()
        """
    )
    threads, *nices, own = out.split()
    # Both of the child's threads at 19; this process (the worker's own steps) unchanged.
    assert int(threads) >= 2 and nices == ["19"] and own == "0", out
