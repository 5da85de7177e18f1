#!/usr/bin/env bash
# 100,000 WebSocket connections on one machine: a process may hold at most 20,000 descriptors
# here, so INSTANCES herald processes share topics through one Redis (broker: redis), each with
# PER subscribers from its own herald-bench process. Each bench process publishes to its own
# instance at RATE msg/s over TOPICS topics; every message goes through Redis (Lua publish,
# PUBLISH, the instance's pub/sub link) before it is fanned out.
# Writes bench/results/100k.json and bench/results/100k.md (included in docs/benchmarks.md).
#   INSTANCES=6 PER=16700 TOPICS=100 RATE=60 DURATION=10 bench/run-100k.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
INSTANCES="${INSTANCES:-6}"
PER="${PER:-16700}"
TOPICS="${TOPICS:-100}"
RATE="${RATE:-60}"
DURATION="${DURATION:-10}"
HERALD_BIN="${HERALD_BIN:-$root/build/herald}"
BENCH_BIN="${BENCH_BIN:-}"  # empty: an up-to-date build (ensure_bench_bin, bench/lib.sh)
ROOT=$root
BUILD_DIR=${BUILD_DIR:-$root/build}
. "$here/lib.sh"
ensure_bench_bin
REDIS_BIN="${REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}"
TMP="$(mktemp -d /tmp/herald-100k.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(free_port)
"$REDIS_BIN" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --maxclients 10000 > "$TMP/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

ports=(); hpids=()
for i in $(seq 1 "$INSTANCES"); do
  p=$(free_port)
  cat > "$TMP/h$i.yaml" <<YAML
workers: 1
broker: redis
redis: {shards: ["127.0.0.1:$rport"]}
log: {level: warn}
limits: {max_connections: 19500, max_queued_bytes: 4MiB, connections_per_ip: 0,
         new_connections_per_ip_per_s: 0, publishes_per_key_per_s: 0}
auth: {allow_unauthenticated_publish: true}
history: {size: 0}
YAML
  "$HERALD_BIN" --config "$TMP/h$i.yaml" --listen "127.0.0.1:$p" > "$TMP/h$i.log" 2>&1 &
  hpids+=($!); pids+=($!); ports+=("$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done
rss_kb() { local t=0; for p in "${hpids[@]}"; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
rss0=$(rss_kb)
echo "[100k] redis :$rport, $INSTANCES instances on ${ports[*]}, RSS before ${rss0} KiB"

bpids=()
for i in $(seq 1 "$INSTANCES"); do
  idx=$((i - 1))
  # Each bench process uses its own topic names and its own source addresses.
  "$BENCH_BIN" --scenario "100k_i$i" --kind herald --port "${ports[$idx]}" --threads 1 \
    --ws "$PER" --topics "$TOPICS" --ws-path "/ws?topic=i$i-%s" --pub-path "/publish/i$i-%s" \
    --publishers 2 --rate "$RATE" --duration "$DURATION" --size 64 --warmup 120 --drain 10 \
    --server-pid "${hpids[$idx]}" > "$TMP/b$i.json" 2> "$TMP/b$i.err" &
  bpids+=($!); pids+=($!)
done
# Sample RSS once every bench process reports its subscribers ready (connected + warm).
for _ in $(seq 600); do
  ready=$( (grep -l "warm-up:" "$TMP"/b*.err 2>/dev/null || true) | wc -l)
  [ "$ready" -ge "$INSTANCES" ] && break
  sleep 0.5
done
sleep 1
rss1=$(rss_kb)
conns=0
for p in "${ports[@]}"; do
  c=$(curl -fs "http://127.0.0.1:$p/metrics" | awk '$1=="herald_connections{transport=\"ws\"}"{print $2}')
  conns=$((conns + ${c:-0}))
done
echo "[100k] $conns WebSocket connections open, RSS ${rss1} KiB"
for b in "${bpids[@]}"; do wait "$b" || true; done

/usr/bin/python3 - "$TMP" "$INSTANCES" "$conns" "$rss0" "$rss1" "$here/results" <<'PY'
import json, sys, os, glob, platform
tmp, n, conns, rss0, rss1, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
runs = []
for i in range(1, n + 1):
    try:
        runs.append(json.load(open(os.path.join(tmp, f"b{i}.json"))))
    except Exception as e:
        runs.append({"scenario": f"100k_i{i}", "error": str(e)})
tot = lambda k: sum(r.get(k, 0) or 0 for r in runs)
deliveries, cpu = tot("deliveries"), tot("server_cpu_us")
p99s = sorted(r["latency_us"]["p99"] for r in runs if r.get("latency_us"))
summary = {
    "instances": n, "connections": conns, "connected": tot("connected"),
    "connect_failures": tot("connect_failures"), "deliveries": deliveries,
    "deliveries_per_s": round(tot("deliveries_per_s")), "publishes": tot("publishes"),
    "lost": tot("lost"), "dup": tot("dup"), "reordered": tot("reordered"),
    "server_cpu_us_per_1000_deliveries": round(cpu * 1000 / deliveries) if deliveries else None,
    "rss_before_kib": rss0, "rss_with_connections_kib": rss1,
    "rss_per_connection_bytes": round((rss1 - rss0) * 1024 / conns) if conns else None,
    "worst_instance_p99_ms": round(p99s[-1] / 1000, 1) if p99s else None,
}
os.makedirs(out, exist_ok=True)
json.dump({"summary": summary, "runs": runs}, open(os.path.join(out, "100k.json"), "w"), indent=1)
per = summary["rss_per_connection_bytes"] or 0
md = f"""## 100,000 connections: several instances on one Redis

`bench/run-100k.sh`: {n} herald processes (`broker: redis`, 1 worker each) on one `redis-server`, each
with its own `herald-bench` process ({conns:,} WebSocket connections open in all; a process may hold at
most 20,000 descriptors here, for herald and for the load generator alike). Every message is published
to an instance, goes through Redis (the Lua publish step and PUBLISH) and comes back on that
instance's pub/sub link before it is fanned out.

| measured | value |
|---|---|
| WebSocket connections open | {conns:,} (connect failures: {summary['connect_failures']}) |
| deliveries | {deliveries:,} ({summary['deliveries_per_s']:,}/s) |
| lost / duplicated / reordered | {summary['lost']} / {summary['dup']} / {summary['reordered']} |
| server CPU per 1,000 deliveries (all instances) | {summary['server_cpu_us_per_1000_deliveries']} µs |
| worst instance p99 latency | {summary['worst_instance_p99_ms']} ms |
| herald RSS, all instances: before / with connections | {rss0 // 1024} MiB / {rss1 // 1024} MiB |
| RSS per connection (busy: send queues in use) | {per:,} B |

At that cost, **1,000,000 connections** need about {per * 1_000_000 / 2**30:.1f} GiB of herald user-space
memory, spread over at least 52 processes where the descriptor limit is 20,000 (one process per core
and a raised limit elsewhere), plus the kernel's per-socket memory.
"""
open(os.path.join(out, "100k.md"), "w").write(md)
print(json.dumps(summary, indent=1))
PY
