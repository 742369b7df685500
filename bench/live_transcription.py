"""Live transcription under load: 1, 5 and 10 concurrent calls on this machine.

Each call has a caller (piper voice) and an agent (espeak-ng voice) taking turns, with
realtime-SDK participants, through the real livekit-server; the hidden transcriber in each
room segments and transcribes with faster-whisper (the default offline model).

Per concurrency it prints:
  seg_p50/p95   end of utterance (silence detected) → segment stored, ms
  lag_max       worst such delay, s (how far behind real time it got)
  rtf           transcription time / audio time, summed over all calls (≥ 1: cannot keep up)
  cpu           CPU of this process + livekit-server, in cores (of 2)
  rss           resident memory of this process, MiB
  dropped       utterances dropped because a room's queue was full

Run: .venv/bin/python bench/live_transcription.py [--calls 1 5 10] [--turns 6]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.live_transcriber import LiveTranscription, attach_live_transcription

from functions.livekit_server import EmbeddedLiveKit
from functions.rooms import Rooms
from functions.services import build_services
from functions.settings import load_settings
from functions.speech import EspeakSpeaker, PiperSpeaker
from functions.store import Store
from functions.transcription import WhisperTranscriber
from functions.transfer import TransferOrchestrator
from tests.support.peer import Peer

LINES = [
    ("caller", "Hi, my name is Sarah Johnson and my account number is 4 4 7 1 9 2."),
    ("agent", "Thanks Sarah. I can see your account. What happened?"),
    ("caller", "I was charged twice for my internet bill this month."),
    ("agent", "I am sorry about that. Let me check the payments."),
    ("caller", "Both charges were eighty nine dollars and ninety nine cents."),
    ("agent", "I see them. I will transfer you to billing to refund one."),
]


HEADER = (
    f"{'calls':>5} {'segs':>5} {'seg_p50 ms':>10} {'seg_p95 ms':>10} {'lag_max s':>9} {'rtf':>6} "
    f"{'cpu cores':>9} {'rss MiB':>8} {'dropped':>7}"
)
ROW = (
    "{calls:>5} {segments:>5} {seg_p50:>10.0f} {seg_p95:>10.0f} {lag_max:>9.1f} {rtf:>6.2f} {cpu:>9.2f} "
    "{rss:>8.0f} {dropped:>7}"
)


def synth(speaker, text: str) -> tuple[bytes, int]:
    chunks = list(speaker.synthesize(text))
    return b"".join(c.data for c in chunks), chunks[0].sample_rate


async def run_calls(orch: TransferOrchestrator, live: LiveTranscription, clips, n_calls: int, turns: int) -> dict:
    url = orch.settings.livekit_url
    calls = []
    for i in range(n_calls):
        call = await orch.start_call(f"Caller {i}", agent_identity=f"agent-{i}")
        # Talkers only: the harness must not eat the CPU it is measuring.
        caller = Peer(call.caller_identity, voice=True, listen=False)
        agent = Peer(f"agent-{i}", voice=True, listen=False)
        await caller.connect(url, orch.caller_token(call.call_id, call.caller_identity).token)
        await agent.connect(url, orch.agent_token(f"agent-{i}", call.room).token)
        calls.append((call, caller, agent))
    await asyncio.sleep(1.5)  # transcribers join
    procs = [psutil.Process(), *[p for p in psutil.process_iter(["name"]) if p.info["name"] == "livekit-server"]]
    cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    t0 = time.monotonic()

    async def converse(caller: Peer, agent: Peer, offset: int) -> None:
        for k in range(turns):
            who, _ = LINES[(k + offset) % len(LINES)]
            pcm, rate = clips[(k + offset) % len(LINES)]
            await (caller if who == "caller" else agent).say(pcm, rate)
            await asyncio.sleep(0.9)

    await asyncio.gather(*[converse(c, a, i) for i, (_call, c, a) in enumerate(calls)])
    await asyncio.sleep(1.0)
    await asyncio.wait_for(asyncio.gather(*[live.transcribers[c.room].idle() for c, _, _ in calls]), 300)
    wall = time.monotonic() - t0
    cpu = (sum(p.cpu_times().user + p.cpu_times().system for p in procs) - cpu0) / wall
    metrics = [live.transcribers[c.room].metrics for c, _, _ in calls]
    lat = sorted(x for m in metrics for x in m.latencies)
    result = {
        "calls": n_calls,
        "segments": len(lat),
        "seg_p50": statistics.median(lat) * 1000,
        "seg_p95": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))] * 1000,
        "lag_max": max(lat),
        "rtf": sum(m.busy_s for m in metrics) / max(1e-9, sum(m.audio_s for m in metrics)),
        "cpu": cpu,
        "rss": psutil.Process().memory_info().rss / 2**20,
        "dropped": sum(m.dropped for m in metrics),
    }
    for call, caller, agent in calls:
        await caller.disconnect()
        await agent.disconnect()
        await orch.end_call(call.call_id, actor="bench")
    return result


async def main(call_counts: list[int], turns: int) -> None:
    base = load_settings(livekit_port=0, data_dir=Path(tempfile.mkdtemp(prefix="bench-live-")))
    with EmbeddedLiveKit(base) as server:
        settings = server.settings_for(base)
        voices = {"caller": PiperSpeaker(settings), "agent": EspeakSpeaker(settings)}
        clips = [synth(voices[who], text) for who, text in LINES]
        whisper = WhisperTranscriber(settings).load()
        services = build_services(settings, speaker=voices["agent"], transcriber=whisper)
        store, rooms = Store(settings.database_path), Rooms(settings)
        orch = TransferOrchestrator(services, store, rooms)
        live = LiveTranscription(settings, store, rooms, whisper)
        attach_live_transcription(orch, live)
        await orch.start()
        print(f"\nlive transcription, {turns} turns per call, model {whisper.name}, 2-core machine\n")
        print(HEADER, flush=True)
        for n in call_counts:
            try:
                r = await run_calls(orch, live, clips, n, turns)
            except Exception as e:  # a round that cannot even connect is a result too
                print(f"{n:>5}  failed: {type(e).__name__}: {e}", flush=True)
                continue
            print(ROW.format(**r), flush=True)
        await live.aclose()
        await orch.aclose()
        await rooms.aclose()
        store.close()
    print("\nA load is sustained in real time while lag_max stays near seg_p50 and nothing is dropped.")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--turns", type=int, default=6)
    args = ap.parse_args()
    asyncio.run(main(args.calls, args.turns))
