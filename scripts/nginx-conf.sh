#!/usr/bin/env bash
# Renders config/nginx/herald.conf for a given listen address and upstream herald instances.
# Used by the integration tests and to generate docker/nginx.conf, so both run the shipped file.
#   scripts/nginx-conf.sh LISTEN PREFIX UPSTREAM [UPSTREAM...]
#   LISTEN   e.g. 127.0.0.1:18080 or 8080
#   PREFIX   directory for the pid file and error log (e.g. a test's temp dir, or /var/run/nginx)
set -euo pipefail
listen="$1"; prefix="$2"; shift 2
[ $# -ge 1 ] || { echo "usage: $0 LISTEN PREFIX UPSTREAM..." >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
servers=""
for u in "$@"; do servers+="        server $u max_fails=3 fail_timeout=5s;\n"; done
awk -v listen="$listen" -v prefix="$prefix" -v servers="$servers" '
  /^ *server 127\.0\.0\.1:808[12]/ { if (!done) { printf "%s", servers; done = 1 } ; next }
  /^ *listen 8080;/ { sub(/8080/, listen) }
  /^pid / { print "pid " prefix "/nginx-herald.pid;"; next }
  /^error_log / { print "error_log " prefix "/nginx-herald-error.log warn;"; next }
  { print }
' "$here/config/nginx/herald.conf" | sed 's/\\n/\n/g'
