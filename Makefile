# The two commands a newcomer needs: `make run` and `make test`. Both install what is missing.
BUILD     ?= build
JOBS      ?= $(shell nproc)
PYTHON    ?= /usr/bin/python3
CMAKE_ARGS ?=
CONFIG    ?= config/herald.yaml

.PHONY: all deps configure build run test unit integration bench bench-quick test-asan format clean docker-config

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
	HERALD_BIN=$(abspath build-asan)/herald $(PYTHON) -m pytest tests/integration -q -p no:cacheprovider

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) build-asan

# docker/nginx.conf is the shipped config/nginx/herald.conf rendered for docker/compose.yaml.
docker-config:
	scripts/nginx-conf.sh 8080 /var/run herald1:8080 herald2:8080 | sed 's#^error_log .*#error_log stderr warn;#' > docker/nginx.conf
