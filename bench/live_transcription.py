"""Can live transcription keep up? N concurrent two-party calls, each talking without pause.

    .venv/bin/python bench/live_transcription.py [--calls 1,5,10,15] [--models tiny.en,base]
                                                 [--seconds 60] [--json out.json]

Per call, two speakers (the piper voice and espeak-ng) take turns reading the sentences of the AI
tier's speech set (tests/ai/test_speech_and_transcription.py), with 0.6 s between turns (the
segmenter's hangover): every call has speech ~90 % of the time, the worst case for a contact center.
Each utterance is queued when it ends, exactly as a media job queues it (`media.listen.UtteranceQueue`:
one utterance in flight per room, an utterance that waited over MAX_BEHIND_S dropped and counted).

Designs, in the same run, on the same audio:
- naive (the design before): every call's job process has its own Whisper with one thread and
  faster-whisper's full 30 s encoder window;
- ours: one Whisper per worker (the model host, `media.model_host`) with a replica per core, and a
  20 s encoder window for short utterances;
- adaptive (the default): ours with `--models base` while it keeps up, and LIVE_WHISPER_FAST_MODEL
  (tiny.en) for the utterances that waited for a core (`functions.stt.transcription.LoadAwareTranscriber`,
  the live settings' windows); the `engines` column says which model made what share.
The engines run in their own processes (as they do in the worker), each request on a thread of it.

Reports per (design, model, calls): lag p50/p95 (utterance queued → text back), RTF (engine busy /
speech), CPU (cores, the engines' processes), RSS (MB, the engines' processes), drops, WER of
what came back; and the speech set's WER at 16 kHz and 8 kHz μ-law for each model and window.
Targets (2-core machine, issue 12): 10 calls in real time, p95 lag ≤ 2 s, 0 drops at 10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.audio import resample  # noqa: E402
from functions.settings import Settings  # noqa: E402
from media.listen import Metrics, UtteranceQueue  # noqa: E402
from media.segmenter import RATE, Utterance  # noqa: E402
from tests.ai.helpers import synth, telephone  # noqa: E402
from tests.ai.test_speech_and_transcription import SENTENCES, corpus_wer  # noqa: E402

TURN_GAP_S = 0.6


@dataclass
class BenchMetrics(Metrics):
    engines: dict[str, int] = field(default_factory=dict)  # segments per model that made them


@dataclass
class Design:
    name: str
    per_call: bool  # a model per call (naive) or one per worker (ours)
    threads: int
    context_s: float
    workers: int = 1  # model replicas (utterances at once)
    fast_model: str = ""  # with it: media.model_host.live_transcriber's switch to it under load
    fast_context_s: float = 20.0


NAIVE = Design("naive: a 1-thread model per call, 30 s window", True, 1, 0.0)
OURS = Design("ours: one model per worker, a replica per core, 20 s window", False, 1, 20.0, os.cpu_count() or 2)
_LIVE = Settings()
ADAPTIVE = Design(
    "adaptive (default): one model per worker, a replica per core, LIVE_WHISPER_CONTEXT_S window;"
    " LIVE_WHISPER_FAST_MODEL for queued utterances",
    False,
    1,
    _LIVE.live_whisper_context_s,
    os.cpu_count() or 2,
    fast_model=_LIVE.live_whisper_fast_model,
    fast_context_s=_LIVE.live_whisper_fast_context_s,
)
OURS_THREADS = Design(
    "ours-threads: one model per worker, a thread per core, 20 s window", False, os.cpu_count() or 2, 20.0
)


# --- the engine process --------------------------------------------------------------------------------


def _serve(conn, data_dir: str, model: str, design: Design) -> None:
    """The engine process: one Whisper loaded the way the model host (or a naive job) loads it, and
    requests run on a thread pool, concurrently, the way livekit-agents' inference process runs them."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from functions.stt.transcription import LoadAwareTranscriber, WhisperTranscriber

    settings = Settings(
        data_dir=Path(data_dir),
        whisper_model_path=model,
        whisper_cpu_threads=design.threads,
        whisper_context_s=design.context_s,
        whisper_workers=design.workers,
    )
    stt = WhisperTranscriber(settings).load()
    if design.fast_model:
        fast = settings.model_copy(
            update={"whisper_model_path": design.fast_model, "whisper_context_s": design.fast_context_s}
        )
        stt = LoadAwareTranscriber(
            stt,
            WhisperTranscriber(fast).load(),
            slots=design.workers,
            fast_after_s=_LIVE.live_whisper_fast_after_s,
        )
    stt.transcribe(b"\0" * 32000, RATE)
    lock = threading.Lock()

    def run(rid: int, pcm: bytes) -> None:
        t = time.perf_counter()
        result = stt.transcribe(pcm, RATE)
        with lock:
            conn.send((rid, (result.text, result.engine), time.perf_counter() - t))

    pool = ThreadPoolExecutor(8)
    conn.send((-1, "ready", 0.0))
    while (msg := conn.recv()) is not None:
        pool.submit(run, *msg)
    pool.shutdown(wait=False, cancel_futures=True)


class Engine:
    """A Whisper in its own process; `await engine.transcribe(pcm)` → (text, busy seconds)."""

    def __init__(self, data_dir: str, model: str, design: Design) -> None:
        import multiprocessing as mp
        import threading

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        args = (child, data_dir, model, design)
        self.proc = ctx.Process(target=_serve, args=args, daemon=True)
        self.proc.start()
        self._futures: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._next = 0
        self._lock = threading.Lock()
        if not self._conn.poll(300):
            raise RuntimeError("the engine did not load in 300 s")
        self._conn.recv()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                rid, text, busy = self._conn.recv()
            except (EOFError, OSError):
                return
            loop, fut = self._futures.pop(rid)
            loop.call_soon_threadsafe(fut.set_result, (text, busy))

    async def transcribe(self, pcm: bytes) -> tuple[tuple[str, str], float]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            rid, self._next = self._next, self._next + 1
            self._futures[rid] = (loop, fut)
            self._conn.send((rid, pcm))
        return await fut

    def close(self) -> None:
        with self._lock:
            self._conn.send(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def engines(design: Design, model: str, calls: int, data_dir: str) -> list[Engine]:
    return [Engine(data_dir, model, design) for _ in range(calls if design.per_call else 1)]


# --- the calls ------------------------------------------------------------------------------------------


def speech_set(settings: Settings) -> list[tuple[str, bytes]]:
    """(text, 16 kHz PCM) per sentence, piper voice then espeak-ng: two speakers."""
    from functions.tts.speech import EspeakSpeaker, PiperSpeaker

    out = []
    for speaker in (PiperSpeaker(settings).load(), EspeakSpeaker(settings)):
        for text, _ in SENTENCES:
            pcm, rate = synth(speaker, text)
            out.append((text, resample(pcm, rate, RATE)))
    return out


async def one_call(idx: int, engine: Engine, lines: list[tuple[str, bytes]], until: float, out: dict) -> None:
    metrics = BenchMetrics()
    refs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []

    async def transcribe(_who: str, utt: Utterance, ended_at: float) -> None:
        (text, used), busy = await engine.transcribe(utt.pcm)
        metrics.engines[used] = metrics.engines.get(used, 0) + 1
        metrics.latencies.append(time.monotonic() - ended_at)
        metrics.busy_s += busy
        metrics.audio_s += utt.end - utt.start
        pairs.append((refs[id(utt)], text))

    queue = UtteranceQueue(f"call-{idx}", transcribe, metrics)
    worker = asyncio.ensure_future(queue.run())
    rng = random.Random(idx)
    await asyncio.sleep(rng.uniform(0, 3))  # calls do not start in lockstep
    i = rng.randrange(len(lines))
    while time.monotonic() < until:
        text, pcm = lines[i % len(lines)]
        i += 1
        dur = len(pcm) / 2 / RATE
        await asyncio.sleep(dur + TURN_GAP_S)  # the utterance is spoken, then the segmenter's hangover
        utt = Utterance(pcm, 0.0, dur)
        refs[id(utt)] = text
        queue.put("caller" if i % 2 else "agent", utt)
    try:
        await asyncio.wait_for(queue.join(), 30)
    except TimeoutError:
        pass
    worker.cancel()
    out[idx] = (metrics, pairs)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


async def level(design: Design, model: str, calls: int, seconds: float, lines, data_dir: str) -> dict:
    ps = engines(design, model, calls, data_dir)
    try:
        procs = [psutil.Process(e.proc.pid) for e in ps]
        cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        t0 = time.monotonic()
        out: dict = {}
        await asyncio.gather(*(one_call(i, ps[i % len(ps)], lines, t0 + seconds, out) for i in range(calls)))
        wall = time.monotonic() - t0
        cpu = (sum(p.cpu_times().user + p.cpu_times().system for p in procs) - cpu0) / wall
        rss = sum(p.memory_info().rss for p in procs) / 1e6
    finally:
        for e in ps:
            e.close()
    lat = [x for m, _ in out.values() for x in m.latencies]
    pairs = [pr for _, prs in out.values() for pr in prs]
    busy = sum(m.busy_s for m, _ in out.values())
    audio = sum(m.audio_s for m, _ in out.values())
    dropped = sum(m.dropped for m, _ in out.values())
    used: dict[str, int] = {}
    for m, _ in out.values():
        for name, n in m.engines.items():
            used[name] = used.get(name, 0) + n
    row = {
        "design": design.name.split(":")[0],
        "model": model,
        "calls": calls,
        "utterances": len(lat),
        "lag_p50_s": round(statistics.median(lat), 2) if lat else None,
        "lag_p95_s": round(pct(lat, 0.95), 2) if lat else None,
        "rtf": round(busy / audio, 3) if audio else None,
        "cpu_cores": round(cpu, 2),
        "rss_mb": round(rss),
        "dropped": dropped,
        "wer": round(corpus_wer(pairs), 3) if pairs else None,
        "engines": " ".join(f"{k} {v / len(lat):.0%}" for k, v in sorted(used.items())) if lat else "",
    }
    row["real_time"] = bool(lat) and dropped == 0 and row["lag_p95_s"] <= 2.0
    print(json.dumps(row), flush=True)
    return row


def wer_table(models: list[str], data_dir: str) -> list[dict]:
    """The speech set's WER per model and encoder window, at 16 kHz and as 8 kHz μ-law."""
    from functions.stt.transcription import WhisperTranscriber
    from functions.tts.speech import EspeakSpeaker, PiperSpeaker

    base = Settings(data_dir=Path(data_dir))
    voices = {"piper": PiperSpeaker(base).load(), "espeak": EspeakSpeaker(base)}
    audio = {}
    for vname, sp in voices.items():
        for text, _ in SENTENCES:
            pcm, rate = synth(sp, text)
            _, narrow = telephone(pcm, rate)
            audio.setdefault((vname, "16k"), []).append((text, resample(pcm, rate, RATE), RATE))
            audio.setdefault((vname, "8k"), []).append((text, narrow, 8000))
    rows = []
    for model in models:
        for context in (0.0, 15.0):
            settings = base.model_copy(
                update={"whisper_model_path": model, "whisper_context_s": context, "whisper_cpu_threads": 1}
            )
            stt = WhisperTranscriber(settings).load()
            row: dict = {"model": model, "window_s": context or 30.0}
            t = time.perf_counter()
            n = 0
            for (vname, chan), items in audio.items():
                pairs = [(text, stt.transcribe(pcm, rate).text) for text, pcm, rate in items]
                n += len(items)
                row[f"{vname}_{chan}"] = round(corpus_wer(pairs), 3)
            row["ms_per_utterance_1_thread"] = round((time.perf_counter() - t) / n * 1000)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", default="1,5,10,15")
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--designs", default="adaptive,ours,naive")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-wer", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="bench-live-stt-")
    lines = speech_set(Settings(data_dir=Path(data_dir)))
    designs = {"adaptive": ADAPTIVE, "ours": OURS, "ours-threads": OURS_THREADS, "naive": NAIVE}
    rows = []
    for model in args.models.split(","):
        for d in args.designs.split(","):
            if designs[d].fast_model == model:
                continue  # the switch to the model itself
            for calls in [int(c) for c in args.calls.split(",")]:
                rows.append(asyncio.run(level(designs[d], model, calls, args.seconds, lines, data_dir)))
    wers = [] if args.no_wer else wer_table(args.models.split(","), data_dir)
    keys = [
        "design",
        "model",
        "calls",
        "utterances",
        "lag_p50_s",
        "lag_p95_s",
        "rtf",
        "cpu_cores",
        "rss_mb",
        "dropped",
        "wer",
        "engines",
        "real_time",
    ]
    print(f"\n{os.cpu_count()} cores; {args.seconds:g} s per level\n\n{table(rows, keys)}")
    if wers:
        print("\n" + table(wers, list(wers[0])))
    if args.json:
        Path(args.json).write_text(json.dumps({"levels": rows, "wer": wers}, indent=2))


if __name__ == "__main__":
    main()
