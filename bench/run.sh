#!/usr/bin/env bash
# Runs every benchmark under bench/*/run.sh against the given build dir.
# Each prints its figures as ratios against a reference measured in the same
# run; nothing here asserts a wall-clock time.
set -euo pipefail
build=${1:-build-release}
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*/run.sh; do
  echo "== $(basename "$(dirname "$b")")"
  bash "$b" "$build"
  echo
done
