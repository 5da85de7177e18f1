#pragma once
// Origin allowlist for WebSocket upgrades and CORS (SSE, long-poll, publish).
//
// Entries: an exact origin ("https://app.example.com", "http://localhost:3000"), a subdomain
// wildcard ("https://*.example.com": any host with at least one more label, at any depth; never
// "https://example.com" itself, "https://evilexample.com" or "https://example.com.evil.net"),
// "*" for any origin, or "null" for the opaque origin browsers send from sandboxes and file://.
// Scheme and host compare case-insensitively; the port is significant, a default port (80 for
// http, 443 for https) being the same as none. A request without an Origin header is not from a
// browser page and is the caller's decision (normally allowed).
//
// Immutable after loading; a const allowlist may be shared by all workers.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::auth {

class origin_allowlist {
public:
    // Returns why an entry is refused ("an origin has no path", ...); nothing is added then.
    [[nodiscard]] std::optional<std::string> add(std::string_view entry);

    [[nodiscard]] bool allows(std::string_view origin) const;
    [[nodiscard]] bool allows_any() const noexcept { return any_; }
    [[nodiscard]] bool empty() const noexcept { return !any_ && !null_ && rules_.empty(); }

    enum class match { none, any, listed };
    // `listed`: an exact or wildcard entry (or "null") matched; `any`: only "*" did.
    [[nodiscard]] match classify(std::string_view origin) const;

private:
    struct rule {
        std::string scheme;  // lower case
        std::string host;    // lower case; for a wildcard the suffix after "*" (".example.com")
        std::string port;    // explicit non-default port or empty
        bool wildcard = false;
    };
    std::vector<rule> rules_;
    bool any_ = false;
    bool null_ = false;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

struct cors_options {
    std::string allow_methods = "GET, POST, OPTIONS";
    std::string allow_headers = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID";
    std::string expose_headers = "Retry-After";  // empty: not sent
    std::chrono::seconds max_age{600};
    // Sent only to origins matched by an explicit entry, never because of "*": with a cookie
    // token, "*" plus credentials would let every site act as the user.
    bool allow_credentials = false;
};

// The CORS response headers for `origin`, or nullopt when it is not allowed (answer 403).
// Always: Access-Control-Allow-Origin echoing the origin, and Vary: Origin. A preflight
// (OPTIONS with Access-Control-Request-Method) adds Allow-Methods, Allow-Headers and Max-Age.
[[nodiscard]] std::optional<header_list> cors_headers(const origin_allowlist& allow,
                                                      std::string_view origin, bool preflight,
                                                      const cors_options& opts = {});

}  // namespace herald::auth
