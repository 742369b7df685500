"""Capacity of the media plane: N concurrent calls put on hold at once (issue 18).

Peers: the bench session's livekit-server, one or two media worker processes (livekit-agents,
one job process per room: the call job plays hold audio, the consult job speaks the brief with
piper), the control-plane endpoint their webhooks and reports reach (this process: the control
plane), and N callers in processes of their own (`bench/callers.py`, 25 per process).

For each level (BENCH_LEVELS, default "10,25,50") and worker count (BENCH_WORKERS, default "1,2"):
  - N calls are created (each room with its call job) and N callers connect; the bench waits until
    every call job has joined (a call on hold talked to A first) and reports how long that took;
  - N transfers are initiated at once (asyncio.gather), each with its consult room and briefing job;
  - for 10 s, 10 sampled callers record the hold audio they hear (the others are connected and
    subscribe to nothing, so the callers' own decoding stays a small part of the machine).
It reports initiate latency p50/p95/max, failed initiates, the longest hold-audio gap and the count
of gaps over 200 ms heard by the sampled callers, CPU (cores, over the 10 s) and memory (PSS) of this
process (the control plane), the worker process trees, livekit-server and the callers, and then, with the
N consults still open, how long stopping the control plane and stopping the workers (SIGTERM) take
and how many callers that dropped (issue 18: under 10 s at 50, nobody dropped). Each level gets
workers of its own, started for it.

The default levels are 10,25,50: a job process forked from the preloaded forkserver has about
15 MB of its own (PSS 78 MB), so the 100 processes of 50 calls fit this machine's 24 GB.

Run: .venv/bin/python -m pytest bench/test_capacity.py -s   (BENCH_LEVELS=10 BENCH_WORKERS=1 for one)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

import psutil
import pytest

from control.livekit_server import dies_with_parent
from control.presence import LOBBY
from control.rooms import Rooms
from control.store import Store
from control.transfer import TransferOrchestrator
from functions.media_protocol import media_identity
from functions.services import build_services
from functions.settings import PROJECT_ROOT
from tests.conftest import WorkerProcess

LEVELS = [int(x) for x in os.environ.get("BENCH_LEVELS", "10,25,50").split(",")]
WORKERS = [int(x) for x in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
LISTEN_S = 10.0
SAMPLED = 10  # listening callers, all in the first caller process
PER_PROCESS = 25
GAP_S = 0.2
STOP_BOUND_S = 10.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


class Usage:
    """CPU (cores) and memory of processes and their children, over a window. CPU includes the
    children that exited and were reaped (job processes end inside the window; without them the
    tree's total went down). Memory is PSS: job processes forked from one forkserver share most of
    their pages, which RSS would count once per process."""

    def __init__(self, *pids: int, children: bool = True) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.children = children  # this process alone: its children are the server and the workers

    def _tree(self) -> list[psutil.Process]:
        tree = []
        for proc in self.procs:
            try:
                tree += [proc, *(proc.children(recursive=True) if self.children else [])]
            except psutil.NoSuchProcess:
                pass
        return tree

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system + (t.children_user + t.children_system if self.children else 0.0)
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


class CallerProcess:
    """Up to PER_PROCESS callers in a `bench/callers.py` process (see its docstring for why)."""

    def __init__(self, url: str, callers: list[dict]) -> None:
        self.proc = subprocess.Popen(
            dies_with_parent([sys.executable, "-m", "bench.callers"]),
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send({"url": url, "callers": callers})

    def _send(self, msg: dict) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    async def answer(self, msg: dict, timeout: float = 120.0) -> dict | None:
        """`ask`, or None when the process is gone (it crashed): the bench reports it and goes on."""
        try:
            return await self.ask(msg, timeout)
        except (BrokenPipeError, AssertionError, TimeoutError):
            return None

    async def ask(self, msg: dict | None = None, timeout: float = 120.0) -> dict:
        if msg is not None:
            self._send(msg)
        assert self.proc.stdout
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line, f"the caller process exited ({self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        """Bounded: the callers leave (quit), or the process is killed."""
        with contextlib.suppress(OSError, ValueError):
            self._send({"quit": True})
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def run_level(orch: TransferOrchestrator, n: int, usages: dict[str, Usage], workers: list[BenchWorker]) -> dict:
    url = orch.settings.livekit_url
    calls = [await orch.start_call(f"Caller {i}", agent_identity=f"agent-a{i}") for i in range(n)]
    # Only the sampled callers subscribe and measure; the others are connected, as callers are.
    specs = [
        {
            "identity": c.caller_identity,
            "token": orch.caller_token(c.call_id, c.caller_identity).token,
            "listen": i < SAMPLED,
            "hold": media_identity(c.call_id),
        }
        for i, c in enumerate(calls)
    ]
    groups = [CallerProcess(url, specs[i : i + PER_PROCESS]) for i in range(0, n, PER_PROCESS)]
    agents: list[CallerProcess] = []
    try:
        # The B agents are online and taking calls, as a transfer's target must be: their lobby
        # connections in processes of their own too (not counted as callers; a real agent's browser
        # runs on its own machine).
        b_specs = [
            {"identity": f"agent-b{i}", "token": orch.agent_token(f"agent-b{i}", LOBBY).token, "listen": False}
            for i in range(n)
        ]
        agents += [CallerProcess(url, b_specs[i : i + PER_PROCESS]) for i in range(0, n, PER_PROCESS)]
        ready = await asyncio.gather(*(g.ask() for g in groups))  # every caller connected, or gave up
        callers_failed = sum(r["failed"] for r in ready)
        await asyncio.gather(*(g.ask() for g in agents))
        for i in range(n):
            await orch.presence.set_ready(f"agent-b{i}", True)
        await orch.presence.sync()
        usages["callers"] = Usage(*(g.proc.pid for g in groups))
        # A call on hold was a conversation with A first: its call job has joined. How long a burst of
        # N new calls takes to get all their jobs is reported on its own (`call_jobs_s`).
        calls_started = time.monotonic()
        joined = await asyncio.gather(*(orch.media.wait_joined(media_identity(c.call_id), 120) for c in calls))
        call_jobs_s = time.monotonic() - calls_started
        await asyncio.sleep(2.0)  # the last job's start-up is over before the transfers start

        why_failed: dict[str, int] = {}

        async def initiate(i: int, call) -> float | None:
            t0 = time.monotonic()
            try:
                await orch.initiate(call.call_id, f"agent-a{i}", f"agent-b{i}")
            except Exception as e:  # counted by its reason, for the report
                reason = f"{type(e).__name__}: {re.sub(r'[0-9a-f]{12}|[0-9]+', 'N', str(e))[:90]}"
                why_failed[reason] = why_failed.get(reason, 0) + 1
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
        # On a saturated machine the SDK in a bench caller process can panic (FFI: "timed out waiting
        # for ReadyForRoomEventRequest") and take the process down: that level's gaps are then unknown.
        heard = await groups[0].answer({"gaps": [listen_from, listen_to]})
        all_gaps = [g for gs in heard["gaps"] for g in gs] if heard else []
        # Bounded shutdown with N consults open (issue 18, part 4): the control plane first, then the
        # workers (SIGTERM, in parallel). The callers stay in their rooms: nobody is dropped by either.
        t0 = time.monotonic()
        await asyncio.wait_for(orch.aclose(), 60)
        control_stop_s = time.monotonic() - t0
        worker_stop_s = max(await asyncio.gather(*(asyncio.to_thread(w.timed_stop) for w in workers)))
        statuses = [await g.answer({"status": True}) for g in groups]
        dropped = sum(st["dropped"] for st in statuses if st)
        crashed = sum(1 for st in statuses if st is None)
        return {
            "n": n,
            "call_jobs_s": call_jobs_s,
            "call_jobs_missing": joined.count(False),
            "initiate_p50": statistics.median(ok) if ok else float("nan"),
            "initiate_p95": pct(ok, 0.95),
            "initiate_max": max(ok, default=float("nan")),
            "failed": len(latencies) - len(ok),
            "why_failed": why_failed,
            "longest_gap": max(all_gaps, default=float("nan")),
            "gaps_over_200ms": sum(1 for g in all_gaps if g > GAP_S),
            "cpu": cpu,
            "rss": rss,
            "control_stop_s": control_stop_s,
            "worker_stop_s": worker_stop_s,
            "dropped": dropped,
            "callers_failed": callers_failed,
            "gaps_known": heard is not None,
            "caller_processes_crashed": crashed,
        }
    finally:
        await asyncio.gather(*(asyncio.to_thread(g.close) for g in groups + agents))
        # Deleting 2N rooms on a saturated machine takes longer than a test's 10 s teardown.
        rooms = [c.room for c in calls] + [t.consult_room for t in orch.store.list_transfers()]
        await asyncio.wait_for(asyncio.gather(*(orch.rooms.delete_room(r) for r in rooms), return_exceptions=True), 120)


class BenchWorker(WorkerProcess):
    """A worker of one level: started for it, stopped (and timed) with its consults open."""

    def timed_stop(self) -> float:
        t0 = time.monotonic()
        self.stop(timeout=30.0)
        return time.monotonic() - t0


def start_worker(livekit_server, name: str) -> BenchWorker:
    return BenchWorker(livekit_server, name=name).wait_registered()


def gaps(row: dict) -> str:
    if not row["gaps_known"]:
        return f"n/a: {row['caller_processes_crashed']} bench caller process(es) crashed | n/a"
    return f"{row['longest_gap']:.2f} | {row['gaps_over_200ms']}"


def missing(row: dict) -> str:
    return f" ({row['call_jobs_missing']} missing)" if row["call_jobs_missing"] else ""


@pytest.mark.timeout(3600)
async def test_capacity(livekit_server, settings, control_hub):
    control_settings = settings.model_copy(update={"control_url": control_hub.url})
    services = build_services(control_settings)
    rows = []
    for count in WORKERS:
        for n in LEVELS:
            names = [f"cap-{count}x{n}-{i}" for i in range(count)]
            workers = await asyncio.gather(*(asyncio.to_thread(start_worker, livekit_server, name) for name in names))
            usages = {
                "control": Usage(os.getpid(), children=False),
                "livekit-server": Usage(livekit_server.pid),
            }
            usages |= {f"worker{i + 1}": Usage(w.proc.pid) for i, w in enumerate(workers)}
            store, rooms = Store(control_settings.data_dir / f"cap-{count}-{n}.sqlite3"), Rooms(control_settings)
            orch = TransferOrchestrator(services, store, rooms)
            unregister = control_hub.add(lambda orch=orch: [orch])
            await orch.start()
            try:
                row = await run_level(orch, n, usages, workers)
            finally:
                unregister()
                await orch.aclose()
                await rooms.aclose()
                store.close()
                await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
            row["workers"] = count
            rows.append(row)
            print(f"[capacity] {count} worker(s), {n} calls: {row}", flush=True)
    print(
        "\n| workers | calls on hold | call jobs joined s | initiate p50 s | p95 s | max s | failed "
        "| longest hold gap s | gaps >200 ms "
        "| CPU cores: control / workers / livekit / callers | PSS MB: control / workers / livekit "
        "| stop s: control plane / workers | callers dropped | callers who never connected |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu, rss = r["cpu"], r["rss"]
        wcpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
        wrss = sum(v for k, v in rss.items() if k.startswith("worker"))
        print(
            f"| {r['workers']} | {r['n']} | {r['call_jobs_s']:.1f}{missing(r)} "
            f"| {r['initiate_p50']:.2f} | {r['initiate_p95']:.2f} "
            f"| {r['initiate_max']:.2f} "
            f"| {r['failed']} | {gaps(r)} "
            f"| {cpu['control']:.2f} / {wcpu:.2f} / {cpu['livekit-server']:.2f} / {cpu['callers']:.2f} "
            f"| {rss['control']:.0f} / {wrss:.0f} / {rss['livekit-server']:.0f} "
            f"| {r['control_stop_s']:.2f} / {r['worker_stop_s']:.2f} | {r['dropped']} | {r['callers_failed']} |"
        )
    # What the issue promises of every level, checked after the table is printed: a bounded stop with
    # the consults open, and no caller dropped by it. Latency and gaps are measured, not asserted.
    assert [r["n"] for r in rows] == LEVELS * len(WORKERS)
    for r in rows:
        assert r["control_stop_s"] < STOP_BOUND_S and r["worker_stop_s"] < STOP_BOUND_S, r
        assert r["dropped"] == 0, r
