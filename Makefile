# The two commands a newcomer needs: `make run` and `make test`. Both install what is missing.
BUILD     ?= build
JOBS      ?= $(shell nproc)
PYTHON    ?= /usr/bin/python3
CMAKE_ARGS ?=
CONFIG    ?= config/herald.yaml

.PHONY: all deps configure build run test unit integration bench bench-quick test-asan format clean docker-config fuzz test-tsan

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

integration: build
	HERALD_BIN=$(abspath $(BUILD))/herald $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)
	HERALD_BIN=$(abspath $(BUILD))/herald $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider

bench: build
	bench/run.sh

bench-quick: build
	QUICK=1 bench/run.sh

# Unit and integration tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE="address;undefined" >/dev/null
	@cmake --build build-asan -j$(JOBS)
	ctest --test-dir build-asan --output-on-failure -j$(JOBS)
	HERALD_BIN=$(abspath build-asan)/herald HERALD_TEST_RSS_SLACK_KIB=262144 \
	  $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider

# Unit and integration tests under ThreadSanitizer: the cross-worker paths (posts between io_contexts,
# shared counters, limiters) with 2 workers per server. A report is written per process to build-tsan/.
test-tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHERALD_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j$(JOBS) --target herald herald_unit_tests
	build-tsan/tests/herald_unit_tests
	rm -f build-tsan/tsan.*
	TSAN_OPTIONS="log_path=$(abspath build-tsan)/tsan" HERALD_BIN=$(abspath build-tsan)/herald \
	  HERALD_TEST_RSS_SLACK_KIB=1048576 $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider
	@if ls build-tsan/tsan.* >/dev/null 2>&1; then cat build-tsan/tsan.*; exit 1; fi

# libFuzzer targets for every parser and for the raw server path (clang, ASan + UBSan), each for
# FUZZ_SECONDS, starting from tests/fuzz/corpus/<target>. `make fuzz FUZZ_SECONDS=10` is a smoke run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := ws_frames topic cursor config jwt server
fuzz: deps
	@cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DHERALD_FUZZ=ON -DHERALD_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  build-fuzz/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    build-fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>build-fuzz/fuzz_$$t.log \
	    || { tail -40 build-fuzz/fuzz_$$t.log; exit 1; }; \
	  grep -E "^Done|^#[0-9]+ *DONE" build-fuzz/fuzz_$$t.log | tail -1; \
	done

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) build-asan

# docker/nginx.conf is the shipped config/nginx/herald.conf rendered for docker/compose.yaml.
docker-config:
	scripts/nginx-conf.sh 8080 /var/run herald1:8080 herald2:8080 | sed 's#^error_log .*#error_log stderr warn;#' > docker/nginx.conf
