#include "herald/auth/policy.hpp"

#include "herald/wire/topic.hpp"

namespace herald::auth {

access_policy::access_policy(std::vector<namespace_rule> rules, bool default_anonymous_subscribe)
    : rules_(std::move(rules)), default_anonymous_(default_anonymous_subscribe) {}

bool access_policy::anonymous_can_subscribe(std::string_view topic) const noexcept {
    for (const auto& r : rules_)
        if (wire::pattern_match(r.pattern, topic)) return r.anonymous_subscribe;
    return default_anonymous_;
}

bool access_policy::can_subscribe(const token_claims* token,
                                  std::string_view topic) const noexcept {
    if (anonymous_can_subscribe(topic)) return true;
    return token && wire::any_match(token->topics, topic);
}

bool access_policy::can_publish(const token_claims* token, std::string_view topic) const noexcept {
    return token && wire::any_match(token->publish, topic);
}

}  // namespace herald::auth
