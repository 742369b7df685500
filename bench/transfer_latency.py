"""Transfer latency against a real local livekit-server, ours vs. the naive hand-off.

For N transfers (default 20) per strategy, with realtime-SDK participants (caller 440 Hz,
A 660 Hz, B 880 Hz), it measures:
  brief_first_frame  initiate() → first briefing audio frame with energy received by B
                     (B joins the consult as soon as initiate returns, as a client would)
  caller_hears_b     accept() → first audio frame with energy from B received by the caller
  initiate_call      how long initiate() takes (consult room, hold music, A muted, briefing connected)
  silence_gap        longest gap in what the caller hears (hold music or B) around the hand-off

Strategies:
  overlap     (ours)  brief synthesized from initiate on and streamed; B joins while hold music
                      plays, and the music stops once B's mic is in the room
  sequential  (naive) brief synthesized whole once B listens; music stopped and A removed
                      first, then B joins

Run: .venv/bin/python bench/transfer_latency.py [-n 20] [--speaker espeak|default]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from functions.participants import Briefing

from functions.audio import resample
from functions.livekit_server import EmbeddedLiveKit
from functions.models import TransferState
from functions.rooms import Rooms
from functions.services import build_services
from functions.settings import load_settings
from functions.store import Store
from functions.transfer import TransferOrchestrator
from tests.support.peer import Peer


class NaiveBriefing(Briefing):
    """Synthesize the whole brief once B listens, then play it (no pre-synthesis, no streaming)."""

    async def _synthesize(self) -> None:
        await self._target_listening.wait()
        pcm = await asyncio.to_thread(lambda: b"".join(c.data for c in self.speaker.synthesize(self.brief_text())))
        rate = next(iter(self.speaker.synthesize("a"))).sample_rate
        self._audio.put_nowait(np.frombuffer(resample(pcm, rate, 48000), dtype="<i2"))
        self._audio.put_nowait(None)


class NaiveOrchestrator(TransferOrchestrator):
    """The obvious order: stop the music and drop A, then wait for B; brief synthesized on demand."""

    briefing_cls = NaiveBriefing

    async def _finish_handoff(self, transfer_id: str) -> None:
        t = self.store.get_transfer(transfer_id)
        await self._stop_hold(t.call_id)
        await self.rooms.remove_participant(t.call_room, t.from_agent)
        await self._stop_briefing(transfer_id)
        await self.rooms.delete_room(t.consult_room)
        deadline = time.monotonic() + self.settings.join_timeout_s
        while t.target not in await self.rooms.identities(t.call_room):
            if time.monotonic() > deadline:
                await self._finish_quietly(transfer_id, TransferState.failed, actor="system", reason="no B")
                return
            await asyncio.sleep(0.05)
        self.store.transition(transfer_id, TransferState.completed, actor="system")


def max_gap(times: list[float], start: float, end: float) -> float:
    pts = sorted(t for t in times if start <= t <= end)
    if not pts:
        return end - start
    edges = [start, *pts, end]
    return max(b - a for a, b in itertools.pairwise(edges))


async def one_transfer(orch: TransferOrchestrator, i: int) -> dict[str, float]:
    url = orch.settings.livekit_url
    a_id, b_id = f"agent-a{i}", f"agent-b{i}"
    call = await orch.start_call(f"Caller {i}", agent_identity=a_id)
    caller = Peer(call.caller_identity, tone_hz=440)
    a = Peer(a_id, tone_hz=660)
    b_consult, b_call = Peer(b_id, tone_hz=880), Peer(b_id, tone_hz=880)
    peers = [caller, a, b_consult, b_call]
    try:
        await caller.connect(url, orch.caller_token(call.call_id, call.caller_identity).token)
        await a.connect(url, orch.agent_token(a_id, call.room).token)
        await caller.wait_hears(a_id)

        t0 = time.monotonic()
        t = await orch.initiate(call.call_id, a_id, b_id)
        initiate_ms = (time.monotonic() - t0) * 1000
        await b_consult.connect(url, orch.agent_token(b_id, t.consult_room).token)
        briefing = f"briefing-{t.transfer_id}"
        await b_consult.wait_hears(briefing, timeout=20)
        brief_ms = (b_consult.first_energy_after(briefing, t0) - t0) * 1000
        await caller.wait_hears(f"hold-{call.call_id}")
        await asyncio.sleep(0.5)

        t1 = time.monotonic()
        await orch.accept(t.transfer_id, actor=b_id)
        await b_call.connect(url, orch.agent_token(b_id, call.room).token)
        await caller.wait_hears(b_id, timeout=20)
        hear_b_ms = (caller.first_energy_after(b_id, t1) - t1) * 1000
        await asyncio.sleep(1.0)
        hold = caller.heard[f"hold-{call.call_id}"].energy_times
        heard = hold + caller.heard[b_id].energy_times
        gap_ms = max_gap(heard, t1, time.monotonic()) * 1000
        return {
            "initiate_call": initiate_ms,
            "brief_first_frame": brief_ms,
            "caller_hears_b": hear_b_ms,
            "silence_gap": gap_ms,
        }
    finally:
        for p in peers:
            await p.disconnect()
        await orch.end_call(call.call_id, actor="bench")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def run(n: int, speaker_kind: str) -> None:
    base = load_settings(livekit_port=0, data_dir=Path(tempfile.mkdtemp(prefix="bench-")))
    with EmbeddedLiveKit(base) as server:
        settings = server.settings_for(base)
        providers = {}
        if speaker_kind == "espeak":
            from functions.speech import EspeakSpeaker

            providers["speaker"] = EspeakSpeaker(settings)
        services = build_services(settings, **providers)
        _ = services.speaker  # load the voice once, outside the timings
        results: dict[str, dict[str, list[float]]] = {}
        for label, cls in (("overlap (ours)", TransferOrchestrator), ("sequential (naive)", NaiveOrchestrator)):
            store, rooms = Store(settings.data_dir / f"{cls.__name__}.sqlite3"), Rooms(settings)
            orch = cls(services, store, rooms)
            await orch.start()
            rows: dict[str, list[float]] = {}
            for i in range(n):
                m = await one_transfer(orch, i)
                for k, v in m.items():
                    rows.setdefault(k, []).append(v)
            results[label] = rows
            await orch.aclose()
            await rooms.aclose()
            store.close()
    print(
        f"\ntransfer latency, {n} transfers per strategy, speaker={services.speaker.name}, "
        f"livekit-server on loopback, 2-core machine\n"
    )
    print(f"{'metric (ms)':<20} {'strategy':<20} {'p50':>8} {'p95':>8} {'max':>8}")
    for metric in ("initiate_call", "brief_first_frame", "caller_hears_b", "silence_gap"):
        for label, rows in results.items():
            v = rows[metric]
            print(f"{metric:<20} {label:<20} {statistics.median(v):8.0f} {pct(v, 0.95):8.0f} {max(v):8.0f}")
    ours, naive = results["overlap (ours)"]["silence_gap"], results["sequential (naive)"]["silence_gap"]
    print(f"\nsilence gap p50: naive/ours = {statistics.median(naive) / max(statistics.median(ours), 1):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--speaker", choices=["default", "espeak"], default="default")
    args = ap.parse_args()
    asyncio.run(run(args.n, args.speaker))


if __name__ == "__main__":
    main()
