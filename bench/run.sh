#!/usr/bin/env bash
# Runs the benchmark matrix of issue 3 against herald, a uWebSockets peer (issue 15) and nginx + nchan,
# side by side, and writes
# bench/results/latest.json and docs/benchmarks.md (with charts in docs/bench/).
#
# Every run gets a freshly started server (so idle RSS is measured from a clean process), servers
# alternate within each repetition, and the report quotes medians over REPEAT runs.
#
# Environment:
#   HERALD_BIN   herald binary            (default build/herald)
#   BENCH_BIN    herald-bench binary      (default: build/bench/herald-bench when the build has
#                HERALD_BENCH=ON, else build/bench-standalone/herald-bench; rebuilt if out of date)
#   NGINX_BIN    nginx binary             (default nginx from PATH)
#   NCHAN_MODULE nchan module             (default /usr/lib/nginx/modules/ngx_nchan_module.so)
#   UWS_BIN      uWebSockets peer         (default build/peers/uws/uws-peer; bench/peers/uws/build.sh
#                builds it, `make bench-peers`; skipped with a message when absent)
#   SERVERS      servers to run           (default "herald uws nchan")
#   REPEAT       runs per scenario/server (default 3; QUICK=1 makes it 1)
#   QUICK=1      short runs (3 s, idle 2 s), one repetition: about 2-4 minutes (full: 8-12)
#   DURATION     seconds per measured run (default 6; QUICK 3)
#   IDLE         seconds idle connections are held (default 4; QUICK 2)
#   SCENARIOS    space-separated subset of scenario names (default all; see list_scenarios)
#   THREADS      herald-bench threads     (default 2)
#   DRAIN        at most this many seconds to wait for in-flight deliveries after publishing (default 10)
#   HERALD_HISTORY  history.size for herald (default 0, like nchan's buffer length 0)
#   HERALD_WORKERS  herald's workers (default 2, one per core; 1 compares thread for thread with
#                the one-threaded uWS peer: use it with NO_REPORT=1, the report says 2)
#   NO_REPORT=1  only write the raw results, skip docs/benchmarks.md
#   KEEP_TMP=1   keep the temporary directory (server logs, configs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
HERALD_BIN=${HERALD_BIN:-$BUILD_DIR/herald}
BENCH_BIN=${BENCH_BIN:-}  # empty: ensure_bench_bin (bench/lib.sh) builds an up-to-date one
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
UWS_BIN=${UWS_BIN:-$BUILD_DIR/peers/uws/uws-peer}
SERVERS=${SERVERS:-"herald uws nchan"}
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  REPEAT=${REPEAT:-1}; DURATION=${DURATION:-3}; IDLE=${IDLE:-2}
else
  REPEAT=${REPEAT:-3}; DURATION=${DURATION:-6}; IDLE=${IDLE:-4}
fi
THREADS=${THREADS:-2}
DRAIN=${DRAIN:-10}
HERALD_HISTORY=${HERALD_HISTORY:-0}
RESULTS_DIR=$ROOT/bench/results
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------------------------------------
# binaries
ensure_bench_bin
if [[ " $SERVERS " == *" herald "* && ! -x $HERALD_BIN ]]; then
  die "herald binary not found at $HERALD_BIN (build it first: cmake --build build, or set HERALD_BIN; SERVERS=nchan runs the peer alone)"
fi
if [[ " $SERVERS " == *" uws "* && ! -x $UWS_BIN ]]; then
  log "uWebSockets peer not built ($UWS_BIN not found): skipping it. Build it with" \
      "'make bench-peers' or 'bench/peers/uws/build.sh SRC_DIR' (see bench/README.md)"
  SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -vx uws | paste -sd' ')
fi
if [[ " $SERVERS " == *" nchan "* ]]; then
  [[ -x $NGINX_BIN ]] || die "nginx not found (apt-get install nginx libnginx-mod-nchan)"
  [[ -f $NCHAN_MODULE ]] || die "nchan module not found at $NCHAN_MODULE (apt-get install libnginx-mod-nchan)"
fi

TMP=$(mktemp -d /tmp/herald-bench.XXXXXX)
SERVER_PID=""
cleanup() {
  local rc=$?
  stop_server || true
  if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# ports: two distinct free loopback ports, one per server kind, so they never compete
port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
  local p tries=0
  while (( tries++ < 200 )); do
    p=$(( 20000 + RANDOM % 10000 ))
    [[ $p == "${HERALD_PORT:-}" || $p == "${NCHAN_PORT:-}" || $p == "${UWS_PORT:-}" ]] && continue
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}
HERALD_PORT=$(pick_port)
NCHAN_PORT=$(pick_port)
UWS_PORT=$(pick_port)

wait_http() {  # wait (bounded, 10 s) until something answers HTTP on port $1
  wait_until_up "$SERVER_PID" http_answers "$1" /healthz
}

SERVER_PIDS=""
start_herald() {
  # *_history scenarios run herald with its default history (100 messages per topic, issue 15's
  # "publish only <= 2.0 x uWS with history on"); the others with HERALD_HISTORY
  local HERALD_SIZE=$HERALD_HISTORY
  [[ ${HERALD_DEFAULT_HISTORY:-0} == 1 ]] && HERALD_SIZE=100
  cat > "$TMP/herald.yaml" <<EOF
listen: 127.0.0.1:$HERALD_PORT
workers: ${HERALD_WORKERS:-2}
broker: memory
log:
  level: warn
limits:
  max_connections: 20000
  max_queued_bytes: 4MiB
  # the load generator is one client opening thousands of connections and publishing flat out
  connections_per_ip: 0
  new_connections_per_ip_per_s: 0
  publishes_per_key_per_s: 0
auth:
  allow_unauthenticated_publish: true
history:
  size: $HERALD_SIZE
shutdown:
  drain_timeout: 5s
EOF
  if [[ ${HERALD_PRESENCE:-0} == 1 ]]; then
    # *_presence scenarios: every topic has presence (issue 16: it must not cost per message)
    printf 'presence:\n  patterns: ["*"]\n' >> "$TMP/herald.yaml"
  fi
  "$HERALD_BIN" --config "$TMP/herald.yaml" --listen "127.0.0.1:$HERALD_PORT" --workers "${HERALD_WORKERS:-2}" \
    --log-level warn >>"$TMP/herald.log" 2>&1 &
  SERVER_PID=$!
  wait_http "$HERALD_PORT" || { tail -20 "$TMP/herald.log" >&2; die "herald did not start"; }
  SERVER_PIDS=$SERVER_PID
}

start_nchan() {
  local prefix=$TMP/nginx
  mkdir -p "$prefix"
  sed -e "s#@PREFIX@#$prefix#g" -e "s#@PORT@#$NCHAN_PORT#g" \
      -e "s#/usr/lib/nginx/modules/ngx_nchan_module.so#$NCHAN_MODULE#" \
      "$ROOT/bench/nchan.conf.in" > "$prefix/nginx.conf"
  "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" >>"$TMP/nginx.out" 2>&1 &
  SERVER_PID=$!
  wait_http "$NCHAN_PORT" || { tail -20 "$prefix/error.log" >&2; die "nginx did not start"; }
  local i workers=""
  for (( i = 0; i < 100; i++ )); do
    workers=$(pgrep -P "$SERVER_PID" | paste -sd, || true)
    [[ $(tr ',' '\n' <<<"$workers" | grep -c .) -ge 2 ]] && break
    sleep 0.05
  done
  SERVER_PIDS="$SERVER_PID${workers:+,$workers}"
}

start_uws() {
  # one thread, one process: the peer's best case (bench/peers/uws/server.cpp)
  "$UWS_BIN" "$UWS_PORT" >>"$TMP/uws.log" 2>&1 &
  SERVER_PID=$!
  wait_http "$UWS_PORT" || { tail -20 "$TMP/uws.log" >&2; die "uws-peer did not start"; }
  SERVER_PIDS=$SERVER_PID
}

STOP_MS=0
STOP_KILLED=0
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local i t0
  t0=$(date +%s%N)
  STOP_KILLED=0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  # herald's drain_timeout is 5 s here and it must exit within it; allow 8 s before SIGKILL
  for (( i = 0; i < 160; i++ )); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    STOP_KILLED=1
    log "server $SERVER_PID did not exit within 8 s of SIGTERM; SIGKILL"
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    # nginx workers of a killed master
    local w
    for w in ${SERVER_PIDS//,/ }; do kill -KILL "$w" 2>/dev/null || true; done
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  STOP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  SERVER_PID=""
  SERVER_PIDS=""
}

# ---------------------------------------------------------------------------------------------
# the scenario matrix (name | herald-bench arguments); issue 3
D=$DURATION
SCENARIO_LIST=(
  "idle_ws_10k|--ws 10000 --topics 1000 --idle $IDLE"
  "idle_sse_10k|--sse 10000 --topics 1000 --idle $IDLE"
  "ws_1x1000_100mps|--ws 1000 --topics 1 --rate 100 --duration $D"
  "ws_1x1000_flat|--ws 1000 --topics 1 --duration $D --pipeline 16"
  "ws_1x1000_flat_presence|--ws 1000 --topics 1 --duration $D --pipeline 16"
  "ws_1x1000_flat_4k|--ws 1000 --topics 1 --duration $D --pipeline 16 --size 4096"
  "ws_1x10000_flat|--ws 10000 --topics 1 --duration $D --pipeline 16"
  "ws_1x10000_flat_4k|--ws 10000 --topics 1 --duration $D --pipeline 16 --size 4096"
  "ws_10000x1_flat|--ws 10000 --topics 10000 --publishers 4 --pipeline 64 --duration $D"
  "sse_1x1000_flat|--sse 1000 --topics 1 --duration $D --pipeline 16"
  "sse_1x1000_flat_4k|--sse 1000 --topics 1 --duration $D --pipeline 16 --size 4096"
  "publish_only|--topics 1000 --publishers 4 --pipeline 32 --duration $D"
  "publish_only_history|--topics 1000 --publishers 4 --pipeline 32 --duration $D"
  "publish_only_4k|--topics 1000 --publishers 4 --pipeline 32 --duration $D --size 4096"
)
list_scenarios() { local s; for s in "${SCENARIO_LIST[@]}"; do echo "${s%%|*}"; done; }
if [[ ${1:-} == --list ]]; then list_scenarios; exit 0; fi
SCENARIOS=${SCENARIOS:-$(list_scenarios | paste -sd' ')}

mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUNS=$RESULTS_DIR/runs-$STAMP.jsonl
: > "$RUNS"
T0=$(date +%s)
HERALD_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo uncommitted)
log "servers: $SERVERS; herald port $HERALD_PORT, uws port $UWS_PORT, nchan port $NCHAN_PORT; repeat $REPEAT; duration $D s; load generator $BENCH_BIN"
log "raw results: $RUNS"

run_one() {  # server scenario repeat args...
  local server=$1 name=$2 rep=$3; shift 3
  local port
  case $server in
    herald) start_herald; port=$HERALD_PORT ;;
    uws)    start_uws;    port=$UWS_PORT ;;
    nchan)  start_nchan;  port=$NCHAN_PORT ;;
    *) die "unknown server $server" ;;
  esac
  local out rc=0
  # the bench bounds itself (connect 60 s, warm-up 10 s, drain 5 s); timeout is a last resort
  out=$(timeout 180 "$BENCH_BIN" --scenario "$name" --kind "$server" --port "$port" \
        --threads "$THREADS" --drain "$DRAIN" --server-pid "$SERVER_PIDS" "$@" 2>>"$TMP/bench.err") || rc=$?
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  local alive=1
  kill -0 "$SERVER_PID" 2>/dev/null || alive=0
  stop_server
  if [[ $rc != 0 || -z $out ]]; then
    log "$server $name #$rep: herald-bench failed (rc=$rc); stderr tail:"; tail -5 "$TMP/bench.err" >&2
    out="{\"scenario\":\"$name\",\"server\":\"$server\",\"failed\":1}"
  fi
  # annotate with repeat and whether the server survived the run
  out="${out%\}},\"repeat\":$rep,\"server_alive\":$alive,\"stop_ms\":$STOP_MS,\"stop_killed\":$STOP_KILLED,\"loadavg\":$load}"
  echo "$out" >> "$RUNS"
  "$PY" - "$out" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
if r.get("failed"):
    print(f"  {r['server']:6} {r['scenario']:22} FAILED"); sys.exit()
if r.get("mode") == "idle":
    print(f"  {r['server']:6} {r['scenario']:22} conns={r['open_at_end']} rss/conn={r['rss_per_conn_bytes']} B pss/conn={r['pss_per_conn_bytes']} B stop={r['stop_ms']}ms{' KILLED' if r['stop_killed'] else ''}")
else:
    l = r["latency_us"]
    print(f"  {r['server']:6} {r['scenario']:22} del/s={r['deliveries_per_s']:.0f} pub/s={r['publish_req_per_s']:.0f} "
          f"cpu/1k={r.get('cpu_us_per_1000_deliveries', r['cpu_us_per_1000_publishes'])} p50={l['p50']:.0f}us p99={l['p99']:.0f}us "
          f"lost={r['lost']} dup={r['dup']} reord={r['reordered']} closed={r['server_closed']} errs={len(r['errors'])} alive={r['server_alive']} stop={r['stop_ms']}ms{' KILLED' if r['stop_killed'] else ''}")
EOF
}

read -r -a server_arr <<<"$SERVERS"
for entry in "${SCENARIO_LIST[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  [[ " $SCENARIOS " == *" $name "* ]] || continue
  for (( rep = 1; rep <= REPEAT; rep++ )); do
    order=("${server_arr[@]}")
    if (( rep % 2 == 0 )); then  # alternate which server goes first
      order=(); for (( i = ${#server_arr[@]} - 1; i >= 0; i-- )); do order+=("${server_arr[i]}"); done
    fi
    for server in "${order[@]}"; do
      HERALD_PRESENCE=0
      [[ $name == *_presence ]] && HERALD_PRESENCE=1
      HERALD_DEFAULT_HISTORY=0
      [[ $name == *_history ]] && HERALD_DEFAULT_HISTORY=1
      # shellcheck disable=SC2086
      run_one "$server" "$name" "$rep" $args
    done
  done
done
T1=$(date +%s)
log "matrix done in $(( T1 - T0 )) s"

# machine and command metadata for the report
{
  printf '{"stamp":"%s","nproc":%s,' "$STAMP" "$(nproc)"
  printf '"cpu":"%s",' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"/\\"/g')"
  printf '"kernel":"%s","mem_mb":%s,' "$(uname -r)" "$(free -m | awk '/Mem:/{print $2}')"
  printf '"nginx":"%s","nchan":"%s",' "$("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///')" \
    "$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo unknown)"
  printf '"herald_commit":"%s",' "$HERALD_COMMIT"
  printf '"uws":"%s",' "$( [[ -f ${UWS_BIN%/*}/VERSION ]] && paste -sd' ' "${UWS_BIN%/*}/VERSION" || echo none)"
  printf '"repeat":%s,"duration":%s,"idle":%s,"threads":%s,"herald_history":%s,' \
    "$REPEAT" "$DURATION" "$IDLE" "$THREADS" "$HERALD_HISTORY"
  printf '"quick":%s,"wall_s":%s,"servers":"%s","drain":%s,' "$QUICK" "$(( T1 - T0 ))" "$SERVERS" "$DRAIN"
  printf '"herald_sha256":"%s",' "$( [[ -f $HERALD_BIN ]] && sha256sum "$HERALD_BIN" | cut -c1-12 || echo none)"
  printf '"bench_bin":"%s","bench_sha256":"%s",' "$BENCH_BIN" "$(sha256sum "$BENCH_BIN" | cut -c1-12)"
  printf '"fd_limit":%s}\n' "$(ulimit -Hn)"
} > "$TMP/meta.json"

REPORT_ARGS=(--runs "$RUNS" --meta "$TMP/meta.json" --out-json "$RESULTS_DIR/latest.json")
if [[ ${NO_REPORT:-0} != 1 ]]; then
  REPORT_ARGS+=(--out-md "$ROOT/docs/benchmarks.md" --charts "$ROOT/docs/bench")
fi
"$PY" "$ROOT/bench/report.py" "${REPORT_ARGS[@]}"
log "wrote $RESULTS_DIR/latest.json${NO_REPORT:+}"
