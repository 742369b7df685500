#!/usr/bin/env bash
# `make test`: the suite, one pytest process per tier. Each tier that needs them gets its own
# livekit-server and media worker (tests/conftest.py), so nothing one tier leaves behind (rooms,
# job processes, SDK state of the test process) can slow the next. Every tier runs even when an
# earlier one failed; the exit status is the first failure's, and the failures are listed last.
# Extra pytest arguments (PYTEST_ARGS) go to every tier.
#
# Nothing can hang: every test has a pytest-timeout, every fixture teardown is bounded, and each
# tier runs under `timeout` with a ceiling of its own and never past what is left of the whole
# suite's budget (TEST_BUDGET_S, default 40 min; .ci/run adds the setup's). A tier that hits its
# ceiling is killed and reported as timed out.
set -uo pipefail
cd "$(dirname "$0")/.."

# name:paths:ceiling in seconds (a hang guard, several times the tier's usual run on 2 cores)
TIERS=(
  "unit+modal:tests/unit tests/modal:300"
  "ai:tests/ai:600"
  "api:tests/api:600"
  "integration:tests/integration:900"
  "faults:tests/faults:480"
  "browser:tests/browser:900"
)
BUDGET=${TEST_BUDGET_S:-2400}
mkdir -p artifacts
status=0
summary=()
suite_started=$SECONDS
for entry in "${TIERS[@]}"; do
  name=${entry%%:*}
  rest=${entry#*:}
  paths=${rest%:*}
  ceiling=${rest##*:}
  left=$((BUDGET - (SECONDS - suite_started)))
  limit=$((ceiling < left ? ceiling : left))
  started=$SECONDS
  if [ "$limit" -le 0 ]; then
    rc=124
    echo "=== tier ${name}: not run, the suite's budget (${BUDGET}s) is spent" | tee "artifacts/test-${name}.log"
  else
    echo "=== tier ${name}: ${paths} (at most ${limit}s)"
    # Into the tier's log, shown as it grows by a `tail` that ends with the tier's process, not with
    # the end of a pipe: a process the tier leaves behind (a forked child stuck before its exec was
    # seen) would hold a pipe open and the suite would wait on it for good. `timeout` leads the
    # tier's process group; whatever is left in that group afterwards is killed.
    # shellcheck disable=SC2086  # paths and PYTEST_ARGS are word lists on purpose
    timeout --kill-after=30 "$limit" .venv/bin/python -m pytest $paths --durations=10 \
      --junitxml="artifacts/junit-${name}.xml" "$@" >"artifacts/test-${name}.log" 2>&1 &
    tier_pid=$!
    tail -n +1 --pid="$tier_pid" -f "artifacts/test-${name}.log"
    wait "$tier_pid"
    rc=$?
    kill -KILL -- "-${tier_pid}" 2>/dev/null || true
    if [ "$rc" -eq 5 ]; then
      rc=0  # PYTEST_ARGS selected none of this tier's tests
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "ERROR tier ${name}: timed out after ${limit}s" | tee -a "artifacts/test-${name}.log"
    fi
  fi
  took=$((SECONDS - started))
  summary+=("tier ${name}: exit ${rc} in ${took}s (limit ${limit}s)")
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
  fi
done
echo "=== summary ($((SECONDS - suite_started))s of a ${BUDGET}s budget)"
printf '%s\n' "${summary[@]}"
grep -h "^FAILED\|^ERROR" artifacts/test-*.log || true
exit "$status"
