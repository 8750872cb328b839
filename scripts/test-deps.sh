#!/usr/bin/env bash
# Installs what tests need beyond Debian's build packages: the npm packages
# of tests/node (independent decoders, OpenTelemetry JS SDK, playwright-core).
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f tests/node/package.json ]]; then
  if ! command -v npm >/dev/null; then
    scripts/deps.sh test >/dev/null
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  if [[ ! -d tests/node/node_modules ]] || [[ tests/node/package.json -nt tests/node/node_modules ]]; then
    (cd tests/node && npm install --no-audit --no-fund --silent)
    touch tests/node/node_modules
  fi
fi
# Browser end-to-end tests: playwright-core only (it drives Debian's
# chromium from scripts/deps.sh test; no browser is downloaded).
if [[ -f tests/e2e/package.json ]]; then
  if ! command -v npm >/dev/null; then
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  if [[ ! -d tests/e2e/node_modules ]] || [[ tests/e2e/package.json -nt tests/e2e/node_modules ]]; then
    (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent)
    touch tests/e2e/node_modules
  fi
fi
