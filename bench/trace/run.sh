#!/bin/sh
# Builds the tracer benchmark (Release, base + trace only) and runs it.
# Usage: bench/trace/run.sh [spans per thread]   (BUILD=dir to choose the build dir)
set -e
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-bench-trace}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTM_ONLY="base;trace" >/dev/null
cmake --build "$BUILD" --target trace_bench -j2 >/dev/null
exec "$BUILD/bench/trace_bench" "$@"
