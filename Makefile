# The two commands a user needs:  make run   and   make test
.PHONY: setup run test test-fast lint bench

setup:
	@scripts/setup.sh

run:
	@scripts/setup.sh --no-browser
	.venv/bin/python app.py $(ARGS)

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	.venv/bin/python -m pytest -m "unit" $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup
	.venv/bin/python bench/transfer_latency.py
	.venv/bin/python bench/ai_latency.py
	.venv/bin/python bench/live_transcription.py
