# Sourced by bench/run.sh and bench/cluster.sh: building the load generator and waiting for a
# server they started. What they measure stays in each script (herald-bench samples the servers'
# CPU itself, from --server-pid).

# Sets BENCH_BIN to a herald-bench binary: the one given, or one built standalone from bench/
# into BUILD_DIR/bench-standalone when it is missing (a build without HERALD_BENCH).
ensure_bench_bin() {
  [[ -x $BENCH_BIN ]] && return 0
  printf 'building herald-bench standalone (BENCH_BIN=%s not found)\n' "$BENCH_BIN" >&2
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
