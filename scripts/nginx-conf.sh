#!/usr/bin/env bash
# Renders config/nginx/herald.conf for a given listen address and upstream herald instances.
# Used by the docs, the integration tests and to generate docker/nginx.conf, so all of them run
# the shipped file.
#   scripts/nginx-conf.sh [--tls LISTEN CERT KEY] [--allow ADDR]... LISTEN PREFIX UPSTREAM...
#   LISTEN   e.g. 127.0.0.1:8090 or 8080 (all addresses)
#   PREFIX   directory for the pid file, error log and temp files (nginx -p PREFIX)
#   --tls    switch the TLS + HTTP/2 lines on: listen there (e.g. 127.0.0.1:8443) with CERT/KEY
#   --allow  one more address or CIDR allowed to reach /publish, /admin and /metrics
set -euo pipefail
usage() { echo "usage: $0 [--tls LISTEN CERT KEY] [--allow ADDR]... LISTEN PREFIX UPSTREAM..." >&2; exit 2; }
tls_listen=""; tls_cert=""; tls_key=""; allows=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tls) [ $# -ge 4 ] || usage; tls_listen="$2"; tls_cert="$3"; tls_key="$4"; shift 4 ;;
    --allow) [ $# -ge 2 ] || usage; allows+="$2 "; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage
listen="$1"; prefix="$2"; shift 2
here="$(cd "$(dirname "$0")/.." && pwd)"
servers=""
for u in "$@"; do servers+="        server $u max_fails=3 fail_timeout=5s;\n"; done
awk -v listen="$listen" -v prefix="$prefix" -v servers="$servers" -v tls_listen="$tls_listen" \
    -v tls_cert="$tls_cert" -v tls_key="$tls_key" -v allows="$allows" '
  /^ *server 127\.0\.0\.1:808[12]/ { if (!done) { printf "%s", servers; done = 1 } ; next }
  /^ *listen 127\.0\.0\.1:8090;/ { sub(/127\.0\.0\.1:8090/, listen) }
  /^pid / { print "pid " prefix "/nginx-herald.pid;"; next }
  /^error_log / { print "error_log " prefix "/nginx-herald-error.log warn;"; next }
  /^ *(client_body|proxy|fastcgi|uwsgi|scgi)_temp_path / { sub(/_temp_path /, "_temp_path " prefix "/") }
  /^ *#tls / {
    if (tls_listen == "") { print; next }
    sub(/#tls /, "")
    sub(/listen 443 /, "listen " tls_listen " ")
    sub(/ssl_certificate +[^;]*;/, "ssl_certificate " tls_cert ";")
    sub(/ssl_certificate_key +[^;]*;/, "ssl_certificate_key " tls_key ";")
  }
  /^ *allow 127\.0\.0\.1;/ {
    print
    match($0, /^ */); pad = substr($0, 1, RLENGTH)
    n = split(allows, extra, " ")
    for (i = 1; i <= n; i++) print pad "allow " extra[i] ";"
    next
  }
  { print }
' "$here/config/nginx/herald.conf" | sed 's/\\n/\n/g'
