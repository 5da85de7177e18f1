#pragma once
// `herald token`: a development JWT signed with the configured HS256 key, carrying what herald
// checks (sub, topics, exp, and aud/iss when the config expects them). For development and
// synthetic checks: production tokens come from the application's own issuer.
#include "herald/config/config.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace herald::auth {

struct dev_token_request {
    std::string sub;
    std::vector<std::string> topics;   // patterns the holder may read
    std::vector<std::string> publish;  // patterns the holder may publish on (ws.client_publish)
    std::chrono::seconds ttl{3600};
};

// Signs with the first HS256 key of auth.jwt.keys (its kid, if any, goes into the header).
// Throws config::config_error naming auth.jwt.keys when there is none, or a bad topic pattern.
// `bytes` random bytes (OpenSSL's generator) as base64url: keys and secrets for genconfig.
[[nodiscard]] std::string random_secret(std::size_t bytes);

[[nodiscard]] std::string make_dev_token(const config::settings& cfg, const dev_token_request& r,
                                         std::chrono::system_clock::time_point now);

}  // namespace herald::auth
