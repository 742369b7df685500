"""The call summary: the `Summarizer` Protocol, the offline extractor (`offline_summary.py`,
`offline_patterns.py`), the LLM summarizer, the rolling summary and the `summarize` entry point
(`summarization.py`)."""
