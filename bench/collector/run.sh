#!/bin/sh
# Builds the collector benchmark (Release, only the components it needs)
# and runs it. Usage: bench/collector/run.sh [build dir] [spans in-process] [spans over HTTP]
set -e
cd "$(dirname "$0")/../.."
BUILD=${1:-build-collector-bench}
case "$BUILD" in build-release) BUILD=build-collector-bench ;; esac
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTM_ONLY="base;http;trace;collector" >/dev/null
cmake --build "$BUILD" --target collector_bench -j2 >/dev/null
exec "$BUILD/bench/collector_bench" ${2:-1000000} ${3:-200000}
