"""Capacity of the media plane: N concurrent calls put on hold at once (issue 18).

Peers: the bench session's livekit-server, one or two media worker processes (livekit-agents,
one job process per room: the call job plays hold audio, the consult job speaks the brief with
piper), the control-plane endpoint their webhooks and reports reach, and N callers in this process.

For each level (BENCH_LEVELS, default "10,25") and worker count (BENCH_WORKERS, default "1,2"):
  - N calls are created (each room with its call job) and N callers connect; the bench waits until
    every call job has joined (a call on hold talked to A first) and reports how long that took;
  - N transfers are initiated at once (asyncio.gather), each with its consult room and briefing job;
  - for 10 s, up to 10 callers (sampled: every caller in this one process would measure this
    process's own CPU, not the system's) record the hold audio they hear.
It reports initiate latency p50/p95/max, failed initiates, the longest hold-audio gap and the count
of gaps over 200 ms heard by the sampled callers, and CPU (cores, over the 10 s) and memory (PSS) of this
process (control plane + callers), the worker process trees and livekit-server.

50 is not in the default levels: measured before job processes were forked from a preloaded
forkserver, a job process held ~250-300 MB of RSS, and 100 of them would exceed this machine's
24 GB. Now an idle one has 15 MB private (PSS 78 MB): BENCH_LEVELS=10,25,50 to measure it.

Run: .venv/bin/python -m pytest bench/test_capacity.py -s   (BENCH_LEVELS=10 BENCH_WORKERS=1 for one)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import psutil
import pytest

from functions.media_protocol import media_identity
from functions.rooms import Rooms
from functions.services import build_services
from functions.store import Store
from functions.transfer import TransferOrchestrator
from tests.conftest import WorkerProcess
from tests.support.peer import Peer, gaps

LEVELS = [int(x) for x in os.environ.get("BENCH_LEVELS", "10,25").split(",")]
WORKERS = [int(x) for x in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
LISTEN_S = 10.0
SAMPLED = 10
GAP_S = 0.2


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


class Usage:
    """CPU (cores) and memory of a process and its children, over a window. Memory is PSS: job
    processes forked from one forkserver share most of their pages, which RSS would count once per
    process."""

    def __init__(self, pid: int, *, children: bool = True) -> None:
        self.proc = psutil.Process(pid)
        self.children = children  # this process alone: its children are the server and the workers

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.proc, *(self.proc.children(recursive=True) if self.children else [])]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                pass
        return total / 2**20


async def run_level(orch: TransferOrchestrator, n: int, usages: dict[str, Usage]) -> dict:
    url = orch.settings.livekit_url
    calls = [await orch.start_call(f"Caller {i}", agent_identity=f"agent-a{i}") for i in range(n)]
    callers = []
    try:
        for i, call in enumerate(calls):
            # Only the sampled callers subscribe and measure; the others are connected, as callers are.
            peer = Peer(call.caller_identity, listen=i < SAMPLED)
            callers.append(peer)
            await peer.connect(url, orch.caller_token(call.call_id, call.caller_identity).token)
        # A call on hold was a conversation with A first: its call job has joined. How long a burst of
        # N new calls takes to get all their jobs is reported on its own (`call_jobs_s`).
        calls_started = time.monotonic()
        joined = await asyncio.gather(*(orch.media.wait_joined(media_identity(c.call_id), 120) for c in calls))
        call_jobs_s = time.monotonic() - calls_started
        await asyncio.sleep(2.0)  # the last job's start-up is over before the transfers start

        async def initiate(i: int, call) -> float | None:
            t0 = time.monotonic()
            try:
                await orch.initiate(call.call_id, f"agent-a{i}", f"agent-b{i}")
            except Exception:
                return None
            return time.monotonic() - t0

        cpu0 = {k: u.cpu_seconds() for k, u in usages.items()}
        started = time.monotonic()
        latencies = await asyncio.gather(*(initiate(i, c) for i, c in enumerate(calls)))
        ok = [x for x in latencies if x is not None]
        listen_from = time.monotonic()
        await asyncio.sleep(LISTEN_S)
        listen_to = time.monotonic()
        wall = listen_to - started
        cpu = {k: (u.cpu_seconds() - cpu0[k]) / wall for k, u in usages.items()}
        rss = {k: u.rss_mb() for k, u in usages.items()}
        heard = []
        for call, peer in zip(calls[:SAMPLED], callers[:SAMPLED], strict=False):
            times = (
                peer.heard[media_identity(call.call_id)].energy_times
                if media_identity(call.call_id) in peer.heard
                else []
            )
            heard.append(gaps(times, listen_from, listen_to))
        all_gaps = [g for gs in heard for g in gs]
        return {
            "n": n,
            "call_jobs_s": call_jobs_s,
            "call_jobs_missing": joined.count(False),
            "initiate_p50": statistics.median(ok) if ok else float("nan"),
            "initiate_p95": pct(ok, 0.95),
            "initiate_max": max(ok, default=float("nan")),
            "failed": len(latencies) - len(ok),
            "longest_gap": max(all_gaps, default=float("nan")),
            "gaps_over_200ms": sum(1 for g in all_gaps if g > GAP_S),
            "cpu": cpu,
            "rss": rss,
        }
    finally:
        await asyncio.gather(*(p.disconnect() for p in callers))
        # Deleting 2N rooms on a saturated machine takes longer than a test's 10 s teardown.
        rooms = [c.room for c in calls] + [t.consult_room for t in orch.store.list_transfers()]
        await asyncio.wait_for(asyncio.gather(*(orch.rooms.delete_room(r) for r in rooms), return_exceptions=True), 120)


def missing(row: dict) -> str:
    return f" ({row['call_jobs_missing']} missing)" if row["call_jobs_missing"] else ""


async def wait_jobs_gone(worker_pids: list[int], idle: int, timeout: float = 60.0) -> None:
    """Between levels: the job processes of the last level have exited (only the idle pool is left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = sum(len(psutil.Process(p).children(recursive=True)) for p in worker_pids)
        if procs <= len(worker_pids) * (idle + 2):  # the idle processes plus the forkserver / resource tracker
            return
        await asyncio.sleep(1.0)


@pytest.mark.timeout(3600)
async def test_capacity(livekit_server, control_settings, control_hub, media_worker):
    services = build_services(control_settings)
    rows = []
    second: WorkerProcess | None = None
    try:
        for workers in WORKERS:
            if workers == 2 and second is None:
                second = await asyncio.to_thread(
                    lambda: WorkerProcess(livekit_server, name="worker-2").wait_registered()
                )
            worker_pids = [media_worker.proc.pid] + ([second.proc.pid] if workers == 2 and second else [])
            usages = {
                "control+callers": Usage(os.getpid(), children=False),
                "livekit-server": Usage(livekit_server.pid),
            }
            usages |= {f"worker{i + 1}": Usage(pid) for i, pid in enumerate(worker_pids)}
            for n in LEVELS:
                store, rooms = Store(control_settings.data_dir / f"cap-{workers}-{n}.sqlite3"), Rooms(control_settings)
                orch = TransferOrchestrator(services, store, rooms)
                unregister = control_hub.add(lambda orch=orch: [orch])
                await orch.start()
                try:
                    row = await run_level(orch, n, usages)
                finally:
                    unregister()
                    await orch.aclose()
                    await rooms.aclose()
                    store.close()
                row["workers"] = workers
                rows.append(row)
                print(f"[capacity] {workers} worker(s), {n} calls: {row}", flush=True)
                await wait_jobs_gone(worker_pids, control_settings.worker_idle_jobs)
            if workers == 2 and second is not None:
                await asyncio.to_thread(second.stop)
                second = None
    finally:
        if second is not None:
            await asyncio.to_thread(second.stop)
    print(
        "\n| workers | calls on hold | call jobs joined s | initiate p50 s | p95 s | max s | failed "
        "| longest hold gap s | gaps >200 ms "
        "| CPU cores: control+callers / workers / livekit | PSS MB: control+callers / workers / livekit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu, rss = r["cpu"], r["rss"]
        wcpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
        wrss = sum(v for k, v in rss.items() if k.startswith("worker"))
        print(
            f"| {r['workers']} | {r['n']} | {r['call_jobs_s']:.1f}{missing(r)} "
            f"| {r['initiate_p50']:.2f} | {r['initiate_p95']:.2f} "
            f"| {r['initiate_max']:.2f} "
            f"| {r['failed']} | {r['longest_gap']:.2f} | {r['gaps_over_200ms']} "
            f"| {cpu['control+callers']:.2f} / {wcpu:.2f} / {cpu['livekit-server']:.2f} "
            f"| {rss['control+callers']:.0f} / {wrss:.0f} / {rss['livekit-server']:.0f} |"
        )
    assert rows
