#!/bin/sh
# Builds the fabric benchmark (Release) and runs it: durable
# send+receive+delete messages/s beside a plain batched SQLite insert loop
# measured in the same run, and their ratio.
# Usage: bench/fabric/run.sh [build dir] [bench flags...]
set -e
cd "$(dirname "$0")/../.."
BUILD=${1:-build-bench-fabric}
[ $# -gt 0 ] && shift
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target fabric_bench -j2 >/dev/null
exec "$BUILD/bench/fabric_bench" "$@"
