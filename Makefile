# The two commands a user needs:  make run   and   make test
.PHONY: setup run test test-fast lint lint-js bench

setup:
	@scripts/setup.sh

# The app starts livekit-server and WORKERS media workers (worker.py) as their own processes:
# see README, Quick start. WORKERS=0 runs none here.
run:
	@scripts/setup.sh --no-browser
	.venv/bin/python app.py $(ARGS)

# ruff, then the JS (scripts/lint_js.sh: eslint, prettier, node --test; seconds), then one pytest
# process per tier (scripts/test.sh): unit+modal, ai, api, integration, faults, browser, each under a
# time limit, the whole suite under TEST_BUDGET_S (40 min).
test: setup
	.venv/bin/ruff check .
	scripts/lint_js.sh
	scripts/test.sh $(PYTEST_ARGS)

test-fast: setup
	.venv/bin/python -m pytest -m "unit" $(PYTEST_ARGS)

lint: lint-js
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

lint-js:
	@scripts/lint_js.sh

bench: setup
	.venv/bin/python bench/ai_latency.py
	.venv/bin/python bench/summary_quality.py
	.venv/bin/python -m pytest -p no:cacheprovider -s bench/test_transfer_latency.py bench/test_llm_initiate.py bench/test_qa_latency.py bench/test_capacity.py
