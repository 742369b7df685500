"""Latency and memory of the offline AI providers on this machine.

    .venv/bin/python bench/ai_latency.py [--reps N] [--json out.json]

Prints p50/p95 for:
- STT real-time factor (faster-whisper, Whisper base int8) on 8-15 s caller utterances synthesized by
  piper, at 16 kHz and as 8 kHz μ-law;
- summary latency at transfer time: the rolling summary (`RollingSummary.current`, kept up to date by
  `update(delta)` during the call) vs summarizing the whole transcript from scratch, on the scripted
  calls in tests/fixtures/calls, and the ratio; also the per-delta `update` cost during the call;
- TTS time to first audio chunk and real-time factor (piper en_US-joe-medium; espeak-ng for comparison);
- resident memory (RSS) of the process and what each loaded model added.
Targets (2-core machine): STT RTF ≤ 0.3; brief ready at transfer ≤ 50 ms; TTS first chunk ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.audio import mulaw_decode, mulaw_encode, resample  # noqa: E402
from functions.models import TranscriptSegment  # noqa: E402
from functions.settings import load_settings  # noqa: E402

UTTERANCES = [
    "Hi, my name is Maria Lopez and my account number is 4471-9902. I was charged $89.99 twice on March 3rd "
    "for my phone bill, and I would like a refund of the duplicate charge please.",
    "My internet has been down since Monday. I restarted the router twice and unplugged the modem for ten "
    "minutes, but the light is still red. Can you send a technician tomorrow morning?",
    "I'd like to cancel my plan because I'm moving to Portugal next month. My account number is 771239, "
    "and I want it closed before the next billing date on June 1st.",
    "The order number is 88213. It was supposed to arrive last Tuesday, the tracking page says delivered, "
    "but it is not here and my neighbors have not seen it either.",
    "This is the third time I'm calling about this. You promised a callback on Friday and nobody called. "
    "I want to speak to a supervisor, and I want the forty dollar credit you promised.",
]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def llm_rows(base_url: str, model: str, data_dir: Path, calls: list) -> list[tuple[str, str, str, str]]:
    """Rolling vs from-scratch with an LLM summarizer: the rolling summary is refreshed in the background
    during the call, so the transfer reads it at once; from scratch waits for a full completion."""
    from functions.summary.summarization import FallbackSummarizer, OpenAISummarizer, RollingSummary, in_thread
    from tests.support.loop_thread import LoopThread

    settings = load_settings(data_dir=data_dir, openai_base_url=base_url, openai_chat_model=model, llm_timeout_s=120)
    summarizer = FallbackSummarizer(OpenAISummarizer(settings), timeout_s=120)
    segs = dict(calls)["billing_double_charge"]
    with LoopThread() as loop:  # the refreshes run on a loop, as on the control plane's
        return _llm_rows(RollingSummary(in_thread(summarizer), loop=loop, timeout_s=130), summarizer, segs)


def _llm_rows(rolling, summarizer, segs) -> list[tuple[str, str, str, str]]:
    for seg in segs[:-1]:
        rolling.update([seg])
        time.sleep(2.0)  # people talk: utterances arrive seconds apart
    rolling.wait_idle(240)
    t0 = time.perf_counter()
    rolling.update(segs[-1:])
    current = rolling.current
    at_transfer = time.perf_counter() - t0
    t0 = time.perf_counter()
    scratch = summarizer.summarize(segs)
    from_scratch = time.perf_counter() - t0
    rolling.wait_idle(240)
    return [
        (f"LLM summary at transfer: rolling ({current.source})", f"{at_transfer * 1000:.2f} ms", "", "≤ 50 ms"),
        (f"LLM summary at transfer: from scratch ({scratch.source})", f"{from_scratch * 1000:.0f} ms", "", ""),
        ("LLM: scratch / rolling", f"{from_scratch / max(at_transfer, 1e-9):,.0f}x", "", ""),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each measurement")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    ap.add_argument("--llm-base-url", help="also time the LLM path against this OpenAI-compatible server (…/v1)")
    ap.add_argument("--llm-model", default="gemma3-270m", help="model name for --llm-base-url")
    args = ap.parse_args()

    data_dir = Path(tempfile.gettempdir()) / "warm-transfer-bench"
    settings = load_settings(
        data_dir=data_dir,
        openai_api_key="",
        openai_base_url="",
        stt_provider="whisper",
        summarizer_provider="offline",
        tts_provider="piper",
    )
    rows: list[tuple[str, str, str, str]] = []
    out: dict[str, object] = {}

    # --- memory and loading --------------------------------------------------------------------
    from functions.stt.transcription import WhisperTranscriber
    from functions.tts.speech import EspeakSpeaker, PiperSpeaker

    rss0 = rss_mb()
    t = time.perf_counter()
    whisper = WhisperTranscriber(settings).load()
    whisper_load = time.perf_counter() - t
    rss1 = rss_mb()
    t = time.perf_counter()
    piper = PiperSpeaker(settings).load()
    piper_load = time.perf_counter() - t
    rss2 = rss_mb()
    espeak = EspeakSpeaker(settings)

    # --- TTS -------------------------------------------------------------------------------------
    from functions.summary.summarization import OfflineSummarizer, RollingSummary

    calls = []
    for path in sorted((ROOT / "tests" / "fixtures" / "calls").glob("*.json")):
        segs = [TranscriptSegment(**s) for s in json.loads(path.read_text())["segments"]]
        calls.append((path.stem, segs))
    briefs = [OfflineSummarizer().summarize(segs).brief for _, segs in calls]

    tts: dict[str, dict[str, list[float]]] = {}
    for speaker in (piper, espeak):
        firsts, rtfs = [], []
        for _ in range(args.reps):
            for text in briefs:
                t0 = time.perf_counter()
                first = None
                samples = 0
                rate = 1
                for chunk in speaker.synthesize(text):
                    if first is None:
                        first = time.perf_counter() - t0
                    samples += len(chunk.data) // 2
                    rate = chunk.sample_rate
                total = time.perf_counter() - t0
                firsts.append(first or total)
                rtfs.append(total / (samples / rate))
        tts[speaker.name] = {"first_chunk_s": firsts, "rtf": rtfs}
        rows.append(
            (
                f"TTS {speaker.name}: time to first chunk",
                f"{pct(firsts, 50) * 1000:.0f} ms",
                f"{pct(firsts, 95) * 1000:.0f} ms",
                "≤ 300 ms" if speaker is piper else "",
            )
        )
        rows.append((f"TTS {speaker.name}: real-time factor", f"{pct(rtfs, 50):.3f}", f"{pct(rtfs, 95):.3f}", ""))
    out["tts"] = tts

    # --- STT -------------------------------------------------------------------------------------
    audio = []
    for text in UTTERANCES:
        chunks = list(piper.synthesize(text))
        pcm = b"".join(c.data for c in chunks)
        audio.append((pcm, chunks[0].sample_rate))
    stt: dict[str, list[float]] = {"16k": [], "8k_mulaw": []}
    durations = []
    for _ in range(args.reps):
        for pcm, rate in audio:
            wide = resample(pcm, rate, 16000)
            narrow = mulaw_decode(mulaw_encode(np.frombuffer(resample(pcm, rate, 8000), dtype="<i2"))).tobytes()
            for key, (p, r) in {"16k": (wide, 16000), "8k_mulaw": (narrow, 8000)}.items():
                t0 = time.perf_counter()
                res = whisper.transcribe(p, r)
                stt[key].append((time.perf_counter() - t0) / res.duration_s)
            durations.append(len(pcm) / 2 / rate)
    for key, vals in stt.items():
        rows.append((f"STT {whisper.name} RTF ({key})", f"{pct(vals, 50):.3f}", f"{pct(vals, 95):.3f}", "≤ 0.3"))
    out["stt_rtf"] = stt
    out["stt_utterance_s"] = [min(durations), max(durations)]

    # --- summary at transfer time ------------------------------------------------------------------
    rolling_read, rolling_update, scratch = [], [], []
    for _ in range(args.reps * 10):
        for _, segs in calls:
            rolling = RollingSummary()  # the offline extraction only
            for seg in segs[:-1]:  # during the call, one utterance at a time
                t0 = time.perf_counter()
                rolling.update([seg])
                rolling_update.append(time.perf_counter() - t0)
            # Transfer: the last utterance may not be folded in yet, so fold it in, then read the brief.
            t0 = time.perf_counter()
            if segs:
                rolling.update(segs[-1:])
            brief = rolling.current.brief
            rolling_read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scratch_brief = OfflineSummarizer().summarize(segs).brief
            scratch.append(time.perf_counter() - t0)
            assert brief == scratch_brief
    ratio = pct(scratch, 50) / max(pct(rolling_read, 50), 1e-9)
    rows.append(
        (
            "Summary at transfer: rolling (last update + read)",
            f"{pct(rolling_read, 50) * 1000:.2f} ms",
            f"{pct(rolling_read, 95) * 1000:.2f} ms",
            "≤ 50 ms",
        )
    )
    rows.append(
        (
            "Summary at transfer: from scratch",
            f"{pct(scratch, 50) * 1000:.2f} ms",
            f"{pct(scratch, 95) * 1000:.2f} ms",
            "",
        )
    )
    rows.append(("Summary: scratch / rolling (p50)", f"{ratio:,.1f}x", "", ""))
    rows.append(
        (
            "Rolling update per utterance (during call)",
            f"{pct(rolling_update, 50) * 1000:.2f} ms",
            f"{pct(rolling_update, 95) * 1000:.2f} ms",
            "",
        )
    )
    out["summary"] = {"rolling_read_s": rolling_read, "scratch_s": scratch, "update_s": rolling_update}

    if args.llm_base_url:
        rows.extend(llm_rows(args.llm_base_url, args.llm_model, data_dir, calls))

    rss3 = rss_mb()
    rows.append(("RSS: Python + libraries before models", f"{rss0:.0f} MB", "", ""))
    rows.append((f"RSS: + {whisper.name} (load {whisper_load:.1f} s)", f"+{rss1 - rss0:.0f} MB", "", ""))
    rows.append((f"RSS: + piper voice (load {piper_load:.1f} s)", f"+{rss2 - rss1:.0f} MB", "", ""))
    rows.append(("RSS: total after the run", f"{rss3:.0f} MB", "", ""))
    out["rss_mb"] = {"before": rss0, "whisper": rss1 - rss0, "piper": rss2 - rss1, "total": rss3}

    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'p50':>12}  {'p95':>12}  target")
    print("-" * (w + 40))
    for name, p50, p95, target in rows:
        print(f"{name:<{w}}  {p50:>12}  {p95:>12}  {target}")
    print(
        f"\n{len(calls)} scripted calls, {args.reps} reps; STT utterances {min(durations):.1f}-{max(durations):.1f} s;"
        " machine load (1-min avg) at the end: " + f"{__import__('os').getloadavg()[0]:.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
