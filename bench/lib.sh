# Sourced by bench/run.sh and bench/cluster.sh: building the load generator and waiting for a
# server they started. What they measure stays in each script (herald-bench samples the servers'
# CPU itself, from --server-pid).

# Sets BENCH_BIN to an up-to-date herald-bench: the one given in BENCH_BIN as it is; else the
# top-level build's when that build has HERALD_BENCH=ON (cmake rebuilds it if bench/ changed); else
# one built standalone from bench/ into BUILD_DIR/bench-standalone (likewise kept up to date).
# Never a binary merely found in BUILD_DIR/bench: one left there by an earlier HERALD_BENCH=ON
# configuration is not rebuilt once the option is OFF, and session 8's full bench ran such a stale
# one (its warm-up sent 2,500 pipelined requests at once, which uWebSockets answers by closing the
# publisher: the uWS peer never warmed up in ws_10000x1_flat).
ensure_bench_bin() {
  if [[ -n ${BENCH_BIN:-} ]]; then
    [[ -x $BENCH_BIN ]] || { printf 'BENCH_BIN=%s is not an executable\n' "$BENCH_BIN" >&2; return 1; }
    return 0
  fi
  if grep -qs '^HERALD_BENCH:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
    cmake --build "$BUILD_DIR" --target herald-bench >/dev/null
    BENCH_BIN=$BUILD_DIR/bench/herald-bench
    return 0
  fi
  cmake -S "$ROOT/bench" -B "$BUILD_DIR/bench-standalone" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR/bench-standalone" >/dev/null
  BENCH_BIN=$BUILD_DIR/bench-standalone/herald-bench
}

# Runs `check...` until it succeeds (0) while process `pid` lives, 10 s at most (200 x 50 ms);
# 1 when the process died or the check never succeeded.
wait_until_up() {  # pid check...
  local pid=$1 i
  shift
  for (( i = 0; i < 200; i++ )); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Checks for wait_until_up: something answers HTTP on 127.0.0.1:port (any status: nginx has no
# health endpoint), or the path answers 2xx (herald's /readyz: its broker is connected).
http_answers() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1${2:-/}"; }  # port [path]
http_ok() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$1$2"; }  # port path
