# Thin wrapper over CMake/CTest. `make` builds build/tracemart;
# `make run` starts the system; `make test` runs the suite twice, plainly and
# under ASan+UBSan; `make bench` runs the benchmarks.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
RELEASE_BUILD ?= build-release
CTEST_ARGS ?=
RUN_ARGS ?=

.PHONY: all build run test test-plain test-asan bench deps clean

all: build

deps:
	@scripts/deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTM_ONLY= >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run:
	@scripts/deps.sh run
	@cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release -DTM_ONLY= >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)
	$(RELEASE_BUILD)/tracemart up $(RUN_ARGS)

test: test-plain test-asan

test-plain:
	@scripts/deps.sh test
	@scripts/test-deps.sh
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTM_ONLY= >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-asan:
	@scripts/deps.sh test
	@scripts/test-deps.sh
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTM_SANITIZE=ON -DTM_ONLY= >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench:
	@scripts/deps.sh bench
	@BUILD=$(RELEASE_BUILD) bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RELEASE_BUILD)
