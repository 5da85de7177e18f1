#pragma once
// Who may subscribe to or publish on a topic, from the namespace rules and a verified token.
//
// Immutable after construction; a const policy may be shared by all workers.
#include "herald/auth/jwt.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace herald::auth {

struct namespace_rule {
    std::string pattern;               // hub pattern ("ticker:*", "private:*", "*")
    bool anonymous_subscribe = false;  // config `anonymous: subscribe` (true) or `none` (false)
};

class access_policy {
public:
    // The first rule whose pattern matches a topic decides anonymous access to it; a topic no rule
    // matches uses `default_anonymous_subscribe` (true when no JWT keys are configured at all, so
    // a server without auth keeps working; false otherwise is the safe default).
    access_policy(std::vector<namespace_rule> rules, bool default_anonymous_subscribe);

    [[nodiscard]] bool anonymous_can_subscribe(std::string_view topic) const noexcept;
    // `token` is null for an unauthenticated client. A token holder may do what anonymous
    // clients may, plus whatever its `topics` patterns grant.
    [[nodiscard]] bool can_subscribe(const token_claims* token,
                                     std::string_view topic) const noexcept;
    // Only a token's `publish` patterns grant client publishing (the server's ws.client_publish
    // list is a separate, additional gate the caller applies).
    [[nodiscard]] bool can_publish(const token_claims* token,
                                   std::string_view topic) const noexcept;

private:
    std::vector<namespace_rule> rules_;
    bool default_anonymous_;
};

}  // namespace herald::auth
