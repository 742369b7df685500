"""Transfer latency across the three planes, ours vs. the naive hand-off (issue 18: "still reports
brief and hand-off numbers, now across processes").

Peers: the bench session's livekit-server, its media worker process (hold audio, the spoken brief,
piper), the control-plane endpoint its webhooks and reports reach, and realtime-SDK participants
in this process (caller 440 Hz, A 660 Hz, B 880 Hz). For N transfers (BENCH_N, default 10) per
strategy it measures:
  initiate_call      how long initiate() takes (consult room + its job, hold audio acked, A muted)
  brief_first_frame  initiate() → first audio frame of the spoken brief received by B (B joins the
                     consult as soon as initiate returns, as a client would)
  caller_hears_b     accept() → first audio frame with energy from B received by the caller
  silence_gap        longest gap in what the caller hears (hold audio or B) from accept() on

Strategies (the same worker; they differ in the control plane's hand-off order):
  overlap     (ours)  B joins while the hold audio plays; it stops once B's microphone is in the room
  sequential  (naive) hold audio stopped and A removed first, then B joins

Run: .venv/bin/python -m pytest bench/test_transfer_latency.py -s   (BENCH_N=20 for more)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time

import pytest

from control.transfer import TransferOrchestrator
from functions.media_protocol import briefing_identity, media_identity
from functions.models import CallStatus, TransferState
from functions.services import build_services
from tests.integration.conftest import available_agent, running_orchestrator
from tests.support.peer import Peer

N = int(os.environ.get("BENCH_N", "10"))


class NaiveOrchestrator(TransferOrchestrator):
    """The obvious order: stop the hold audio and drop A, then wait for B."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Its order leaves the media ahead of the state on purpose (hold off while the call is still on
        # hold): the reconciler would put the hold audio back and blur what is measured.
        self.reconciler.interval_s = 0

    async def _finish_handoff(self, transfer_id: str) -> None:
        t = self.store.get_transfer(transfer_id)
        call = self.store.get_call(t.call_id)
        await self.media.set_hold(call, False)
        await self.rooms.remove_participant(t.call_room, t.from_agent)
        await self.rooms.delete_room(t.consult_room)
        deadline = time.monotonic() + self.settings.join_timeout_s
        while t.target not in await self.rooms.identities(t.call_room):
            if time.monotonic() > deadline:
                await self._finish_quietly(transfer_id, TransferState.failed, actor="system", reason="no B")
                return
            await asyncio.sleep(0.05)
        self.store.update_call(t.call_id, agent_identity=t.target, status=CallStatus.active)
        self.store.transition(transfer_id, TransferState.completed, actor="system")


def max_gap(times: list[float], start: float, end: float) -> float:
    pts = sorted(t for t in times if start <= t <= end)
    edges = [start, *pts, end]
    return max(b - a for a, b in itertools.pairwise(edges))


async def one_transfer(orch: TransferOrchestrator, i: int) -> dict[str, float]:
    url = orch.settings.livekit_url
    a_id, b_id = f"agent-a{i}", f"agent-b{i}"
    call = await orch.start_call(f"Caller {i}", agent_identity=a_id)
    caller, a = Peer(call.caller_identity, tone_hz=440), Peer(a_id, tone_hz=660)
    b_consult, b_call = Peer(b_id, tone_hz=880), Peer(b_id, tone_hz=880)
    hold = media_identity(call.call_id)
    b_lobby = await available_agent(orch, b_id)  # a transfer's target is online and taking calls
    try:
        await caller.connect(url, orch.caller_token(call.call_id, call.caller_identity).token)
        await a.connect(url, orch.agent_token(a_id, call.room).token)
        await caller.wait_hears(a_id, timeout=20)

        t0 = time.monotonic()
        t = await orch.initiate(call.call_id, a_id, b_id)
        initiate_ms = (time.monotonic() - t0) * 1000
        await b_consult.connect(url, orch.agent_token(b_id, t.consult_room).token)
        briefing = briefing_identity(t.transfer_id)
        await b_consult.wait_hears(briefing, timeout=30)
        brief_ms = (b_consult.first_energy_after(briefing, t0) - t0) * 1000
        await caller.wait_hears(hold, timeout=20)
        await asyncio.sleep(0.5)

        t1 = time.monotonic()
        await orch.accept(t.transfer_id, actor=b_id)
        await b_call.connect(url, orch.agent_token(b_id, call.room).token)
        await caller.wait_hears(b_id, timeout=20)
        hear_b_ms = (caller.first_energy_after(b_id, t1) - t1) * 1000
        await asyncio.sleep(1.0)
        heard = caller.heard[hold].energy_times + caller.heard[b_id].energy_times
        gap_ms = max_gap(heard, t1, time.monotonic()) * 1000
        return {
            "initiate_call": initiate_ms,
            "brief_first_frame": brief_ms,
            "caller_hears_b": hear_b_ms,
            "silence_gap": gap_ms,
        }
    finally:
        for p in (caller, a, b_consult, b_call, b_lobby):
            await p.disconnect()
        await orch.end_call(call.call_id, actor="bench")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


@pytest.mark.timeout(1800)
async def test_transfer_latency_ours_vs_naive(control_settings, control_hub):
    services = build_services(control_settings)
    results: dict[str, dict[str, list[float]]] = {}
    for label, cls in (("overlap (ours)", TransferOrchestrator), ("sequential (naive)", NaiveOrchestrator)):
        db_path = control_settings.data_dir / f"{cls.__name__}.sqlite3"
        async with running_orchestrator(
            control_settings, control_hub, cls=cls, services=services, db_path=db_path
        ) as orch:
            rows: dict[str, list[float]] = {}
            for i in range(N):
                for k, v in (await one_transfer(orch, i)).items():
                    rows.setdefault(k, []).append(v)
        results[label] = rows
    print(f"\ntransfer latency across processes, {N} transfers per strategy (2-core machine, one worker)\n")
    print("| ms | strategy | p50 | p95 | max |\n|---|---|---|---|---|")
    for metric in ("initiate_call", "brief_first_frame", "caller_hears_b", "silence_gap"):
        for label, rows in results.items():
            v = rows[metric]
            print(f"| {metric} | {label} | {statistics.median(v):.0f} | {pct(v, 0.95):.0f} | {max(v):.0f} |")
    ours, naive = results["overlap (ours)"]["silence_gap"], results["sequential (naive)"]["silence_gap"]
    assert len(ours) == len(naive) == N
