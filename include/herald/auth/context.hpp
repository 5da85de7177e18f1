#pragma once
// Everything the sessions need to authenticate and limit clients, built once from the config.
// Shared by all workers: the key sets and policies are immutable after build; the per-address
// limiters are locked, and are touched only when a stream starts or ends, never per message.
#include "herald/auth/access.hpp"
#include "herald/auth/api_keys.hpp"
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
    context(const config::settings& cfg, const config::env_lookup& getenv);

    const config::settings& cfg;
    key_set jwt_keys;
    expectations jwt_expect;
    access_policy policy;
    api_key_set publish_keys;
    origin_allowlist origins;
    trusted_proxies proxies;

    // nullopt: concurrent-stream slot refused. Otherwise the key to release() later.
    [[nodiscard]] bool acquire_stream(const std::string& ip);
    void release_stream(const std::string& ip);
    // New streams per address per second; on refusal `retry_after_s` is set.
    [[nodiscard]] bool allow_new_stream(const std::string& ip, std::int64_t& retry_after_s);
    // Publishes per key per second.
    [[nodiscard]] bool allow_publish(const std::string& key, std::int64_t& retry_after_s);

    // Verifies a token as configured; `now` is wall-clock time.
    [[nodiscard]] result verify_token(std::string_view token) const;

    // The one authorization decision of every endpoint, by its access class (access.hpp). For
    // `read`, `topics` are every topic the request would deliver (valid names); all must be
    // readable. `client` is the client address, the rate-limit key of unauthenticated publishes.
    // Safe from every worker (the publish limiter is locked).
    [[nodiscard]] decision authorize(access_class c, const credentials& cred,
                                     std::span<const std::string> topics, std::string_view client);
    // Whether `reader` (null: anonymous) may read `topic`: the per-topic rule of authorize(read),
    // for a reader identified earlier (a WebSocket subscribe op).
    [[nodiscard]] bool may_read(const token_claims* reader, std::string_view topic) const noexcept;

private:
    [[nodiscard]] decision authorize_read(const credentials& cred,
                                          std::span<const std::string> topics) const;
    // An API key; `publishing` also admits anyone under allow_unauthenticated_publish, and
    // spends the publish rate.
    [[nodiscard]] decision authorize_key(const credentials& cred, bool publishing,
                                         std::string_view client);

    std::unique_ptr<connection_counter> streams_;
    std::unique_ptr<shared_rate_limiter> new_streams_;
    std::unique_ptr<shared_rate_limiter> publishes_;
};

}  // namespace herald::auth
