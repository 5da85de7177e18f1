# The two commands a newcomer needs: `make run` and `make test`. Both install what is missing.
BUILD     ?= build
JOBS      ?= $(shell nproc)
PYTHON    ?= /usr/bin/python3
CMAKE_ARGS ?=
CONFIG    ?= config/herald.yaml

.PHONY: all deps configure build run test check check-docs check-layers check-format lint unit integration bench bench-quick asan-build test-asan format clean docker-config fuzz fuzz-smoke tsan-build test-tsan

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DHERALD_WERROR=ON $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@echo "herald: subscribe with   curl -N localhost:8080/sse?topic=news"
	@echo "herald: publish with     curl -d 'hello' localhost:8080/publish/news"
	$(BUILD)/herald --config $(CONFIG)

unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

# Each pass lists its slowest tests, so that CI's log shows where make test's time goes.
PYTEST_TIMES ?= --durations=15
integration: build
	HERALD_BIN=$(abspath $(BUILD))/herald $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider $(PYTEST_TIMES)

# Every test CI runs: the Release build's unit and integration tests, the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, each fuzz target briefly, and the same tests under
# ThreadSanitizer; `make check` is the first part. About 20 minutes on 2 cores: the Release
# integration pass about 7, each sanitizer pass about 3, and the two sanitizer trees compile
# (niced, log in $(BUILD)/sanitizer-builds.log) while the Release integration tests run, which
# mostly wait on sockets and timers (about a quarter of one core).
test: deps
	@$(MAKE) --no-print-directory check-layers check-format build
	@mkdir -p $(BUILD); nice -n 19 $(MAKE) --no-print-directory asan-build tsan-build \
	  >$(BUILD)/sanitizer-builds.log 2>&1 & builds=$$!; \
	  $(MAKE) --no-print-directory unit integration check-docs; rc=$$?; \
	  wait $$builds || { tail -60 $(BUILD)/sanitizer-builds.log; exit 1; }; exit $$rc
	@$(MAKE) --no-print-directory test-asan fuzz-smoke test-tsan

check: check-layers check-format unit integration check-docs

# test_deploy_docker.py builds herald again as the Dockerfile does (build-docker/, no -Werror):
# with -Werror left out of ccache's hash, that build takes the objects the Release build just
# compiled with it, instead of compiling all of them a second time (minutes on a fresh CI cache).
# The Release build runs first, so a warning still fails it.
test check: export CCACHE_IGNOREOPTIONS = -Werror

# Layers point one way: a module includes only modules below it (scripts/check-layers.py;
# the order is in docs/architecture.md).
check-layers:
	$(PYTHON) scripts/check-layers.py

# clang-tidy with the reviewed checks of .clang-tidy over src/ (about 3 minutes on 2 cores, so
# not part of `make check`).
lint: build
	run-clang-tidy -p $(BUILD) -j $(JOBS) -quiet '$(abspath .)/src/.*\.cpp'

# Formatting drift fails the check; `make format` fixes it.
check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.cpp' '*.hpp')

# The docs say what the binary does: config keys with defaults and ranges, metric names, error
# codes (scripts/check-docs.py; tests/integration/test_docs.py runs it too).
check-docs: build
	$(PYTHON) scripts/check-docs.py --herald $(abspath $(BUILD))/herald --promtool

bench: build
	bench/run.sh

bench-quick: build
	QUICK=1 bench/run.sh

# The uWebSockets peer of bench/run.sh, from pinned upstream commits (cloned, or UWS_SRC=a directory
# holding uWebSockets and uSockets checkouts), into build/peers/uws.
.PHONY: bench-peers
bench-peers:
	bench/peers/uws/build.sh $(UWS_SRC)

# One clang tree serves the sanitizer tests and the fuzzers: everything is built with ASan + UBSan
# (and libFuzzer's coverage hooks, which cost little), the fuzz targets also link libFuzzer.
ASAN_BUILD ?= build-asan
# The sanitizer passes run every integration test but the long scenarios and the tests of files,
# tools and browsers (markers in tests/integration/conftest.py).
SAN_TESTS  := not scenario and not release_only
SAN_FLAGS  := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERALD_BENCH=OFF -DHERALD_WERROR=ON
asan-build: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja $(SAN_FLAGS) -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DHERALD_FUZZ=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer
# checks every server at exit; UBSan reports stop the process).
test-asan: asan-build
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure -j$(JOBS)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 HERALD_BIN=$(abspath $(ASAN_BUILD))/herald \
	  HERALD_TEST_RSS_SLACK_KIB=262144 $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider $(PYTEST_TIMES) -m "$(SAN_TESTS)"

# Unit and integration tests under ThreadSanitizer: every server runs 2 workers, so the
# cross-worker paths (posts between io_contexts, shared counters, limiters, the Redis control
# channel) run in every test. A report is written per process to build-tsan/ and fails the run.
TSAN_BUILD ?= build-tsan
tsan-build: deps
	@cmake -S . -B $(TSAN_BUILD) -G Ninja $(SAN_FLAGS) -DHERALD_SANITIZE=thread \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -Wno-tsan" >/dev/null
	@cmake --build $(TSAN_BUILD) -j$(JOBS) --target herald herald_unit_tests

test-tsan: tsan-build
	$(TSAN_BUILD)/tests/herald_unit_tests --gtest_brief=1
	rm -f $(TSAN_BUILD)/tsan.*
	TSAN_OPTIONS="log_path=$(abspath $(TSAN_BUILD))/tsan" HERALD_BIN=$(abspath $(TSAN_BUILD))/herald \
	  HERALD_TEST_RSS_SLACK_KIB=1048576 $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider $(PYTEST_TIMES) -m "$(SAN_TESTS)"
	@if ls $(TSAN_BUILD)/tsan.* >/dev/null 2>&1; then cat $(TSAN_BUILD)/tsan.*; exit 1; fi

# libFuzzer targets for every parser and for the raw server path, each for FUZZ_SECONDS, starting
# from tests/fuzz/corpus/<target>. CI runs `make fuzz-smoke` (10 s each). The raw server target
# takes inputs of up to FUZZ_SERVER_MAX_LEN so that it reaches pipelining (hundreds of requests in
# one input) and WebSocket frame floods; its corpus seeds both.
FUZZ_SECONDS ?= 60
FUZZ_SERVER_MAX_LEN ?= 1048576
FUZZ_TARGETS := ws_frames topic cursor config jwt server http_parser
# Each target is one process on one core: JOBS of them run at once.
fuzz: asan-build
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(JOBS) -n 1 sh -c 't=$$1; \
	  mkdir -p $(ASAN_BUILD)/corpus/$$t; \
	  extra=""; if [ $$t = server ]; then extra="-max_len=$(FUZZ_SERVER_MAX_LEN)"; fi; \
	  $(ASAN_BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$extra \
	    $(ASAN_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2>$(ASAN_BUILD)/fuzz_$$t.log \
	    || { echo "fuzz_$$t failed:"; tail -40 $(ASAN_BUILD)/fuzz_$$t.log; exit 255; }; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s: $$(grep -E "^Done|^#[0-9]+ *DONE" $(ASAN_BUILD)/fuzz_$$t.log | tail -1)"' sh

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

# docker/nginx.conf is the shipped config/nginx/herald.conf rendered for docker/compose.yaml.
docker-config:
	scripts/nginx-conf.sh --allow 172.30.80.1 8080 /var/cache/nginx 127.0.0.1:8081 127.0.0.1:8082 | sed 's#^error_log .*#error_log stderr warn;#' > docker/nginx.conf
