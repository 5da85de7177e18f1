// `herald genconfig`: a commented production config. Every value is one herald accepts (a test
// runs --check-config on the output); the secrets are the caller's (random, see main.cpp).
#include "herald/config/config.hpp"

namespace herald::config {

std::string production_config(const std::string& publish_key, const std::string& jwt_secret,
                              const std::string& pseudonym_key) {
    return R"(# herald: a production configuration written by `herald genconfig`.
# Check it with `herald --check-config <this file>`; docs/configuration.md lists every key, with
# defaults and ranges; docs/operations.md says which keys a reload (SIGHUP) applies live.
# The secrets below are random and this file's only copy: keep it readable by herald alone
# (chmod 600), or move them to the environment (auth.publish_keys_env).

listen: "0.0.0.0:8080"       # behind a TLS-terminating proxy; or set tls.cert and tls.key
workers: 0                   # one event loop per core
broker: memory               # "redis" (with redis.shards) when several instances serve one site

log:
  level: info
  format: json               # one JSON object per line, for the log pipeline

auth:
  # Publishers (POST /publish) and admin requests send `Authorization: Bearer <key>`.
  publish_keys: [")" +
           publish_key +
           R"("]
  allow_unauthenticated_publish: false
  # Subscribers need a token whose `topics` claim covers the topic (or a namespace that allows
  # anonymous reading, below). Rotation: add a second key, reload, move the issuer, remove the old.
  default_anonymous: none
  namespaces: []             # e.g. [{pattern: "public:*", anonymous: subscribe}]
  jwt:
    keys:
      - {alg: HS256, secret: ")" +
           jwt_secret + R"(", kid: k1}
    require_exp: true
    leeway: 30s

origins:
  # Browser pages allowed to connect (WebSocket, SSE, CORS). Replace with your site's origins.
  allow: ["https://app.example.com"]

limits:
  max_connections: 10000
  max_queued_bytes: 1MiB     # a client whose send queue passes this is disconnected
  connections_per_ip: 1000   # lower it when clients do not share addresses (no NAT, no proxy)
  new_connections_per_ip_per_s: 100
  publishes_per_key_per_s: 10000

history:
  size: 100                  # messages kept per topic for resume
  ttl: 5m

audit:
  sink: stderr               # or a file path; security events as JSON lines
  sample_one_in: 100
  pseudonym_key: ")" +
           pseudonym_key +
           R"("

shutdown:
  drain_timeout: 10s
)";
}

}  // namespace herald::config
