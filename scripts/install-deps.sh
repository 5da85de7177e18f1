#!/usr/bin/env bash
# Installs every Debian package herald needs to build, test and benchmark, and the npm packages
# the integration tests use. Idempotent: when everything is present it only checks, in a second.
#   scripts/install-deps.sh          everything (what `make run`, `make test` and CI use)
#   scripts/install-deps.sh build    only what compiling needs (the Docker build stage)
set -euo pipefail
profile="${1:-all}"

# Compiling only (the Docker build stage): no test servers, clang, charts or node.
build_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libyaml-cpp-dev libhiredis-dev
  libgtest-dev libssl-dev libcli11-dev zlib1g-dev
)
packages=(
  "${build_packages[@]}"
  # tests: independent clients and the servers tests start themselves
  curl openssl python3 python3-pytest python3-websockets python3-requests python3-yaml
  redis-server nginx libnginx-mod-nchan
  prometheus  # promtool: /metrics is checked with `promtool check metrics`
  # tests of the deployment files: systemd-analyze rates and checks the unit (nothing is
  # started), strace lists the system calls herald makes against the unit's filter
  systemd strace
  # a unit test that only a checked heap can fail (message recycling at thread exit)
  valgrind
  # make fuzz: clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev
  # benchmarks: charts
  gnuplot-nox procps iproute2
  # the JavaScript client's browser tests (driven by playwright-core from npm)
  chromium
)

# Choose the list first: what is missing is computed from the list this profile installs.
if [ "$profile" = "build" ]; then packages=("${build_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm: any install that provides the commands will do (some images ship NodeSource's).
if [ "$profile" != "build" ]; then
  if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
  if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node packages for the EventSource/WebSocket client tests (from the npm registry).
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$profile" != "build" ] && [ -f "$here/tests/integration/package.json" ] && [ ! -d "$here/tests/integration/node_modules" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "install-deps: npm ci in tests/integration"
    (cd "$here/tests/integration" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
