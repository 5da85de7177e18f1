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
. "$(dirname "${BASH_SOURCE[0]}")/lib/redis-local.sh"

redis_local_args "$@"
redis_port=${REDIS_PORT:-6390}
sentinel_port=${SENTINEL_PORT:-26390}
name=${MASTER_NAME:-herald-a}

case "$cmd" in
start)
    mkdir -p "$dir"
    for i in 0 1 2; do
        args=()
        [[ $i -gt 0 ]] && args+=(--replicaof $host "$redis_port")
        redis_local_server $((redis_port + i)) "${args[@]}"
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
        redis_local_wait_pong "$port"
    done
    echo "redis:"
    echo "  shards:"
    echo "    - {sentinels: [\"$host:$sentinel_port\", \"$host:$((sentinel_port + 1))\", \"$host:$((sentinel_port + 2))\"], master: \"$name\"}"
    ;;
stop)
    redis_local_stop "$dir"/sentinel-*.pid "$dir"/redis-*.pid
    ;;
*)
    redis_local_usage
    ;;
esac
