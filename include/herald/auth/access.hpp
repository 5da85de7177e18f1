#pragma once
// The vocabulary of authorization: the access class of an endpoint, the credentials a request
// presents, and the decision the router acts on. The decisions are made by auth::context
// (context.hpp), one function per access class; the router (net/endpoints.hpp) calls it for
// every request before any handler runs, so no endpoint decides who may call it on its own.
//
// Who may do what (docs/security.md, "Who may read what"):
//   open     anyone; credentials are not looked at.
//   read     the messages of topics. Per topic: an API key (Authorization header only) reads
//            every topic; a token reads what its `topics` patterns grant plus what anonymous
//            clients may; anonymous clients read what the namespace rules allow. A credential
//            that is presented but invalid is refused (401), even for public topics.
//   publish  an API key; anyone when auth.allow_unauthenticated_publish is set.
//   admin    an API key, always (allow_unauthenticated_publish does not open it).
// With admin.enabled, a valid admin session cookie counts as an API key for read, publish and
// admin (with the CSRF header on unsafe methods).
#include "herald/auth/jwt.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace herald::auth {

enum class access_class : std::uint8_t { open, read, publish, admin };

// "public", "read", "publish", "admin": what --list-endpoints prints and the docs use.
[[nodiscard]] std::string_view to_string(access_class c) noexcept;

// What a request presents, borrowed from it for the length of one decision.
struct credentials {
    std::string_view authorization;  // the Authorization header, "" when absent
    std::string_view cookie_header;  // the Cookie header, "" when absent
    // The query parameters, percent-decoded, in order; the token parameter's name is configured
    // (auth.token_query_param) and looked up by the decision.
    std::span<const std::pair<std::string, std::string>> query;
    // The admin page's session cookie stands for an API key (admin_session.hpp); where
    // `csrf_required` (an unsafe method, or a stream: a WebSocket handshake or an EventSource is a
    // GET a foreign page can start) it counts only with this header's CSRF token.
    std::string_view csrf;  // the X-Herald-CSRF header, "" when absent
    bool csrf_required = false;
};

enum class verdict : std::uint8_t {
    ok,
    unauthorized,  // 401: a credential is missing (publish, admin) or invalid
    forbidden,     // 403: a valid principal that may not read one of the topics
    rate_limited,  // 429: the publish rate of the key (or address) is spent
};

struct decision {
    verdict status = verdict::ok;
    std::string message;             // the error message, when not ok
    bool invalid_token = false;      // 401 for a presented token: error="invalid_token"
    bool anonymous = true;           // no credential was accepted: a 401/403 invites one
    std::int64_t retry_after_s = 0;  // rate_limited
    // read: who reads (null: anonymous). An API-key reader carries claims with `api_key` set.
    std::unique_ptr<token_claims> reader;

    [[nodiscard]] bool ok() const noexcept { return status == verdict::ok; }
};

}  // namespace herald::auth
