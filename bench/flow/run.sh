#!/bin/sh
# Builds the workflow benchmark (Release; base, trace and flow only) and
# runs it: durable Pass-state transitions/s and the raw SQLite write
# ceiling on the same disk, in one run.
# Usage: bench/flow/run.sh [executions] [states per chain] [workers]
#        (BUILD=dir chooses the build dir, TMPDIR where the databases go)
set -e
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench-flow}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTM_ONLY="base;trace;flow" >/dev/null
cmake --build "$BUILD" --target flow_bench -j2 >/dev/null
exec "$BUILD/bench/flow_bench" "$@"
