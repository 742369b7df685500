#!/usr/bin/env bash
# `make test`: the suite, one pytest process per tier. Each tier that needs them gets its own
# livekit-server and media worker (tests/conftest.py), so nothing one tier leaves behind (rooms,
# job processes, SDK state of the test process) can slow the next. Every tier runs even when an
# earlier one failed; the exit status is the first failure's, and the failures are listed last.
# Extra pytest arguments (PYTEST_ARGS) go to every tier.
set -uo pipefail
cd "$(dirname "$0")/.."

TIERS=(
  "unit+modal:tests/unit tests/modal"
  "ai:tests/ai"
  "api:tests/api"
  "integration:tests/integration"
  "browser:tests/browser"
)
mkdir -p artifacts
status=0
summary=()
for entry in "${TIERS[@]}"; do
  name=${entry%%:*}
  paths=${entry#*:}
  started=$SECONDS
  echo "=== tier ${name}: ${paths}"
  # shellcheck disable=SC2086  # paths and PYTEST_ARGS are word lists on purpose
  .venv/bin/python -m pytest $paths --durations=10 --junitxml="artifacts/junit-${name}.xml" "$@" \
    2>&1 | tee "artifacts/test-${name}.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 5 ]; then
    rc=0  # PYTEST_ARGS selected none of this tier's tests
  fi
  took=$((SECONDS - started))
  summary+=("tier ${name}: exit ${rc} in ${took}s")
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
  fi
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
grep -h "^FAILED\|^ERROR" artifacts/test-*.log || true
exit "$status"
