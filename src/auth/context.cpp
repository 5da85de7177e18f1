#include "herald/auth/context.hpp"

namespace herald::auth {

namespace {
std::vector<namespace_rule> rules_of(const config::settings& cfg) {
    std::vector<namespace_rule> out;
    for (const auto& ns : cfg.auth.namespaces) out.push_back({ns.pattern, ns.anonymous_subscribe});
    return out;
}
}  // namespace

context::context(const config::settings& c, const config::env_lookup& getenv)
    : cfg(c), policy(rules_of(c), c.auth.default_anonymous_subscribe) {
    for (std::size_t i = 0; i < c.auth.jwt.keys.size(); ++i) {
        const auto& k = c.auth.jwt.keys[i];
        key_spec spec{k.alg, k.secret, k.public_key, k.public_key_file, k.kid};
        if (auto err = jwt_keys.add(spec))
            throw config::config_error("auth.jwt.keys[" + std::to_string(i) + "]." + err->field,
                                       err->message);
    }
    jwt_expect.audience = c.auth.jwt.audience;
    jwt_expect.issuer = c.auth.jwt.issuer;
    jwt_expect.leeway = std::chrono::duration_cast<std::chrono::seconds>(c.auth.jwt.leeway);
    jwt_expect.require_exp = c.auth.jwt.require_exp;
    for (std::size_t i = 0; i < c.auth.publish_keys.size(); ++i)
        if (auto err = publish_keys.add(c.auth.publish_keys[i]))
            throw config::config_error("auth.publish_keys[" + std::to_string(i) + "]", *err);
    if (!c.auth.publish_keys_env.empty())
        if (auto err = publish_keys.add_from_env(c.auth.publish_keys_env, getenv))
            throw config::config_error("auth.publish_keys_env", *err);
    for (std::size_t i = 0; i < c.origins.allow.size(); ++i)
        if (auto err = origins.add(c.origins.allow[i]))
            throw config::config_error("origins.allow[" + std::to_string(i) + "]", *err);
    for (std::size_t i = 0; i < c.trusted_proxies.size(); ++i)
        if (auto err = proxies.add(c.trusted_proxies[i]))
            throw config::config_error("trusted_proxies[" + std::to_string(i) + "]", *err);
    if (c.limits.connections_per_ip > 0)
        streams_ = std::make_unique<connection_counter>(c.limits.connections_per_ip);
    if (c.limits.new_connections_per_ip_per_s > 0)
        new_streams_ = std::make_unique<shared_rate_limiter>(
            rate_limiter::options{c.limits.new_connections_per_ip_per_s,
                                  2 * c.limits.new_connections_per_ip_per_s, 100'000});
    if (c.limits.publishes_per_key_per_s > 0)
        publishes_ = std::make_unique<shared_rate_limiter>(rate_limiter::options{
            c.limits.publishes_per_key_per_s, 2 * c.limits.publishes_per_key_per_s, 100'000});
}

bool context::acquire_stream(const std::string& ip) {
    return !streams_ || streams_->try_acquire(ip);
}

void context::release_stream(const std::string& ip) {
    if (streams_) streams_->release(ip);
}

bool context::allow_new_stream(const std::string& ip, std::int64_t& retry_after_s) {
    if (!new_streams_) return true;
    const auto now = rate_clock::now();
    if (new_streams_->try_take(ip, now)) return true;
    retry_after_s = retry_after_seconds(new_streams_->retry_after(ip, now));
    return false;
}

bool context::allow_publish(const std::string& key, std::int64_t& retry_after_s) {
    if (!publishes_) return true;
    const auto now = rate_clock::now();
    if (publishes_->try_take(key, now)) return true;
    retry_after_s = retry_after_seconds(publishes_->retry_after(key, now));
    return false;
}

result context::verify_token(std::string_view token) const {
    return verify(token, jwt_keys, std::chrono::system_clock::now(), jwt_expect);
}

}  // namespace herald::auth
