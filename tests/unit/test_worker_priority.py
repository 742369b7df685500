"""The media plane stays below the control plane (media.priority): a worker cannot take real-time
scheduling for its audio threads, runs at WORKER_NICE, and leaves no process behind. Each case runs
in a subprocess, since dropping a capability or raising nice cannot be undone in this one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

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


def test_a_worker_and_its_children_cannot_take_realtime_priority_and_run_below_the_control_plane() -> None:
    out = run(
        """
        import os, subprocess, sys
        from media.priority import below_the_control_plane
        start = os.nice(0)
        below_the_control_plane(7)
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
    assert out.split() == ["refused", "refused", "7"]


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
