#!/usr/bin/env bash
# `make lint-js` (and the first step of `make test`): the browser modules in ui/static/ and the JS unit
# tests, linted by eslint (eslint.config.js) and checked by prettier (.prettierrc), then the JS unit
# tests run with node's own runner (tests/js/). eslint and prettier are pinned devDependencies
# (package.json, package-lock.json), installed by scripts/setup.sh's `npm ci`. A few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin
if [ ! -x "$bin/eslint" ] || [ ! -x "$bin/prettier" ]; then
  echo "eslint/prettier are missing: run scripts/setup.sh (npm ci with the devDependencies)" >&2
  exit 1
fi
FILES=(ui/static/*.js ui/static/desk/*.js tests/js/*.mjs eslint.config.js)
echo "=== lint-js: eslint, prettier --check, node --test tests/js"
"$bin/eslint" --max-warnings=0 "${FILES[@]}"
"$bin/prettier" --check --log-level=warn "${FILES[@]}"
node --test --test-reporter=dot tests/js/*.test.mjs
