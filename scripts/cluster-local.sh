#!/usr/bin/env bash
# A Redis Cluster on one machine, for trying herald on it (docs/deployment.md): three masters and
# three replicas (redis-cli --cluster create ... --cluster-replicas 1), all redis-server processes
# bound to 127.0.0.1, without persistence, their files in DIR.
#
#   scripts/cluster-local.sh start DIR   # starts them, prints herald's redis.cluster entry
#   scripts/cluster-local.sh stop DIR    # stops every process it started in DIR
#
# Ports: CLUSTER_PORT (7000) and the next five. cluster-node-timeout is NODE_TIMEOUT_MS (1000),
# so a replica takes over a dead master within a few seconds; production clusters use longer
# ones (see deployment.md).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
base=${CLUSTER_PORT:-7000}
timeout_ms=${NODE_TIMEOUT_MS:-1000}
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
    nodes=()
    for i in 0 1 2 3 4 5; do
        port=$((base + i))
        redis-server --port "$port" --bind $host --save "" --appendonly no --dir "$dir" \
            --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
            --cluster-node-timeout "$timeout_ms" --repl-diskless-sync-delay 0 --daemonize yes \
            --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
        wait_pong "$port"
        nodes+=("$host:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
    # Until every node agrees the cluster is up (slots assigned and known everywhere) and every
    # replica finished its first sync (one that never synced cannot take over from its master).
    ready() {  # port
        local info
        info=$(redis-cli -h $host -p "$1" CLUSTER INFO)
        grep -q '^cluster_state:ok' <<<"$info" || return 1
        info=$(redis-cli -h $host -p "$1" INFO replication)
        grep -q '^role:master' <<<"$info" || grep -q '^master_link_status:up' <<<"$info"
    }
    for port in $(seq "$base" $((base + 5))); do
        for _ in $(seq 300); do
            ready "$port" && break
            sleep 0.1
        done
        ready "$port" || {
            echo "the cluster did not come up; see $dir" >&2
            exit 1
        }
    done
    echo "redis:"
    echo "  cluster: [\"$host:$base\", \"$host:$((base + 1))\", \"$host:$((base + 2))\"]"
    ;;
stop)
    for pid_file in "$dir"/redis-*.pid; do
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
