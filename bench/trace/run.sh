#!/bin/sh
# Builds the tracer benchmark (Release, base + trace only) and runs it.
# Usage: bench/trace/run.sh [spans per thread [spans|threads|copied]]   (BUILD=dir to choose the build dir)
#   spans: the single-thread span loop only (for perf/callgrind); threads: the
#   three span lines only; copied: only the loop whose strings must be copied.
set -e
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench-trace}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTM_ONLY="base;trace" >/dev/null
cmake --build "$BUILD" --target trace_bench -j2 >/dev/null
exec "$BUILD/bench/trace_bench" "$@"
