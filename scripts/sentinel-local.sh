#!/usr/bin/env bash
# A Sentinel deployment on one machine, for trying herald's failover (docs/deployment.md):
# one master, two replicas, three sentinels, all redis-server processes bound to 127.0.0.1,
# without persistence, their files in DIR.
#
#   scripts/sentinel-local.sh start DIR   # starts them, prints herald's redis.shards entry
#   scripts/sentinel-local.sh stop DIR    # stops every process it started in DIR
#
# Ports: REDIS_PORT (6390; the replicas take the next two), SENTINEL_PORT (26390, and the next
# two). The master name is MASTER_NAME (herald-a). Down-after 1 s and failover timeout 3 s, so a
# failover takes a few seconds; production sentinels use longer ones (see deployment.md).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
redis_port=${REDIS_PORT:-6390}
sentinel_port=${SENTINEL_PORT:-26390}
name=${MASTER_NAME:-herald-a}
host=127.0.0.1

wait_pong() {  # port
    for _ in $(seq 100); do
        [[ "$(redis-cli -h $host -p "$1" PING 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    echo "redis on port $1 did not start; see $dir" >&2
    return 1
}

case "$cmd" in
start)
    mkdir -p "$dir"
    for i in 0 1 2; do
        port=$((redis_port + i))
        args=(--port "$port" --bind $host --save "" --appendonly no --dir "$dir"
              --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log")
        [[ $i -gt 0 ]] && args+=(--replicaof $host "$redis_port")
        redis-server "${args[@]}"
        wait_pong "$port"
    done
    for i in 0 1 2; do
        port=$((sentinel_port + i))
        cat >"$dir/sentinel-$port.conf" <<EOF
port $port
bind $host
daemonize yes
pidfile $dir/sentinel-$port.pid
logfile $dir/sentinel-$port.log
dir $dir
sentinel monitor $name $host $redis_port 2
sentinel down-after-milliseconds $name 1000
sentinel failover-timeout $name 3000
sentinel parallel-syncs $name 2
EOF
        redis-server "$dir/sentinel-$port.conf" --sentinel
        wait_pong "$port"
    done
    echo "redis:"
    echo "  shards:"
    echo "    - {sentinels: [\"$host:$sentinel_port\", \"$host:$((sentinel_port + 1))\", \"$host:$((sentinel_port + 2))\"], master: \"$name\"}"
    ;;
stop)
    for pid_file in "$dir"/sentinel-*.pid "$dir"/redis-*.pid; do
        [[ -f "$pid_file" ]] || continue
        pid=$(cat "$pid_file")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pid_file"
    done
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
