#include "herald/config/config.hpp"

#include "herald/hub/topic.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace herald::config {
namespace {

// A YAML scalar read as one of the types below; every error names the key.
std::string scalar(const YAML::Node& n, const std::string& key) {
    if (!n.IsScalar()) throw config_error(key, "expected a scalar value");
    return n.Scalar();
}

bool is_quoted_string(const YAML::Node& n) {
    return n.Tag() == "!";
}

long long integer(const YAML::Node& n, const std::string& key, long long lo, long long hi) {
    auto s = scalar(n, key);
    if (is_quoted_string(n)) throw config_error(key, "expected an integer, got a string");
    long long v = 0;
    std::size_t pos = 0;
    try {
        v = std::stoll(s, &pos, 10);
    } catch (const std::exception&) {
        throw config_error(key, "expected an integer, got '" + s + "'");
    }
    if (pos != s.size()) throw config_error(key, "expected an integer, got '" + s + "'");
    if (v < lo || v > hi)
        throw config_error(key, "value " + s + " is out of range [" + std::to_string(lo) + ", " +
                                    std::to_string(hi) + "]");
    return v;
}

milliseconds duration(const YAML::Node& n, const std::string& key, milliseconds lo,
                      milliseconds hi) {
    auto s = scalar(n, key);
    auto d = parse_duration(s);
    if (!d)
        throw config_error(key,
                           "expected a duration such as 250ms, 15s, 5m or 1h, got '" + s + "'");
    if (*d < lo || *d > hi)
        throw config_error(key, "value " + s + " is out of range [" + std::to_string(lo.count()) +
                                    "ms, " + std::to_string(hi.count()) + "ms]");
    return *d;
}

std::size_t size(const YAML::Node& n, const std::string& key, std::size_t lo, std::size_t hi) {
    auto s = scalar(n, key);
    auto v = parse_size(s);
    if (!v) throw config_error(key, "expected a size such as 512, 64KiB or 1MiB, got '" + s + "'");
    if (*v < lo || *v > hi)
        throw config_error(key, "value " + s + " is out of range [" + std::to_string(lo) + ", " +
                                    std::to_string(hi) + "] bytes");
    return *v;
}

bool boolean(const YAML::Node& n, const std::string& key) {
    auto s = scalar(n, key);
    if (s == "true") return true;
    if (s == "false") return false;
    throw config_error(key, "expected true or false, got '" + s + "'");
}

std::vector<std::string> strings(const YAML::Node& n, const std::string& key) {
    if (n.IsNull()) return {};
    if (!n.IsSequence()) throw config_error(key, "expected a list of strings");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i)
        out.push_back(scalar(n[i], key + "[" + std::to_string(i) + "]"));
    return out;
}

double rate(const YAML::Node& n, const std::string& key) {
    auto s = scalar(n, key);
    try {
        std::size_t pos = 0;
        double v = std::stod(s, &pos);
        if (pos == s.size() && v >= 0 && v <= 1e9) return v;
    } catch (const std::exception&) {
    }
    throw config_error(key, "expected a rate per second between 0 and 1e9, got '" + s + "'");
}

std::vector<std::string> patterns(const YAML::Node& n, const std::string& key) {
    if (n.IsNull()) return {};
    if (!n.IsSequence()) throw config_error(key, "expected a list of topic patterns");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) {
        auto k = key + "[" + std::to_string(i) + "]";
        auto p = scalar(n[i], k);
        if (!hub::is_valid_pattern(p)) throw config_error(k, "invalid topic pattern '" + p + "'");
        out.push_back(std::move(p));
    }
    return out;
}

constexpr std::size_t k_unset_size = static_cast<std::size_t>(-1);
constexpr milliseconds k_unset_ttl{-1};

using handler = std::function<void(settings&, const YAML::Node&, const std::string&)>;

constexpr milliseconds k_ms(long long v) {
    return milliseconds(v);
}
constexpr auto k_day = milliseconds(24ll * 3600 * 1000);
constexpr std::size_t k_gib = 1ull << 30;

const std::map<std::string, handler>& schema() {
    static const std::map<std::string, handler> s = {
        {"listen", [](settings& c, const YAML::Node& n,
                      const std::string& k) { set_listen(c, scalar(n, k), k); }},
        {"workers", [](settings& c, const YAML::Node& n,
                       const std::string& k) { set_workers(c, integer(n, k, 0, 64), k); }},
        {"broker",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             auto v = scalar(n, k);
             if (v != "memory" && v != "redis")
                 throw config_error(k, "unknown broker '" + v + "' (expected memory or redis)");
             c.broker = v;
         }},
        {"log.level", [](settings& c, const YAML::Node& n,
                         const std::string& k) { set_log_level(c, scalar(n, k), k); }},
        {"log.format", [](settings& c, const YAML::Node& n,
                          const std::string& k) { set_log_format(c, scalar(n, k), k); }},
        {"http.header_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.header_timeout = duration(n, k, k_ms(100), k_day);
         }},
        {"http.idle_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.idle_timeout = duration(n, k, k_ms(100), k_day);
         }},
        {"http.max_header_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.max_header_bytes = size(n, k, 1024, 1 << 20);
         }},
        {"limits.max_connections",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_connections = integer(n, k, 1, 10'000'000);
         }},
        {"limits.max_message_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_message_bytes = size(n, k, 1, 64 << 20);
         }},
        {"limits.max_client_message_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_client_message_bytes = size(n, k, 125, 64 << 20);
         }},
        {"limits.max_queued_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_queued_bytes = size(n, k, 1024, k_gib);
         }},
        {"limits.max_topics_per_connection",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_topics_per_connection = integer(n, k, 1, 1024);
         }},
        {"limits.connections_per_ip", [](settings& c, const YAML::Node& n, const std::string& k) { c.limits.connections_per_ip = integer(n, k, 0, 10'000'000); }},
        {"limits.new_connections_per_ip_per_s", [](settings& c, const YAML::Node& n, const std::string& k) { c.limits.new_connections_per_ip_per_s = rate(n, k); }},
        {"limits.ws_messages_per_s", [](settings& c, const YAML::Node& n, const std::string& k) { c.limits.ws_messages_per_s = rate(n, k); }},
        {"limits.publishes_per_key_per_s", [](settings& c, const YAML::Node& n, const std::string& k) { c.limits.publishes_per_key_per_s = rate(n, k); }},
        {"auth.jwt.keys",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.auth.jwt.keys.clear();
             if (n.IsNull()) return;
             if (!n.IsSequence()) throw config_error(k, "expected a list of {alg, secret | public_key | public_key_file, kid}");
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 if (!n[i].IsMap()) throw config_error(ik, "expected a map {alg, secret | public_key | public_key_file, kid}");
                 settings::jwt_key key;
                 for (const auto& kv : n[i]) {
                     auto name = kv.first.Scalar();
                     auto fk = ik + "." + name;
                     if (name == "alg") key.alg = scalar(kv.second, fk);
                     else if (name == "secret") key.secret = scalar(kv.second, fk);
                     else if (name == "public_key") key.public_key = scalar(kv.second, fk);
                     else if (name == "public_key_file") key.public_key_file = scalar(kv.second, fk);
                     else if (name == "kid") key.kid = scalar(kv.second, fk);
                     else throw config_error(fk, "unknown key");
                 }
                 if (key.alg.empty()) throw config_error(ik + ".alg", "missing (HS256, RS256 or ES256)");
                 c.auth.jwt.keys.push_back(std::move(key));
             }
         }},
        {"auth.jwt.audience", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.jwt.audience = scalar(n, k); }},
        {"auth.jwt.issuer", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.jwt.issuer = scalar(n, k); }},
        {"auth.jwt.leeway", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.jwt.leeway = duration(n, k, k_ms(0), k_day); }},
        {"auth.jwt.require_exp", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.jwt.require_exp = boolean(n, k); }},
        {"auth.token_query_param", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.token_query_param = scalar(n, k); }},
        {"auth.token_cookie", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.token_cookie = scalar(n, k); }},
        {"auth.default_anonymous",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             auto v = scalar(n, k);
             if (v != "subscribe" && v != "none") throw config_error(k, "expected subscribe or none, got '" + v + "'");
             c.auth.default_anonymous_subscribe = v == "subscribe";
         }},
        {"auth.namespaces",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.auth.namespaces.clear();
             if (n.IsNull()) return;
             if (!n.IsSequence()) throw config_error(k, "expected a list of {pattern, anonymous}");
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 if (!n[i].IsMap()) throw config_error(ik, "expected a map {pattern, anonymous}");
                 settings::auth_namespace ns;
                 bool has_pattern = false, has_anon = false;
                 for (const auto& kv : n[i]) {
                     auto name = kv.first.Scalar();
                     auto fk = ik + "." + name;
                     if (name == "pattern") {
                         ns.pattern = scalar(kv.second, fk);
                         if (!hub::is_valid_pattern(ns.pattern)) throw config_error(fk, "invalid topic pattern '" + ns.pattern + "'");
                         has_pattern = true;
                     } else if (name == "anonymous") {
                         auto v = scalar(kv.second, fk);
                         if (v != "subscribe" && v != "none") throw config_error(fk, "expected subscribe or none, got '" + v + "'");
                         ns.anonymous_subscribe = v == "subscribe";
                         has_anon = true;
                     } else {
                         throw config_error(fk, "unknown key");
                     }
                 }
                 if (!has_pattern) throw config_error(ik + ".pattern", "missing");
                 if (!has_anon) throw config_error(ik + ".anonymous", "missing (subscribe or none)");
                 c.auth.namespaces.push_back(std::move(ns));
             }
         }},
        {"auth.publish_keys", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.publish_keys = strings(n, k); }},
        {"auth.publish_keys_env", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.publish_keys_env = scalar(n, k); }},
        {"auth.allow_unauthenticated_publish", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.allow_unauthenticated_publish = boolean(n, k); }},
        {"origins.allow", [](settings& c, const YAML::Node& n, const std::string& k) { c.origins.allow = strings(n, k); }},
        {"quotas",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.quotas.clear();
             if (n.IsNull()) return;
             if (!n.IsSequence()) throw config_error(k, "expected a list of {pattern, max_topics, max_subscribers_per_topic}");
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 if (!n[i].IsMap()) throw config_error(ik, "expected a map {pattern, max_topics, max_subscribers_per_topic}");
                 settings::quota q;
                 bool has_pattern = false;
                 for (const auto& kv : n[i]) {
                     auto name = kv.first.Scalar();
                     auto fk = ik + "." + name;
                     if (name == "pattern") {
                         q.pattern = scalar(kv.second, fk);
                         if (!hub::is_valid_pattern(q.pattern)) throw config_error(fk, "invalid topic pattern '" + q.pattern + "'");
                         has_pattern = true;
                     } else if (name == "max_topics") {
                         q.max_topics = integer(kv.second, fk, 0, 100'000'000);
                     } else if (name == "max_subscribers_per_topic") {
                         q.max_subscribers_per_topic = integer(kv.second, fk, 0, 100'000'000);
                     } else {
                         throw config_error(fk, "unknown key");
                     }
                 }
                 if (!has_pattern) throw config_error(ik + ".pattern", "missing");
                 c.quotas.push_back(std::move(q));
             }
         }},
        {"trusted_proxies", [](settings& c, const YAML::Node& n, const std::string& k) { c.trusted_proxies = strings(n, k); }},
        {"ws.ping_interval",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.ws.ping_interval = duration(n, k, k_ms(100), k_day);
         }},
        {"ws.pong_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.ws.pong_timeout = duration(n, k, k_ms(100), k_day);
         }},
        {"ws.client_publish", [](settings& c, const YAML::Node& n,
                                 const std::string& k) { c.ws.client_publish = patterns(n, k); }},
        {"sse.heartbeat",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.sse.heartbeat = duration(n, k, k_ms(100), k_day);
         }},
        {"sse.retry", [](settings& c, const YAML::Node& n,
                         const std::string& k) { c.sse.retry = duration(n, k, k_ms(0), k_day); }},
        {"poll.timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.poll.timeout = duration(n, k, k_ms(100), k_ms(3600'000));
         }},
        {"history.size",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.size = integer(n, k, 0, 1'000'000);
         }},
        {"history.ttl",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.ttl = duration(n, k, k_ms(1000), 30 * k_day);
         }},
        {"history.max_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.max_bytes = size(n, k, 0, 64 * k_gib);
         }},
        {"history.max_recovery",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.max_recovery = integer(n, k, 0, 1'000'000);
         }},
        {"history.namespaces",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.namespaces.clear();
             if (n.IsNull()) return;
             if (!n.IsSequence()) throw config_error(k, "expected a list of {pattern, size, ttl}");
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 const auto& e = n[i];
                 if (!e.IsMap()) throw config_error(ik, "expected a map {pattern, size, ttl}");
                 // Unset size/ttl take history.size/ttl after the whole file is read, so the
                 // order of keys does not matter (see resolve_defaults).
                 history_rule r{"", k_unset_size, k_unset_ttl};
                 bool has_pattern = false;
                 for (const auto& kv : e) {
                     auto name = kv.first.Scalar();
                     auto fk = ik + "." + name;
                     if (name == "pattern") {
                         r.pattern = scalar(kv.second, fk);
                         if (!hub::is_valid_pattern(r.pattern))
                             throw config_error(fk, "invalid topic pattern '" + r.pattern + "'");
                         has_pattern = true;
                     } else if (name == "size") {
                         r.size = integer(kv.second, fk, 0, 1'000'000);
                     } else if (name == "ttl") {
                         r.ttl = duration(kv.second, fk, k_ms(1000), 30 * k_day);
                     } else {
                         throw config_error(fk, "unknown key");
                     }
                 }
                 if (!has_pattern) throw config_error(ik + ".pattern", "missing");
                 c.history.namespaces.push_back(std::move(r));
             }
         }},
        {"publish.idempotency_window",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.publish.idempotency_window = duration(n, k, k_ms(0), k_day);
         }},
        {"redis.shards",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             if (!n.IsSequence() || n.size() == 0)
                 throw config_error(k, "expected a non-empty list of host:port");
             std::vector<std::string> out;
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 auto v = scalar(n[i], ik);
                 settings probe;
                 set_listen(probe, v, ik);  // same host:port syntax as listen
                 if (probe.listen_port == 0) throw config_error(ik, "port 0 is not a server");
                 for (const auto& seen : out)
                     if (seen == v) throw config_error(ik, "shard '" + v + "' is listed twice");
                 out.push_back(std::move(v));
             }
             c.redis.shards = std::move(out);
         }},
        {"redis.key_prefix",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             auto v = scalar(n, k);
             if (v.size() > 64) throw config_error(k, "at most 64 bytes");
             for (char ch : v)
                 if (static_cast<unsigned char>(ch) <= ' ' || ch == '{' || ch == '}' ||
                     static_cast<unsigned char>(ch) >= 0x7f)
                     throw config_error(k, "printable ASCII without spaces or braces expected");
             c.redis.key_prefix = std::move(v);
         }},
        {"redis.connect_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.connect_timeout = duration(n, k, k_ms(10), k_ms(600'000));
         }},
        {"redis.command_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.command_timeout = duration(n, k, k_ms(50), k_ms(600'000));
         }},
        {"redis.ping_interval",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.ping_interval = duration(n, k, k_ms(100), k_ms(600'000));
         }},
        {"redis.reconnect_max_backoff",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.reconnect_max_backoff = duration(n, k, k_ms(100), k_ms(600'000));
         }},
        {"tls.cert", [](settings& c, const YAML::Node& n, const std::string& k) { c.tls.cert = scalar(n, k); }},
        {"tls.key", [](settings& c, const YAML::Node& n, const std::string& k) { c.tls.key = scalar(n, k); }},
        {"tls.min_version",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             auto v = scalar(n, k);
             if (v != "1.2" && v != "1.3")
                 throw config_error(k, "expected \"1.2\" or \"1.3\", got '" + v + "'");
             c.tls.min_version = v;
         }},
        {"shutdown.drain_timeout",
         [](settings& c, const YAML::Node& n,
            const std::string&
                k) { c.shutdown.drain_timeout = duration(n, k, k_ms(0), k_ms(3600'000)); }},
    };
    return s;
}

void resolve_defaults(settings& s) {
    if (s.tls.cert.empty() != s.tls.key.empty())
        throw config_error(s.tls.cert.empty() ? "tls.cert" : "tls.key",
                           "tls.cert and tls.key go together: set both (TLS) or neither");
    for (auto& r : s.history.namespaces) {
        if (r.size == k_unset_size) r.size = s.history.size;
        if (r.ttl == k_unset_ttl) r.ttl = s.history.ttl;
    }
}

bool is_section(const std::string& prefix) {
    for (const auto& [k, _] : schema())
        if (k.size() > prefix.size() && k.compare(0, prefix.size(), prefix) == 0 &&
            k[prefix.size()] == '.')
            return true;
    return false;
}

void walk(settings& s, const YAML::Node& map, const std::string& prefix) {
    for (const auto& kv : map) {
        if (!kv.first.IsScalar()) throw config_error(prefix, "keys must be strings");
        std::string key = prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar();
        auto it = schema().find(key);
        if (it != schema().end()) {
            it->second(s, kv.second, key);
        } else if (is_section(key)) {
            if (kv.second.IsNull()) continue;
            if (!kv.second.IsMap()) throw config_error(key, "expected a section (a map of keys)");
            walk(s, kv.second, key);
        } else {
            throw config_error(key, "unknown key");
        }
    }
}

}  // namespace

unsigned settings::effective_workers() const {
    if (workers > 0) return workers;
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : std::min(n, 64u);
}

void set_listen(settings& s, std::string_view v, const std::string& key) {
    auto colon = v.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        throw config_error(key, "expected host:port, got '" + std::string(v) + "'");
    auto host = v.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    auto port = v.substr(colon + 1);
    long p = -1;
    try {
        std::size_t pos = 0;
        p = std::stol(std::string(port), &pos);
        if (pos != port.size()) p = -1;
    } catch (const std::exception&) {
    }
    if (p < 0 || p > 65535) throw config_error(key, "invalid port in '" + std::string(v) + "'");
    s.listen_host = std::string(host);
    s.listen_port = static_cast<std::uint16_t>(p);
}

void set_workers(settings& s, long long v, const std::string& key) {
    if (v < 0 || v > 64)
        throw config_error(key, "value " + std::to_string(v) + " is out of range [0, 64]");
    s.workers = static_cast<unsigned>(v);
}

void set_log_level(settings& s, std::string_view v, const std::string& key) {
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    for (auto* l : levels)
        if (v == l) {
            s.log.level = std::string(v);
            return;
        }
    throw config_error(key,
                       "expected one of trace, debug, info, warn, error, critical, off; got '" +
                           std::string(v) + "'");
}

void set_log_format(settings& s, std::string_view v, const std::string& key) {
    if (v != "text" && v != "json")
        throw config_error(key, "expected text or json, got '" + std::string(v) + "'");
    s.log.format = std::string(v);
}

settings parse_yaml(const std::string& text) {
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        throw config_error("", std::string("invalid YAML: ") + e.what());
    }
    settings s;
    if (root.IsNull()) return s;
    if (!root.IsMap()) throw config_error("", "the configuration must be a YAML map");
    walk(s, root, "");
    resolve_defaults(s);
    return s;
}

settings load_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw config_error("", "cannot read config file '" + path + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_yaml(ss.str());
}

void apply_env(settings& s, const env_lookup& getenv) {
    if (auto v = getenv("HERALD_LISTEN")) set_listen(s, *v, "HERALD_LISTEN");
    if (auto v = getenv("HERALD_WORKERS")) {
        try {
            std::size_t pos = 0;
            long long n = std::stoll(*v, &pos);
            if (pos != v->size()) throw std::invalid_argument("trailing");
            set_workers(s, n, "HERALD_WORKERS");
        } catch (const std::logic_error&) {
            throw config_error("HERALD_WORKERS", "expected an integer, got '" + *v + "'");
        }
    }
    if (auto v = getenv("HERALD_LOG_LEVEL")) set_log_level(s, *v, "HERALD_LOG_LEVEL");
    if (auto v = getenv("HERALD_LOG_FORMAT")) set_log_format(s, *v, "HERALD_LOG_FORMAT");
}

}  // namespace herald::config
