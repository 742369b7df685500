#!/usr/bin/env bash
# One-step setup, idempotent and quick when nothing changed:
#   system packages (espeak-ng, sox, Chromium for browser tests), the Python venv,
#   the pinned livekit-server, and livekit-client (with eslint and prettier for the tests) from npm.
# Usage: scripts/setup.sh [--no-browser]
#   --no-browser (what `make run` uses): only what running needs: no Chromium, no Playwright, no
#   llama-cpp-python build (the local LLM server the tests use), no test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LIVEKIT_VERSION=1.13.5
WANT_BROWSER=1
[ "${1:-}" = "--no-browser" ] && WANT_BROWSER=0
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# --- system packages ------------------------------------------------------------------------
need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v sox >/dev/null || need_apt+=(sox)
if [ "$WANT_BROWSER" = 1 ]; then
  # llama-cpp-python (the local OpenAI-compatible test server) builds from source.
  command -v cmake >/dev/null || need_apt+=(cmake)
  command -v g++ >/dev/null || need_apt+=(g++)
  [ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    say "please install: ${need_apt[*]} (needs root / apt-get)"
  fi
fi

# --- Python -------------------------------------------------------------------------------------
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
reqs=(requirements.txt requirements-ai.txt)
if [ "$WANT_BROWSER" = 1 ]; then  # the test tiers: dev tools, browser, API fuzzing, the local LLM server
  for extra in requirements-dev.txt requirements-browser.txt requirements-api.txt requirements-llm-test.txt; do
    [ -f "$extra" ] && reqs+=("$extra")
  done
fi
stamp=.venv/.requirements.sha256
sum=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  say "pip install ${reqs[*]}"
  .venv/bin/pip install -q --upgrade pip
  if [[ " ${reqs[*]} " == *" requirements-llm-test.txt "* ]]; then
    # llama-cpp-python compiles llama.cpp. Its default build targets the building CPU (-march=native),
    # and on a Xeon with AVX-512 and AMX that server died with SIGSEGV on its first completion
    # (2026-12-08): build for AVX2 instead (GGML_NATIVE=OFF), and never take a wheel from pip's cache,
    # which may hold a native build of the same version.
    llama=$(grep -E '^llama-cpp-python' requirements-llm-test.txt | sed 's/\[server\]//')
    say "building $llama (portable AVX2 build, about 4 minutes on 2 cores)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" .venv/bin/pip install -q --no-cache-dir --no-deps "$llama"
  fi
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/pip install -q "${args[@]}"
  echo "$sum" > "$stamp"
fi

# --- livekit-server (pinned) -------------------------------------------------------------------
mkdir -p .tools/bin
if command -v livekit-server >/dev/null && livekit-server --version 2>/dev/null | grep -q " $LIVEKIT_VERSION\$"; then
  say "using livekit-server $LIVEKIT_VERSION from PATH"
elif [ -x .tools/bin/livekit-server ] && .tools/bin/livekit-server --version | grep -q " $LIVEKIT_VERSION\$"; then
  :
else
  GO=$(command -v go || echo /usr/local/go/bin/go)
  if [ -x "$GO" ]; then
    say "building livekit-server $LIVEKIT_VERSION with $("$GO" version | cut -d' ' -f3) (a few minutes the first time)"
    GOBIN="$ROOT/.tools/bin" "$GO" install "github.com/livekit/livekit-server/cmd/server@v$LIVEKIT_VERSION"
    mv -f .tools/bin/server .tools/bin/livekit-server
  else
    say "livekit-server $LIVEKIT_VERSION not found and Go is not installed."
    say "Install it from https://docs.livekit.io/home/self-hosting/local/ (curl -sSL https://get.livekit.io | bash,"
    say "or brew install livekit) and set LIVEKIT_SERVER_BIN, or set LIVEKIT_URL to a LiveKit deployment."
  fi
fi

# --- npm (pinned in package-lock.json): livekit-client for the browser; eslint and prettier -------
# (devDependencies) for `make test`'s JS checks, which `make run` (--no-browser) does without.
if [ -f package-lock.json ]; then
  npm_args=(--no-audit --no-fund --loglevel=error)
  [ "$WANT_BROWSER" = 1 ] || npm_args+=(--omit=dev)
  lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1) ${npm_args[*]}"
  full_sum="$(sha256sum package-lock.json | cut -d' ' -f1) --no-audit --no-fund --loglevel=error"
  have=$(cat node_modules/.lock.sha256 2>/dev/null || true)
  # A full install (with the devDependencies) serves `make run` as well.
  if [ "$have" != "$lock_sum" ] && [ "$have" != "$full_sum" ]; then
    say "npm ci ${npm_args[*]}"
    npm ci "${npm_args[@]}"
    echo "$lock_sum" > node_modules/.lock.sha256
  fi
fi
say "ready"
