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
. "$(dirname "${BASH_SOURCE[0]}")/lib/redis-local.sh"

redis_local_args "$@"
base=${CLUSTER_PORT:-7000}
timeout_ms=${NODE_TIMEOUT_MS:-1000}

case "$cmd" in
start)
    mkdir -p "$dir"
    nodes=()
    for i in 0 1 2 3 4 5; do
        port=$((base + i))
        redis_local_server "$port" --cluster-enabled yes \
            --cluster-config-file "$dir/nodes-$port.conf" --cluster-node-timeout "$timeout_ms" \
            --repl-diskless-sync-delay 0
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
    redis_local_stop "$dir"/redis-*.pid
    ;;
*)
    redis_local_usage
    ;;
esac
