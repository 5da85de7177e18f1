# Sourced by scripts/cluster-local.sh and scripts/sentinel-local.sh: what both do with the local
# redis-server processes they run for docs/deployment.md. Every process is bound to 127.0.0.1,
# runs without persistence, daemonizes, and keeps its pid file and log in $dir, which is how
# `stop` finds exactly the processes one `start DIR` made and nothing else.
#
# The sourcing script calls redis_local_args "$@" first; it sets cmd, dir and host.

redis_local_args() {  # "$@" of the script: start|stop DIR
    cmd=${1:-}
    dir=${2:-}
    host=127.0.0.1
    if [[ -z "$cmd" || -z "$dir" ]]; then
        redis_local_usage
    fi
}

redis_local_usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

redis_local_wait_pong() {  # port
    for _ in $(seq 100); do
        [[ "$(redis-cli -h $host -p "$1" PING 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    echo "redis on port $1 did not start; see $dir" >&2
    return 1
}

# Starts a redis-server on `port` with the shared settings plus `args` and waits until it answers.
redis_local_server() {  # port [redis-server args...]
    local port=$1
    shift
    redis-server --port "$port" --bind $host --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" "$@"
    redis_local_wait_pong "$port"
}

# Stops the processes whose pid files in $dir match the given globs (each waited for, 5 s at
# most) and removes the pid files.
redis_local_stop() {  # glob...
    local pid_file pid
    for pid_file in "$@"; do
        [[ -f "$pid_file" ]] || continue
        pid=$(cat "$pid_file")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pid_file"
    done
}
