#!/usr/bin/env bash
# Runs every benchmark (bench/*/run.sh), each with its defaults: a script
# builds the Release binaries it needs and prints its figures beside a
# reference measured in the same run (nginx, raw SQLite, clock_gettime).
# Nothing here asserts a wall-clock time. BENCH=name runs one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*/run.sh; do
  name=$(basename "$(dirname "$b")")
  [[ -n "${BENCH:-}" && "$BENCH" != "$name" ]] && continue
  echo "== $name"
  bash "$b"
  echo
done
