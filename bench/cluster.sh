#!/usr/bin/env bash
# Publish throughput and fan-out through Redis: one herald instance on one Redis server against
# the same instance on a Redis Cluster of three masters (+ three replicas, scripts/cluster-local.sh),
# in the same run (issue 14). Also the CPU Redis spent per delivered message (INFO cpu of every
# Redis process, replicas included, before and after the measured run).
#
#   bench/cluster.sh            # prints one line per (topology, scenario) and a Markdown table
#
# Environment: HERALD_BIN (build/herald), BENCH_BIN (default: an up-to-date build, see
# ensure_bench_bin in bench/lib.sh), DURATION (5 s), REDIS_PORT (6480), CLUSTER_PORT (7480, and the next five).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
HERALD_BIN=${HERALD_BIN:-$BUILD_DIR/herald}
BENCH_BIN=${BENCH_BIN:-}  # empty: ensure_bench_bin (bench/lib.sh) builds an up-to-date one
DURATION=${DURATION:-5}
REDIS_PORT=${REDIS_PORT:-6480}
CLUSTER_PORT=${CLUSTER_PORT:-7480}
HERALD_PORT=${HERALD_PORT:-18480}
TMP=$(mktemp -d /tmp/herald-cluster-bench.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$ROOT/scripts/cluster-local.sh" stop "$TMP/cluster" >/dev/null 2>&1 || true
  if [[ -f $TMP/redis.pid ]]; then kill "$(cat "$TMP/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }  # a node may still write nodes.conf
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
ensure_bench_bin

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
  --daemonize yes --pidfile "$TMP/redis.pid" --logfile "$TMP/redis.log"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
CLUSTER_PORT=$CLUSTER_PORT "$ROOT/scripts/cluster-local.sh" start "$TMP/cluster" >/dev/null
mapfile -t CLUSTER_PORTS < <(seq "$CLUSTER_PORT" $((CLUSTER_PORT + 5)))

redis_cpu() {  # ports... -> total used_cpu_sys + used_cpu_user (seconds)
  local total=0 p v
  for p in "$@"; do
    v=$(redis-cli -p "$p" INFO cpu | awk -F: '/^used_cpu_(sys|user):/{s+=$2} END{printf "%.6f", s}')
    total=$(awk -v a="$total" -v b="$v" 'BEGIN{printf "%.6f", a+b}')
  done
  echo "$total"
}

run() {  # topology scenario bench-args...
  local topo=$1 name=$2; shift 2
  local redis_block ports
  if [[ $topo == single ]]; then
    redis_block="  shards: [\"127.0.0.1:$REDIS_PORT\"]"; ports=("$REDIS_PORT")
  else
    redis_block="  cluster: [\"127.0.0.1:$CLUSTER_PORT\"]"; ports=("${CLUSTER_PORTS[@]}")
  fi
  cat > "$TMP/herald.yaml" <<YAML
listen: 127.0.0.1:$HERALD_PORT
workers: 2
broker: redis
redis:
$redis_block
log:
  level: warn
limits:
  max_connections: 20000
  max_queued_bytes: 4MiB
  connections_per_ip: 0
  new_connections_per_ip_per_s: 0
  publishes_per_key_per_s: 0
auth:
  allow_unauthenticated_publish: true
history:
  size: 100
YAML
  "$HERALD_BIN" --config "$TMP/herald.yaml" >"$TMP/herald-$topo-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_until_up "$pid" http_ok "$HERALD_PORT" /readyz || {
    tail -20 "$TMP/herald-$topo-$name.log" >&2
    echo "herald did not become ready on $topo" >&2
    exit 1
  }
  local c0; c0=$(redis_cpu "${ports[@]}")
  local out
  out=$(timeout 120 "$BENCH_BIN" --scenario "$name" --kind herald --port "$HERALD_PORT" \
        --threads 2 --drain 10 --server-pid "$pid" --duration "$DURATION" "$@")
  local c1; c1=$(redis_cpu "${ports[@]}")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  /usr/bin/python3 - "$topo" "$name" "$out" "$c0" "$c1" <<'PY'
import json, sys
topo, name, out, c0, c1 = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
d = out["deliveries"]
pubs = max(out["publishes"], 1)
per_d = lambda us: f"{us / d:.2f}" if d else "-"
print(f"| {topo} | {name} | {out['publish_req_per_s']:.0f} | {out['deliveries_per_s']:.0f} | "
      f"{out['publish_errors']:.0f} | {out['lost']:.0f}/{out['dup']:.0f}/{out['reordered']:.0f} | "
      f"{(c1 - c0) * 1e6 / pubs:.1f} | {per_d((c1 - c0) * 1e6)} | {per_d(out['server_cpu_us'])} |")
PY
}

echo "| Redis | scenario | publishes/s | deliveries/s | publish errors | lost/dup/reordered | Redis CPU µs / publish | Redis CPU µs / delivery | herald CPU µs / delivery |"
echo "|---|---|---|---|---|---|---|---|---|"
for topo in single cluster; do
  run "$topo" publish_only --topics 1000 --publishers 4 --pipeline 32
  run "$topo" ws_1000x2_flat --ws 2000 --topics 1000 --publishers 4 --pipeline 32
done
