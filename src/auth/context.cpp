#include "herald/auth/context.hpp"

#include "herald/auth/admin_session.hpp"

namespace herald::auth {

std::string_view to_string(access_class c) noexcept {
    switch (c) {
        case access_class::open: return "public";
        case access_class::read: return "read";
        case access_class::publish: return "publish";
        case access_class::admin: return "admin";
    }
    return "?";
}

namespace {
std::vector<namespace_rule> rules_of(const config::settings& cfg) {
    std::vector<namespace_rule> out;
    for (const auto& ns : cfg.auth.namespaces) out.push_back({ns.pattern, ns.anonymous_subscribe});
    return out;
}
}  // namespace

namespace {
std::shared_ptr<audit_log> audit_of(const config::settings& c, const context* previous,
                                    std::shared_ptr<audit_log> given) {
    if (previous) return previous->audit;
    if (given) return given;
    auto off = c;
    off.audit.sink.clear();
    return std::make_shared<audit_log>(off);
}
}  // namespace

context::context(const config::settings& c, const config::env_lookup& getenv,
                 const context* previous, std::shared_ptr<audit_log> audit_sink)
    : cfg(c),
      policy(rules_of(c), c.auth.default_anonymous_subscribe),
      audit(audit_of(c, previous, std::move(audit_sink))) {
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
    // The stream counter of a previous generation is kept whatever the new limit (0: no limit),
    // so that every stream it admitted releases its slot where it took it.
    if (previous && previous->streams_) {
        streams_ = previous->streams_;
        streams_->set_max(c.limits.connections_per_ip > 0 ? c.limits.connections_per_ip
                                                          : static_cast<std::size_t>(-1));
    } else if (c.limits.connections_per_ip > 0) {
        streams_ = std::make_shared<connection_counter>(c.limits.connections_per_ip);
    }
    // Token buckets are kept while their rate is unchanged (a changed rate starts full ones).
    const auto bucket = [](double rate, const std::shared_ptr<shared_rate_limiter>* before,
                           double rate_before) -> std::shared_ptr<shared_rate_limiter> {
        if (rate <= 0) return nullptr;
        if (before && *before && rate == rate_before) return *before;
        return std::make_shared<shared_rate_limiter>(
            rate_limiter::options{rate, 2 * rate, 100'000});
    };
    new_streams_ =
        bucket(c.limits.new_connections_per_ip_per_s, previous ? &previous->new_streams_ : nullptr,
               previous ? previous->cfg.limits.new_connections_per_ip_per_s : 0);
    publishes_ =
        bucket(c.limits.publishes_per_key_per_s, previous ? &previous->publishes_ : nullptr,
               previous ? previous->cfg.limits.publishes_per_key_per_s : 0);
}

context::admission_result context::admit_stream(const std::string& ip) {
    if (new_streams_) {
        const auto now = rate_clock::now();
        if (!new_streams_->try_take(ip, now))
            return {admission::new_streams_per_ip,
                    retry_after_seconds(new_streams_->retry_after(ip, now)),
                    "too many new connections from this address"};
    }
    if (streams_ && !streams_->try_acquire(ip))
        return {admission::streams_per_ip, 1, "too many connections from this address"};
    return {};
}

void context::release_stream(const std::string& ip) {
    if (streams_) streams_->release(ip);
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

namespace {
decision refused(verdict v, std::string message) {
    decision d;
    d.status = v;
    d.message = std::move(message);
    return d;
}
}  // namespace

context::session_use context::admin_session(const credentials& cred) const {
    if (!cfg.admin.enabled || cred.cookie_header.empty()) return session_use::none;
    const auto c = cookie_value(cred.cookie_header, k_admin_cookie);
    if (!c) return session_use::none;
    if (!valid_admin_session(*c, std::chrono::system_clock::now())) return session_use::invalid;
    if (cred.csrf_required && (cred.csrf.empty() || cred.csrf != admin_csrf_token(*c)))
        return session_use::no_csrf;
    return session_use::ok;
}

namespace {
decision refused_session(context::session_use u) {
    return refused(u == context::session_use::no_csrf ? verdict::forbidden : verdict::unauthorized,
                   u == context::session_use::no_csrf
                       ? "a request on the admin session needs its X-Herald-CSRF header"
                       : "the admin session is invalid or expired; log in again at /admin");
}
}  // namespace

decision context::authorize(access_class c, const credentials& cred,
                            std::span<const std::string> topics, std::string_view client) {
    switch (c) {
        case access_class::open: return {};
        case access_class::read: return authorize_read(cred, topics);
        case access_class::publish: return authorize_key(cred, true, client);
        case access_class::admin: return authorize_key(cred, false, client);
    }
    return refused(verdict::forbidden, "no access class");  // fail closed
}

bool context::may_read(const token_claims* reader, std::string_view topic) const noexcept {
    if (reader && reader->api_key) return true;
    return policy.can_subscribe(reader, topic);
}

decision context::authorize_read(const credentials& cred,
                                 std::span<const std::string> topics) const {
    decision d;
    // The token: Authorization header, else the query parameter, else the cookie. An API key is
    // taken from the header only, so that publishers' keys never travel in URLs (and logs).
    std::optional<std::string_view> token;
    bool from_header = false;
    if (auto b = parse_bearer(cred.authorization)) {
        if (publish_keys.match(*b)) {
            d.anonymous = false;
            d.reader = std::make_unique<token_claims>();
            d.reader->api_key = true;
            return d;  // every topic
        }
        token = *b;
        from_header = true;
    } else if (auto s = admin_session(cred); s != session_use::none) {
        if (s != session_use::ok) return refused_session(s);
        d.anonymous = false;
        d.reader = std::make_unique<token_claims>();
        d.reader->api_key = true;
        return d;
    } else {
        const auto& param = cfg.auth.token_query_param;
        for (const auto& [k, v] : cred.query)
            if (!param.empty() && k == param) {
                if (!v.empty()) token = v;
                break;
            }
        if (!token && !cfg.auth.token_cookie.empty())
            token = cookie_value(cred.cookie_header, cfg.auth.token_cookie);
    }
    if (token) {
        auto r = verify_token(*token);
        if (!r.ok()) {
            auto why = std::string(to_string(r.status));
            d = refused(verdict::unauthorized, from_header && r.status == jwt_status::malformed
                                                   ? "invalid API key or token: " + why
                                                   : "invalid token: " + why);
            d.invalid_token = true;
            return d;
        }
        d.anonymous = false;
        d.reader = std::make_unique<token_claims>(std::move(r.claims));
    }
    for (const auto& t : topics) {
        if (!may_read(d.reader.get(), t)) {
            auto reader = std::move(d.reader);
            d = refused(verdict::forbidden, "not allowed to read '" + t + "'");
            d.anonymous = !reader;
            return d;
        }
    }
    return d;
}

decision context::authorize_key(const credentials& cred, bool publishing, std::string_view client) {
    std::string limit_key;
    if (auto bearer = parse_bearer(cred.authorization)) {
        auto idx = publish_keys.match(*bearer);
        if (!idx) return refused(verdict::unauthorized, "invalid API key");
        limit_key = "key#" + std::to_string(*idx);
    } else if (auto s = admin_session(cred); s != session_use::none) {
        if (s != session_use::ok) return refused_session(s);
        limit_key = "key#session";
    } else if (publishing && cfg.auth.allow_unauthenticated_publish) {
        limit_key = "ip:" + std::string(client);
    } else {
        return refused(verdict::unauthorized,
                       publishing ? "an API key is required: Authorization: Bearer <key>"
                                  : "admin endpoints require an API key: Authorization: Bearer "
                                    "<key> (allow_unauthenticated_publish does not open them)");
    }
    decision d;
    d.anonymous = !limit_key.starts_with("key#");
    // Only publishes are rate limited; admin requests are rare and always keyed.
    std::int64_t retry = 1;
    if (publishing && !allow_publish(limit_key, retry)) {
        d = refused(verdict::rate_limited, "too many publishes; slow down");
        d.retry_after_s = retry;
    }
    return d;
}

std::string context::client_ip(const ip_address& peer, std::string_view peer_text,
                               std::span<const std::string_view> xff) const {
    if (proxies.empty() || !proxies.contains(peer)) return std::string(peer_text);
    // Several X-Forwarded-For lines form one list, in order.
    std::string joined;
    for (auto line : xff) {
        if (!joined.empty()) joined += ',';
        joined += line;
    }
    return client_address(peer, joined, proxies).to_string();
}

std::optional<std::string> context::cors(std::string_view origin, bool preflight) const {
    auto h = cors_headers(origins, origin, preflight);
    if (!h) return std::nullopt;
    std::string lines;
    for (const auto& [k, v] : *h) lines += k + ": " + v + "\r\n";
    return lines;
}

}  // namespace herald::auth
