#pragma once
// Everything the sessions need to authenticate and limit clients, built once from the config.
// Shared by all workers: the key sets and policies are immutable after build; the limiters are
// locked: the per-address ones when a stream starts or ends, the publish rate once per publish
// (HTTP or WebSocket), never per delivered message.
//
// Reload (SIGHUP, POST /admin/reload) builds a new context from the new file and each worker
// switches its pointer to it in a posted handler, so the data path never locks to read it; the
// old one lives until every worker has switched (the posts own it). The limiters carry state
// (streams held per address, token buckets), so a new context takes them over from `previous`.
#include "herald/auth/access.hpp"
#include "herald/auth/api_keys.hpp"
#include "herald/auth/audit.hpp"
#include "herald/auth/client_ip.hpp"
#include "herald/auth/jwt.hpp"
#include "herald/auth/origin.hpp"
#include "herald/auth/policy.hpp"
#include "herald/auth/token_bucket.hpp"
#include "herald/config/config.hpp"

#include <memory>
#include <optional>
#include <string>

namespace herald::auth {

class context {
public:
    // Throws config::config_error naming the key (bad PEM, short secret, bad CIDR...).
    // `audit`: where security events go (taken from `previous` when there is one; null: none).
    context(const config::settings& cfg, const config::env_lookup& getenv,
            const context* previous = nullptr, std::shared_ptr<audit_log> audit = nullptr);

    const config::settings cfg;  // a copy: a reload's context keeps the settings it was built from
    key_set jwt_keys;
    expectations jwt_expect;
    access_policy policy;
    api_key_set publish_keys;
    origin_allowlist origins;
    trusted_proxies proxies;
    // Never null; the same log across reloads (audit.* keys need a restart).
    std::shared_ptr<audit_log> audit;

    // Admission of a stream (WebSocket, SSE, long-poll) from address `ip`, once authorize() said
    // yes and the request is well-formed: limits.new_connections_per_ip_per_s, then
    // limits.connections_per_ip. On `ok` the address holds one concurrent-stream slot until
    // release_stream(ip). Every transport calls this, and nothing else takes a slot.
    enum class admission : std::uint8_t { ok, new_streams_per_ip, streams_per_ip };
    struct admission_result {
        admission status = admission::ok;
        std::int64_t retry_after_s = 0;
        std::string_view message;  // the client's error message, when refused
        [[nodiscard]] bool ok() const noexcept { return status == admission::ok; }
    };
    [[nodiscard]] admission_result admit_stream(const std::string& ip);
    void release_stream(const std::string& ip);
    // Publishes per key per second.
    [[nodiscard]] bool allow_publish(const std::string& key, std::int64_t& retry_after_s);

    // Verifies a token as configured, against the wall clock.
    [[nodiscard]] result verify_token(std::string_view token) const;

    // The one authorization decision of every endpoint, by its access class (access.hpp). For
    // `read`, `topics` are every topic the request would deliver (valid names); all must be
    // readable. `client` is the client address, the rate-limit key of unauthenticated publishes.
    // Safe from every worker (the publish limiter is locked).
    [[nodiscard]] decision authorize(access_class c, const credentials& cred,
                                     std::span<const std::string> topics, std::string_view client);
    // The client address of a request (the rate-limit key, the per-address stream slots, the
    // logs) that came from TCP peer `peer` (`peer_text`: its text): X-Forwarded-For's client when
    // the peer is a trusted proxy (client_ip.hpp), else the peer. `xff`: the request's
    // X-Forwarded-For lines in the order received. Every transport's client address comes from
    // here.
    [[nodiscard]] std::string client_ip(const ip_address& peer, std::string_view peer_text,
                                        std::span<const std::string_view> xff) const;
    // The CORS header lines ("Name: value\r\n"...) every answer to a request from `origin`
    // carries (a preflight's included), or nullopt when the origin is not allowed (answer 403
    // `forbidden`). Every transport's CORS decision comes from here.
    [[nodiscard]] std::optional<std::string> cors(std::string_view origin, bool preflight) const;
    // Whether `reader` (null: anonymous) may read `topic`: the per-topic rule of authorize(read),
    // for a reader identified earlier (a WebSocket subscribe op).
    [[nodiscard]] bool may_read(const token_claims* reader, std::string_view topic) const noexcept;

    // The admin session cookie of a request: absent (or admin.enabled off), valid, invalid or
    // expired, or valid but missing its CSRF token on an unsafe method.
    enum class session_use : std::uint8_t { none, ok, invalid, no_csrf };
    [[nodiscard]] session_use admin_session(const credentials& cred) const;

private:
    [[nodiscard]] decision authorize_read(const credentials& cred,
                                          std::span<const std::string> topics) const;
    // An API key; `publishing` also admits anyone under allow_unauthenticated_publish, and
    // spends the publish rate.
    [[nodiscard]] decision authorize_key(const credentials& cred, bool publishing,
                                         std::string_view client);

    // Shared with the contexts that reloads build from this one (see the header comment).
    std::shared_ptr<connection_counter> streams_;
    std::shared_ptr<shared_rate_limiter> new_streams_;
    std::shared_ptr<shared_rate_limiter> publishes_;
};

}  // namespace herald::auth
