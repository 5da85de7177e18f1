// The configuration schema, in one file on purpose (it is over 450 lines): every key appears in
// three tables that must agree (numeric_bounds: its range; schema: its parser; describe: its
// default for --print-defaults and the docs), so adding or changing a key is one edit here, and
// Describe.ListsEveryKeyOfTheSchemaOnce checks the tables against each other.
#include "herald/config/config.hpp"

#include "herald/common/text.hpp"

#include "herald/wire/topic.hpp"

#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <cstdlib>
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

// A numeric key's accepted range, in the unit its values are written in: milliseconds for
// durations, bytes for sizes. The parser enforces it; --print-defaults and the docs show it.
enum class unit : std::uint8_t { count, duration, bytes, rate };
struct bounds {
    unit u;
    long long lo;
    long long hi;
};

constexpr long long k_day_ms = 24ll * 3600 * 1000;
constexpr long long k_gib = 1ll << 30;

// Every numeric key's range; list entries are named with "[]" ("history.namespaces[].ttl").
const std::map<std::string, bounds, std::less<>>& numeric_bounds() {
    static const std::map<std::string, bounds, std::less<>> b = {
        {"workers", {unit::count, 0, 64}},
        {"log.rejection_interval", {unit::duration, 1000, 3'600'000}},
        {"log.trace_sample", {unit::count, 0, 1'000'000}},
        {"http.header_timeout", {unit::duration, 100, k_day_ms}},
        {"http.idle_timeout", {unit::duration, 100, k_day_ms}},
        {"http.max_header_bytes", {unit::bytes, 1024, 1 << 20}},
        {"limits.max_connections", {unit::count, 1, 10'000'000}},
        {"limits.max_message_bytes", {unit::bytes, 1, 64 << 20}},
        {"limits.max_client_message_bytes", {unit::bytes, 125, 64 << 20}},
        {"limits.max_queued_bytes", {unit::bytes, 1024, k_gib}},
        {"limits.max_topics_per_connection", {unit::count, 1, 1024}},
        {"limits.connections_per_ip", {unit::count, 0, 10'000'000}},
        {"limits.new_connections_per_ip_per_s", {unit::rate, 0, 1'000'000'000}},
        {"limits.ws_messages_per_s", {unit::rate, 0, 1'000'000'000}},
        {"limits.publishes_per_key_per_s", {unit::rate, 0, 1'000'000'000}},
        {"auth.jwt.leeway", {unit::duration, 0, k_day_ms}},
        {"quotas[].max_topics", {unit::count, 0, 100'000'000}},
        {"quotas[].max_subscribers_per_topic", {unit::count, 0, 100'000'000}},
        {"ws.ping_interval", {unit::duration, 100, k_day_ms}},
        {"ws.pong_timeout", {unit::duration, 100, k_day_ms}},
        {"ws.ping_interval_min", {unit::duration, 100, k_day_ms}},
        {"ws.ping_interval_max", {unit::duration, 100, k_day_ms}},
        {"sse.heartbeat_min", {unit::duration, 100, k_day_ms}},
        {"sse.heartbeat_max", {unit::duration, 100, k_day_ms}},
        {"compression.min_bytes", {unit::bytes, 0, 64 << 20}},
        {"delivery.namespaces[].keep", {unit::count, 1, 10'000}},
        {"delivery.namespaces[].delivery_interval", {unit::duration, 0, 10'000}},
        {"compression.level", {unit::count, 1, 9}},
        {"sse.heartbeat", {unit::duration, 100, k_day_ms}},
        {"sse.retry", {unit::duration, 0, k_day_ms}},
        {"poll.timeout", {unit::duration, 100, 3'600'000}},
        {"history.size", {unit::count, 0, 1'000'000}},
        {"history.ttl", {unit::duration, 1000, 30 * k_day_ms}},
        {"history.max_bytes", {unit::bytes, 0, 64 * k_gib}},
        {"history.max_recovery", {unit::count, 0, 1'000'000}},
        {"history.namespaces[].size", {unit::count, 0, 1'000'000}},
        {"history.namespaces[].ttl", {unit::duration, 1000, 30 * k_day_ms}},
        {"publish.idempotency_window", {unit::duration, 0, k_day_ms}},
        {"presence.ttl", {unit::duration, 3000, 3'600'000}},
        {"presence.max_clients", {unit::count, 0, 1'000'000}},
        {"presence.max_info_bytes", {unit::bytes, 0, 8 * 1024}},
        {"redis.connect_timeout", {unit::duration, 10, 600'000}},
        {"redis.command_timeout", {unit::duration, 50, 600'000}},
        {"redis.ping_interval", {unit::duration, 100, 600'000}},
        {"redis.reconnect_max_backoff", {unit::duration, 100, 600'000}},
        {"redis.replicas_ack", {unit::count, 0, 16}},
        {"redis.replicas_ack_timeout", {unit::duration, 10, 600'000}},
        {"shutdown.drain_timeout", {unit::duration, 0, 3'600'000}},
        {"admin.session_ttl", {unit::duration, 60'000, 7 * k_day_ms}},
        {"hooks.connect.timeout", {unit::duration, 10, 60'000}},
        {"hooks.subscribe.timeout", {unit::duration, 10, 60'000}},
        {"hooks.publish.timeout", {unit::duration, 10, 60'000}},
        {"hooks.max_in_flight", {unit::count, 1, 10'000}},
        {"hooks.max_pending", {unit::count, 0, 1'000'000}},
        {"hooks.max_response_bytes", {unit::bytes, 1024, 16 << 20}},
        {"hooks.breaker_failures", {unit::count, 1, 1'000'000}},
        {"hooks.breaker_cooldown", {unit::duration, 100, 3'600'000}},
        {"webhooks[].batch_size", {unit::count, 1, 10'000}},
        {"webhooks[].batch_interval", {unit::duration, 1, 60'000}},
        {"webhooks[].timeout", {unit::duration, 100, 600'000}},
        {"webhooks[].max_queue", {unit::count, 1, 100'000'000}},
        {"webhooks[].max_backoff", {unit::duration, 100, 3'600'000}},
        {"shutdown.drain_spread", {unit::duration, 0, 3'600'000}},
        {"audit.sample_one_in", {unit::count, 0, 1'000'000}},
    };
    return b;
}

const bounds& bounds_of(std::string_view name) {
    const auto it = numeric_bounds().find(name);
    if (it == numeric_bounds().end())
        throw std::logic_error("config: no range for '" + std::string(name) + "'");
    return it->second;
}

std::string human(unit u, long long v) {
    switch (u) {
        case unit::duration: return format_duration(milliseconds(v));
        case unit::bytes: return format_size(static_cast<std::size_t>(v));
        case unit::count:
        case unit::rate: break;
    }
    return std::to_string(v);
}

std::string range_text(const bounds& b) {
    return human(b.u, b.lo) + ".." + human(b.u, b.hi);
}

[[noreturn]] void out_of_range(const std::string& key, const bounds& b, const std::string& got) {
    throw config_error(key, "must be between " + human(b.u, b.lo) + " and " + human(b.u, b.hi) +
                                ", got '" + got + "'");
}

long long integer(const YAML::Node& n, const std::string& key, const bounds& b) {
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
    if (v < b.lo || v > b.hi) out_of_range(key, b, s);
    return v;
}

milliseconds duration(const YAML::Node& n, const std::string& key, const bounds& b) {
    auto s = scalar(n, key);
    auto d = parse_duration(s);
    if (!d)
        throw config_error(key,
                           "expected a duration such as 250ms, 15s, 5m or 1h, got '" + s + "'");
    if (d->count() < b.lo || d->count() > b.hi) out_of_range(key, b, s);
    return *d;
}

std::size_t size(const YAML::Node& n, const std::string& key, const bounds& b) {
    auto s = scalar(n, key);
    auto v = parse_size(s);
    if (!v) throw config_error(key, "expected a size such as 512, 64KiB or 1MiB, got '" + s + "'");
    if (*v < static_cast<std::size_t>(b.lo) || *v > static_cast<std::size_t>(b.hi))
        out_of_range(key, b, s);
    return *v;
}

// For a key whose range is not in numeric_bounds() yet (a branch adding a key): it works, and
// Describe.ListsEveryKeyOfTheSchemaOnce names the key until its range and default are listed.
[[maybe_unused]] constexpr milliseconds k_ms(long long v) {
    return milliseconds(v);
}
[[maybe_unused]] constexpr auto k_day = milliseconds(k_day_ms);
[[maybe_unused]] milliseconds duration(const YAML::Node& n, const std::string& key, milliseconds lo,
                                       milliseconds hi) {
    return duration(n, key, bounds{unit::duration, lo.count(), hi.count()});
}
[[maybe_unused]] long long integer(const YAML::Node& n, const std::string& key, long long lo,
                                   long long hi) {
    return integer(n, key, bounds{unit::count, lo, hi});
}
[[maybe_unused]] std::size_t size(const YAML::Node& n, const std::string& key, std::size_t lo,
                                  std::size_t hi) {
    return size(n, key,
                bounds{unit::bytes, static_cast<long long>(lo), static_cast<long long>(hi)});
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
    const auto& b = bounds_of(key);
    auto s = scalar(n, key);
    try {
        std::size_t pos = 0;
        double v = std::stod(s, &pos);
        if (pos == s.size() && v >= static_cast<double>(b.lo) && v <= static_cast<double>(b.hi))
            return v;
    } catch (const std::exception&) {
    }
    throw config_error(key,
                       "expected a rate per second between " + range_text(b) + ", got '" + s + "'");
}

std::vector<std::string> patterns(const YAML::Node& n, const std::string& key) {
    if (n.IsNull()) return {};
    if (!n.IsSequence()) throw config_error(key, "expected a list of topic patterns");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) {
        auto k = key + "[" + std::to_string(i) + "]";
        auto p = scalar(n[i], k);
        if (!wire::is_valid_pattern(p)) throw config_error(k, "invalid topic pattern '" + p + "'");
        out.push_back(std::move(p));
    }
    return out;
}

// "host:port" or "[v6]:port" (common/text.hpp), or an error naming the key.
host_port split_host_port(std::string_view v, const std::string& key) {
    if (auto hp = parse_host_port(v)) return std::move(*hp);
    const auto colon = v.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        throw config_error(key, "expected host:port, got '" + std::string(v) + "'");
    throw config_error(key, "invalid port in '" + std::string(v) + "'");
}

bool is_ip_address(const std::string& host) {
    in6_addr buf{};
    return ::inet_pton(AF_INET, host.c_str(), &buf) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), &buf) == 1;
}
// The one parser of per-namespace rule lists (auth.namespaces, quotas, history.namespaces,
// compression.namespaces, delivery.namespaces): `[{pattern, ...}]`, each entry a map with a valid
// `pattern`. Every error names the key path ("quotas[1].max_topics") and what was wrong.
// `field(rule, name, value, key)` reads the other fields and returns false for an unknown one;
// each entry starts as a copy of `init`; `done(rule, entry, key)` checks the entry as a whole
// once its pattern is known to be there (a required field).
struct no_check {
    template <class Rule>
    void operator()(const Rule&, const YAML::Node&, const std::string&) const noexcept {}
};
template <class Rule, class Field, class Done = no_check>
std::vector<Rule> rule_list(const YAML::Node& n, const std::string& k, const std::string& shape,
                            const Rule& init, Field field, Done done = {}) {
    std::vector<Rule> out;
    if (n.IsNull()) return out;
    if (!n.IsSequence()) throw config_error(k, "expected a list of " + shape);
    for (std::size_t i = 0; i < n.size(); ++i) {
        auto ik = k + "[" + std::to_string(i) + "]";
        if (!n[i].IsMap()) throw config_error(ik, "expected a map " + shape);
        Rule r = init;
        bool has_pattern = false;
        for (const auto& kv : n[i]) {
            auto name = kv.first.Scalar();
            auto fk = ik + "." + name;
            if (name == "pattern") {
                r.pattern = scalar(kv.second, fk);
                if (!wire::is_valid_pattern(r.pattern))
                    throw config_error(fk, "invalid topic pattern '" + r.pattern + "'");
                has_pattern = true;
            } else if (!field(r, name, kv.second, fk)) {
                throw config_error(fk, "unknown key");
            }
        }
        if (!has_pattern) throw config_error(ik + ".pattern", "missing");
        done(r, n[i], ik);
        out.push_back(std::move(r));
    }
    return out;
}

// A rule list whose entries start from the rule's defaults and need nothing but a pattern.
template <class Rule, class Field>
std::vector<Rule> rule_list(const YAML::Node& n, const std::string& k, const std::string& shape,
                            Field field) {
    return rule_list<Rule>(n, k, shape, Rule{}, field);
}

constexpr std::size_t k_unset_size = static_cast<std::size_t>(-1);
constexpr milliseconds k_unset_ttl{-1};

using handler = std::function<void(settings&, const YAML::Node&, const std::string&)>;

// The backend's address; net::parse_http_url checks the rest at start-up.
std::string http_url(const YAML::Node& n, const std::string& key) {
    auto v = scalar(n, key);
    if (!v.empty() && (v.rfind("http://", 0) != 0 || v.size() == 7))
        throw config_error(key, "expected http://host[:port]/path, got '" + v + "'");
    return v;
}

// hooks.connect, hooks.subscribe, hooks.publish: the same four keys each.
using hook_of = settings::hook& (*)(settings&);
constexpr std::pair<const char*, hook_of> k_hooks[] = {
    {"connect", [](settings& c) -> settings::hook& { return c.hooks.connect; }},
    {"subscribe", [](settings& c) -> settings::hook& { return c.hooks.subscribe; }},
    {"publish", [](settings& c) -> settings::hook& { return c.hooks.publish; }},
};

void add_hook_keys(std::map<std::string, handler>& m) {
    for (const auto& [name, get] : k_hooks) {
        const std::string p = std::string("hooks.") + name + ".";
        const hook_of h = get;
        m[p + "url"] = [h](settings& c, const YAML::Node& n, const std::string& k) {
            h(c).url = http_url(n, k);
        };
        m[p + "timeout"] = [h](settings& c, const YAML::Node& n, const std::string& k) {
            h(c).timeout = duration(n, k, bounds_of(k));
        };
        m[p + "headers_to_forward"] = [h](settings& c, const YAML::Node& n, const std::string& k) {
            h(c).headers_to_forward = strings(n, k);
        };
        m[p + "on_error"] = [h](settings& c, const YAML::Node& n, const std::string& k) {
            const auto v = scalar(n, k);
            if (v != "deny" && v != "allow")
                throw config_error(k, "expected deny or allow, got '" + v + "'");
            h(c).allow_on_error = v == "allow";
        };
    }
}

constexpr std::string_view k_webhook_events[] = {"disconnect", "publish", "occupied",
                                                 "vacated",    "join",    "leave"};

std::vector<settings::webhook> parse_webhooks(const YAML::Node& n, const std::string& k) {
    std::vector<settings::webhook> out;
    if (n.IsNull()) return out;
    if (!n.IsSequence())
        throw config_error(k, "expected a list of {url, events, patterns, secret}");
    for (std::size_t i = 0; i < n.size(); ++i) {
        const auto ik = k + "[" + std::to_string(i) + "]";
        if (!n[i].IsMap()) throw config_error(ik, "expected a map {url, events, patterns, secret}");
        settings::webhook w;
        for (const auto& kv : n[i]) {
            const auto name = kv.first.Scalar();
            const auto fk = ik + "." + name;
            const auto b = [](const char* field) -> const bounds& {
                return bounds_of(std::string("webhooks[].") + field);
            };
            if (name == "url")
                w.url = http_url(kv.second, fk);
            else if (name == "events")
                w.events = strings(kv.second, fk);
            else if (name == "patterns")
                w.patterns = patterns(kv.second, fk);
            else if (name == "secret")
                w.secret = scalar(kv.second, fk);
            else if (name == "batch_size")
                w.batch_size = integer(kv.second, fk, b("batch_size"));
            else if (name == "batch_interval")
                w.batch_interval = duration(kv.second, fk, b("batch_interval"));
            else if (name == "timeout")
                w.timeout = duration(kv.second, fk, b("timeout"));
            else if (name == "max_queue")
                w.max_queue = integer(kv.second, fk, b("max_queue"));
            else if (name == "max_backoff")
                w.max_backoff = duration(kv.second, fk, b("max_backoff"));
            else
                throw config_error(fk, "unknown key");
        }
        if (w.url.empty()) throw config_error(ik + ".url", "missing");
        if (w.events.empty())
            throw config_error(ik + ".events", "missing: name at least one event");
        for (std::size_t e = 0; e < w.events.size(); ++e)
            if (std::find(std::begin(k_webhook_events), std::end(k_webhook_events), w.events[e]) ==
                std::end(k_webhook_events))
                throw config_error(ik + ".events[" + std::to_string(e) + "]",
                                   "unknown event '" + w.events[e] +
                                       "' (disconnect, publish, occupied, vacated, join, leave)");
        if (w.secret.empty()) throw config_error(ik + ".secret", "missing: webhooks are signed");
        out.push_back(std::move(w));
    }
    return out;
}

const std::map<std::string, handler>& schema() {
    static const std::map<std::string, handler> s = [] {
        std::map<std::string, handler> s = {
        {"listen", [](settings& c, const YAML::Node& n,
                      const std::string& k) { set_listen(c, scalar(n, k), k); }},
        {"workers", [](settings& c, const YAML::Node& n,
                       const std::string& k) { set_workers(c, integer(n, k, bounds_of(k)), k); }},
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
        {"log.rejection_interval",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.log.rejection_interval = duration(n, k, bounds_of(k));
         }},
        {"log.trace_sample",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.log.trace_sample = static_cast<std::size_t>(integer(n, k, bounds_of(k)));
         }},
        {"http.header_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.header_timeout = duration(n, k, bounds_of(k));
         }},
        {"http.idle_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.idle_timeout = duration(n, k, bounds_of(k));
         }},
        {"http.max_header_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.http.max_header_bytes = size(n, k, bounds_of(k));
         }},
        {"limits.max_connections",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_connections = integer(n, k, bounds_of(k));
         }},
        {"limits.max_message_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_message_bytes = size(n, k, bounds_of(k));
         }},
        {"limits.max_client_message_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_client_message_bytes = size(n, k, bounds_of(k));
         }},
        {"limits.max_queued_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_queued_bytes = size(n, k, bounds_of(k));
         }},
        {"limits.max_topics_per_connection",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.limits.max_topics_per_connection = integer(n, k, bounds_of(k));
         }},
        {"limits.connections_per_ip", [](settings& c, const YAML::Node& n, const std::string& k) { c.limits.connections_per_ip = integer(n, k, bounds_of(k)); }},
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
        {"auth.jwt.leeway", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.jwt.leeway = duration(n, k, bounds_of(k)); }},
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
             using ns = settings::auth_namespace;
             c.auth.namespaces = rule_list<ns>(n, k, "{pattern, anonymous}", ns{},
                 [](ns& r, const std::string& name, const YAML::Node& v, const std::string& fk) {
                     if (name != "anonymous") return false;
                     auto a = scalar(v, fk);
                     if (a != "subscribe" && a != "none") throw config_error(fk, "expected subscribe or none, got '" + a + "'");
                     r.anonymous_subscribe = a == "subscribe";
                     return true;
                 },
                 [](const ns&, const YAML::Node& e, const std::string& ik) {
                     if (!e["anonymous"]) throw config_error(ik + ".anonymous", "missing (subscribe or none)");
                 });
         }},
        {"auth.publish_keys", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.publish_keys = strings(n, k); }},
        {"auth.publish_keys_env", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.publish_keys_env = scalar(n, k); }},
        {"auth.allow_unauthenticated_publish", [](settings& c, const YAML::Node& n, const std::string& k) { c.auth.allow_unauthenticated_publish = boolean(n, k); }},
        {"origins.allow", [](settings& c, const YAML::Node& n, const std::string& k) { c.origins.allow = strings(n, k); }},
        {"quotas",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.quotas = rule_list<settings::quota>(n, k, "{pattern, max_topics, max_subscribers_per_topic}",
                 [](settings::quota& q, const std::string& name, const YAML::Node& v, const std::string& fk) {
                     if (name == "max_topics") q.max_topics = integer(v, fk, bounds_of("quotas[].max_topics"));
                     else if (name == "max_subscribers_per_topic") q.max_subscribers_per_topic = integer(v, fk, bounds_of("quotas[].max_subscribers_per_topic"));
                     else return false;
                     return true;
                 });
         }},
        {"trusted_proxies", [](settings& c, const YAML::Node& n, const std::string& k) { c.trusted_proxies = strings(n, k); }},
        {"ws.ping_interval",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.ws.ping_interval = duration(n, k, bounds_of(k));
         }},
        {"ws.ping_interval_min", [](settings& c, const YAML::Node& n, const std::string& k) { c.ws.ping_interval_min = duration(n, k, bounds_of(k)); }},
        {"ws.ping_interval_max", [](settings& c, const YAML::Node& n, const std::string& k) { c.ws.ping_interval_max = duration(n, k, bounds_of(k)); }},
        {"sse.heartbeat_min", [](settings& c, const YAML::Node& n, const std::string& k) { c.sse.heartbeat_min = duration(n, k, bounds_of(k)); }},
        {"sse.heartbeat_max", [](settings& c, const YAML::Node& n, const std::string& k) { c.sse.heartbeat_max = duration(n, k, bounds_of(k)); }},
        {"ws.pong_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.ws.pong_timeout = duration(n, k, bounds_of(k));
         }},
        {"ws.client_publish", [](settings& c, const YAML::Node& n,
                                 const std::string& k) { c.ws.client_publish = patterns(n, k); }},
        {"compression.enabled", [](settings& c, const YAML::Node& n, const std::string& k) { c.compression.enabled = boolean(n, k); }},
        {"compression.min_bytes", [](settings& c, const YAML::Node& n, const std::string& k) { c.compression.min_bytes = size(n, k, bounds_of(k)); }},
        {"compression.level", [](settings& c, const YAML::Node& n, const std::string& k) { c.compression.level = static_cast<int>(integer(n, k, bounds_of(k))); }},
        {"compression.namespaces",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.compression.namespaces = rule_list<compression_rule>(n, k, "{pattern, enabled}",
                 [](compression_rule& r, const std::string& name, const YAML::Node& v, const std::string& fk) {
                     if (name != "enabled") return false;
                     r.enabled = boolean(v, fk);
                     return true;
                 });
         }},
        {"delivery.namespaces",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.delivery.namespaces = rule_list<delivery_rule>(n, k, "{pattern, slow_consumer, keep, key, delivery_interval}",
                 [](delivery_rule& r, const std::string& name, const YAML::Node& v, const std::string& fk) {
                     if (name == "slow_consumer") {
                         auto s = scalar(v, fk);
                         if (s == "disconnect") r.slow_consumer = slow_policy::disconnect;
                         else if (s == "drop_oldest") r.slow_consumer = slow_policy::drop_oldest;
                         else if (s == "conflate") r.slow_consumer = slow_policy::conflate;
                         else throw config_error(fk, "expected disconnect, drop_oldest or conflate, got '" + s + "'");
                     } else if (name == "keep") {
                         r.keep = integer(v, fk, bounds_of("delivery.namespaces[].keep"));
                     } else if (name == "key") {
                         r.key = scalar(v, fk);
                         if (r.key.empty() || r.key.size() > 64) throw config_error(fk, "1 to 64 bytes expected");
                     } else if (name == "delivery_interval") {
                         r.delivery_interval = duration(v, fk, bounds_of("delivery.namespaces[].delivery_interval"));
                         // Below 10 ms a timer per connection costs more than the writes it saves.
                         if (r.delivery_interval.count() > 0 && r.delivery_interval < milliseconds(10))
                             throw config_error(fk, "0 (off) or 10ms..10s expected");
                     } else {
                         return false;
                     }
                     return true;
                 });
         }},
        {"sse.heartbeat",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.sse.heartbeat = duration(n, k, bounds_of(k));
         }},
        {"sse.retry", [](settings& c, const YAML::Node& n,
                         const std::string& k) { c.sse.retry = duration(n, k, bounds_of(k)); }},
        {"poll.timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.poll.timeout = duration(n, k, bounds_of(k));
         }},
        {"presence.patterns", [](settings& c, const YAML::Node& n,
                                 const std::string& k) { c.presence.patterns = patterns(n, k); }},
        {"presence.client_read", [](settings& c, const YAML::Node& n,
                                    const std::string& k) { c.presence.client_read = patterns(n, k); }},
        {"presence.ttl",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.presence.ttl = duration(n, k, bounds_of(k));
         }},
        {"presence.max_clients",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.presence.max_clients = integer(n, k, bounds_of(k));
         }},
        {"presence.max_info_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.presence.max_info_bytes = size(n, k, bounds_of(k));
         }},
        {"history.size",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.size = integer(n, k, bounds_of(k));
         }},
        {"history.ttl",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.ttl = duration(n, k, bounds_of(k));
         }},
        {"history.max_bytes",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.max_bytes = size(n, k, bounds_of(k));
         }},
        {"history.max_recovery",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.history.max_recovery = integer(n, k, bounds_of(k));
         }},
        {"history.namespaces",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             // Unset size/ttl take history.size/ttl after the whole file is read, so the order
             // of keys does not matter (see resolve_defaults).
             c.history.namespaces = rule_list<history_rule>(n, k, "{pattern, size, ttl}",
                 history_rule{"", k_unset_size, k_unset_ttl},
                 [](history_rule& r, const std::string& name, const YAML::Node& v, const std::string& fk) {
                     if (name == "size") r.size = integer(v, fk, bounds_of("history.namespaces[].size"));
                     else if (name == "ttl") r.ttl = duration(v, fk, bounds_of("history.namespaces[].ttl"));
                     else return false;
                     return true;
                 });
         }},
        {"publish.idempotency_window",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.publish.idempotency_window = duration(n, k, bounds_of(k));
         }},
        {"redis.shards",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             if (!n.IsSequence() || n.size() == 0)
                 throw config_error(k, "expected a non-empty list of host:port");
             std::vector<std::string> out;
             std::vector<std::vector<std::string>> sentinels;
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 std::string name;
                 std::vector<std::string> sent;
                 if (n[i].IsMap()) {
                     // {sentinels: [host:port, ...], master: name}: a Sentinel-managed master.
                     for (const auto& kv : n[i]) {
                         const auto f = kv.first.as<std::string>();
                         const auto fk = ik + "." + f;
                         if (f == "master") {
                             name = scalar(kv.second, fk);
                         } else if (f == "sentinels") {
                             if (!kv.second.IsSequence() || kv.second.size() == 0)
                                 throw config_error(fk, "expected a non-empty list of host:port");
                             for (std::size_t j = 0; j < kv.second.size(); ++j) {
                                 auto sk = fk + "[" + std::to_string(j) + "]";
                                 auto v = scalar(kv.second[j], sk);
                                 if (split_host_port(v, sk).port == 0)
                                     throw config_error(sk, "port 0 is not a server");
                                 sent.push_back(std::move(v));
                             }
                         } else {
                             throw config_error(fk, "unknown key (expected sentinels, master)");
                         }
                     }
                     if (sent.empty()) throw config_error(ik + ".sentinels", "missing");
                     if (name.empty() || name.size() > 128)
                         throw config_error(ik + ".master", "expected a master name (1..128 bytes)");
                     for (char ch : name)
                         if (static_cast<unsigned char>(ch) <= ' ' || static_cast<unsigned char>(ch) >= 0x7f)
                             throw config_error(ik + ".master", "printable ASCII without spaces expected");
                 } else {
                     name = scalar(n[i], ik);
                     // Same host:port syntax as listen; a host name is fine here.
                     if (split_host_port(name, ik).port == 0)
                         throw config_error(ik, "port 0 is not a server");
                 }
                 for (const auto& seen : out)
                     if (seen == name) throw config_error(ik, "shard '" + name + "' is listed twice");
                 out.push_back(std::move(name));
                 sentinels.push_back(std::move(sent));
             }
             c.redis.shards = std::move(out);
             c.redis.sentinels = std::move(sentinels);
         }},
        {"redis.cluster",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             // An empty list is the default: no cluster, `shards` apply.
             if (!n.IsSequence()) throw config_error(k, "expected a list of host:port (seed nodes)");
             std::vector<std::string> out;
             for (std::size_t i = 0; i < n.size(); ++i) {
                 auto ik = k + "[" + std::to_string(i) + "]";
                 auto v = scalar(n[i], ik);
                 if (split_host_port(v, ik).port == 0) throw config_error(ik, "port 0 is not a server");
                 out.push_back(std::move(v));
             }
             c.redis.cluster = std::move(out);
         }},
        {"redis.username",
         [](settings& c, const YAML::Node& n, const std::string& k) { c.redis.username = scalar(n, k); }},
        {"redis.password",
         [](settings& c, const YAML::Node& n, const std::string& k) { c.redis.password = scalar(n, k); }},
        {"redis.password_env",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             const auto name = scalar(n, k);
             if (name.empty()) return;  // unset (as --print-defaults shows it)
             const char* v = std::getenv(name.c_str());
             if (v == nullptr || *v == '\0')
                 throw config_error(k, "environment variable '" + name + "' is not set");
             c.redis.password = v;
         }},
        {"redis.replicas_ack",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.replicas_ack = static_cast<unsigned>(integer(n, k, bounds_of(k)));
         }},
        {"redis.replicas_ack_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.replicas_ack_timeout = duration(n, k, bounds_of(k));
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
             c.redis.connect_timeout = duration(n, k, bounds_of(k));
         }},
        {"redis.command_timeout",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.command_timeout = duration(n, k, bounds_of(k));
         }},
        {"redis.ping_interval",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.ping_interval = duration(n, k, bounds_of(k));
         }},
        {"redis.reconnect_max_backoff",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.redis.reconnect_max_backoff = duration(n, k, bounds_of(k));
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
        {"hooks.max_in_flight", [](settings& c, const YAML::Node& n, const std::string& k) { c.hooks.max_in_flight = integer(n, k, bounds_of(k)); }},
        {"hooks.max_pending", [](settings& c, const YAML::Node& n, const std::string& k) { c.hooks.max_pending = integer(n, k, bounds_of(k)); }},
        {"hooks.max_response_bytes", [](settings& c, const YAML::Node& n, const std::string& k) { c.hooks.max_response_bytes = size(n, k, bounds_of(k)); }},
        {"hooks.breaker_failures", [](settings& c, const YAML::Node& n, const std::string& k) { c.hooks.breaker_failures = integer(n, k, bounds_of(k)); }},
        {"hooks.breaker_cooldown", [](settings& c, const YAML::Node& n, const std::string& k) { c.hooks.breaker_cooldown = duration(n, k, bounds_of(k)); }},
        {"webhooks", [](settings& c, const YAML::Node& n, const std::string& k) { c.webhooks = parse_webhooks(n, k); }},
        {"admin.enabled", [](settings& c, const YAML::Node& n, const std::string& k) { c.admin.enabled = boolean(n, k); }},
        {"admin.session_ttl",
         [](settings& c, const YAML::Node& n, const std::string& k) { c.admin.session_ttl = duration(n, k, bounds_of(k)); }},
        {"shutdown.drain_timeout",
         [](settings& c, const YAML::Node& n,
            const std::string&
                k) { c.shutdown.drain_timeout = duration(n, k, bounds_of(k)); }},
        {"shutdown.drain_spread",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.shutdown.drain_spread = duration(n, k, bounds_of(k));
         }},
        {"audit.sink", [](settings& c, const YAML::Node& n, const std::string& k) { c.audit.sink = scalar(n, k); }},
        {"audit.sample_one_in",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             c.audit.sample_one_in = static_cast<std::size_t>(integer(n, k, bounds_of(k)));
         }},
        {"audit.pseudonym_key",
         [](settings& c, const YAML::Node& n, const std::string& k) {
             auto v = scalar(n, k);
             if (!v.empty() && v.size() < 16)
                 throw config_error(k, "must be at least 16 bytes (or empty: random per start)");
             c.audit.pseudonym_key = std::move(v);
         }},
    };
        add_hook_keys(s);
        return s;
    }();
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
    auto [host, port] = split_host_port(v, key);
    // The listener binds an address; a name would need a resolver and could mean several.
    if (!is_ip_address(host))
        throw config_error(key,
                           "'" + host + "' is not an IP address (write 127.0.0.1, ::1 or 0.0.0.0)");
    s.listen_host = std::move(host);
    s.listen_port = port;
}

void set_workers(settings& s, long long v, const std::string& key) {
    const auto& b = bounds_of("workers");
    if (v < b.lo || v > b.hi) out_of_range(key, b, std::to_string(v));
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
    if (!s.redis.cluster.empty() && root["redis"] && root["redis"].IsMap() &&
        root["redis"]["shards"])
        throw config_error("redis.cluster",
                           "redis.cluster and redis.shards are mutually exclusive");
    // WAIT holds the command link: past command_timeout the link would be declared down.
    if (s.redis.replicas_ack > 0 && s.redis.replicas_ack_timeout >= s.redis.command_timeout)
        throw config_error("redis.replicas_ack_timeout", "must be less than redis.command_timeout");
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

namespace {
// YAML scalars for describe(): identifiers plain, everything else double-quoted (so "1.2",
// "herald:" and "" read back as the strings they are).
std::string yaml_string(const std::string& v) {
    bool plain =
        !v.empty() && v != "true" && v != "false" && v != "null" && !(v[0] >= '0' && v[0] <= '9');
    for (char c : v)
        plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_');
    if (plain) return v;
    std::string out = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + '"';
}

template <class T, class F>
std::string yaml_list(const std::vector<T>& items, F item) {
    std::string out = "[";
    for (const auto& x : items) out += (out.size() > 1 ? ", " : "") + item(x);
    return out + "]";
}

std::string yaml_strings(const std::vector<std::string>& v) {
    return yaml_list(v, yaml_string);
}

std::string yaml_bool(bool b) {
    return b ? "true" : "false";
}

std::string yaml_rate(double v) {
    const auto whole = static_cast<long long>(v);
    if (static_cast<double>(whole) == v) return std::to_string(whole);
    std::ostringstream o;
    o << v;
    return o.str();
}
}  // namespace

std::vector<key_doc> describe(const settings& s) {
    std::vector<key_doc> out;
    const auto add = [&out](std::string key, std::string value) {
        const auto it = numeric_bounds().find(key);
        std::string range = it == numeric_bounds().end() ? "" : range_text(it->second);
        out.push_back({std::move(key), std::move(value), std::move(range)});
    };
    const auto ms = [](milliseconds d) { return format_duration(d); };
    const auto n = [](auto v) { return std::to_string(v); };
    const bool v6 = s.listen_host.find(':') != std::string::npos;
    add("listen",
        yaml_string((v6 ? "[" + s.listen_host + "]" : s.listen_host) + ":" + n(s.listen_port)));
    add("workers", n(s.workers));
    add("broker", yaml_string(s.broker));
    add("log.level", yaml_string(s.log.level));
    add("log.format", yaml_string(s.log.format));
    add("log.rejection_interval", ms(s.log.rejection_interval));
    add("log.trace_sample", n(s.log.trace_sample));
    add("http.header_timeout", ms(s.http.header_timeout));
    add("http.idle_timeout", ms(s.http.idle_timeout));
    add("http.max_header_bytes", format_size(s.http.max_header_bytes));
    add("limits.max_connections", n(s.limits.max_connections));
    add("limits.max_message_bytes", format_size(s.limits.max_message_bytes));
    add("limits.max_client_message_bytes", format_size(s.limits.max_client_message_bytes));
    add("limits.max_queued_bytes", format_size(s.limits.max_queued_bytes));
    add("limits.max_topics_per_connection", n(s.limits.max_topics_per_connection));
    add("limits.connections_per_ip", n(s.limits.connections_per_ip));
    add("limits.new_connections_per_ip_per_s", yaml_rate(s.limits.new_connections_per_ip_per_s));
    add("limits.ws_messages_per_s", yaml_rate(s.limits.ws_messages_per_s));
    add("limits.publishes_per_key_per_s", yaml_rate(s.limits.publishes_per_key_per_s));
    add("ws.ping_interval", ms(s.ws.ping_interval));
    add("ws.ping_interval_min", ms(s.ws.ping_interval_min));
    add("ws.ping_interval_max", ms(s.ws.ping_interval_max));
    add("ws.pong_timeout", ms(s.ws.pong_timeout));
    add("ws.client_publish", yaml_strings(s.ws.client_publish));
    add("compression.enabled", yaml_bool(s.compression.enabled));
    add("compression.min_bytes", format_size(s.compression.min_bytes));
    add("compression.level", n(s.compression.level));
    add("compression.namespaces",
        yaml_list(s.compression.namespaces, [](const compression_rule& r) {
            return "{pattern: " + yaml_string(r.pattern) + ", enabled: " + yaml_bool(r.enabled) +
                   "}";
        }));
    add("delivery.namespaces", yaml_list(s.delivery.namespaces, [&](const delivery_rule& r) {
            static constexpr const char* names[] = {"disconnect", "drop_oldest", "conflate"};
            return "{pattern: " + yaml_string(r.pattern) +
                   ", slow_consumer: " + names[static_cast<int>(r.slow_consumer)] +
                   ", keep: " + n(r.keep) + ", key: " + yaml_string(r.key) +
                   ", delivery_interval: " + ms(r.delivery_interval) + "}";
        }));
    add("sse.heartbeat", ms(s.sse.heartbeat));
    add("sse.heartbeat_min", ms(s.sse.heartbeat_min));
    add("sse.heartbeat_max", ms(s.sse.heartbeat_max));
    add("sse.retry", ms(s.sse.retry));
    add("poll.timeout", ms(s.poll.timeout));
    add("history.size", n(s.history.size));
    add("history.ttl", ms(s.history.ttl));
    add("history.max_bytes", format_size(s.history.max_bytes));
    add("history.max_recovery", n(s.history.max_recovery));
    add("history.namespaces", yaml_list(s.history.namespaces, [&](const history_rule& r) {
            return "{pattern: " + yaml_string(r.pattern) + ", size: " + n(r.size) +
                   ", ttl: " + ms(r.ttl) + "}";
        }));
    add("publish.idempotency_window", ms(s.publish.idempotency_window));
    add("presence.patterns", yaml_strings(s.presence.patterns));
    add("presence.client_read", yaml_strings(s.presence.client_read));
    add("presence.ttl", ms(s.presence.ttl));
    add("presence.max_clients", n(s.presence.max_clients));
    add("presence.max_info_bytes", format_size(s.presence.max_info_bytes));
    add("shutdown.drain_timeout", ms(s.shutdown.drain_timeout));
    add("shutdown.drain_spread", ms(s.shutdown.drain_spread));
    add("admin.enabled", yaml_bool(s.admin.enabled));
    add("admin.session_ttl", ms(s.admin.session_ttl));
    add("audit.sink", yaml_string(s.audit.sink));
    add("audit.sample_one_in", n(s.audit.sample_one_in));
    add("audit.pseudonym_key", yaml_string(s.audit.pseudonym_key));
    add("tls.cert", yaml_string(s.tls.cert));
    add("tls.key", yaml_string(s.tls.key));
    add("tls.min_version", yaml_string(s.tls.min_version));
    // Only one of them reads back: with cluster seeds, shards are not used.
    if (s.redis.cluster.empty())
        add("redis.shards", yaml_list(s.redis.shards, [&](const std::string& name) {
                const auto i = static_cast<std::size_t>(&name - s.redis.shards.data());
                if (i >= s.redis.sentinels.size() || s.redis.sentinels[i].empty())
                    return yaml_string(name);
                return "{sentinels: " + yaml_strings(s.redis.sentinels[i]) +
                       ", master: " + yaml_string(name) + "}";
            }));
    add("redis.cluster", yaml_strings(s.redis.cluster));
    add("redis.username", yaml_string(s.redis.username));
    add("redis.password", yaml_string(s.redis.password.empty() ? "" : "<redacted>"));
    add("redis.password_env", yaml_string(""));
    add("redis.replicas_ack", n(s.redis.replicas_ack));
    add("redis.replicas_ack_timeout", ms(s.redis.replicas_ack_timeout));
    add("redis.key_prefix", yaml_string(s.redis.key_prefix));
    add("redis.connect_timeout", ms(s.redis.connect_timeout));
    add("redis.command_timeout", ms(s.redis.command_timeout));
    add("redis.ping_interval", ms(s.redis.ping_interval));
    add("redis.reconnect_max_backoff", ms(s.redis.reconnect_max_backoff));
    add("auth.jwt.keys", yaml_list(s.auth.jwt.keys, [](const settings::jwt_key& k) {
            std::string o = "{alg: " + yaml_string(k.alg);
            if (!k.secret.empty()) o += ", secret: " + yaml_string(k.secret);
            if (!k.public_key.empty()) o += ", public_key: " + yaml_string(k.public_key);
            if (!k.public_key_file.empty())
                o += ", public_key_file: " + yaml_string(k.public_key_file);
            if (!k.kid.empty()) o += ", kid: " + yaml_string(k.kid);
            return o + "}";
        }));
    add("auth.jwt.audience", yaml_string(s.auth.jwt.audience));
    add("auth.jwt.issuer", yaml_string(s.auth.jwt.issuer));
    add("auth.jwt.leeway", ms(s.auth.jwt.leeway));
    add("auth.jwt.require_exp", yaml_bool(s.auth.jwt.require_exp));
    add("auth.token_query_param", yaml_string(s.auth.token_query_param));
    add("auth.token_cookie", yaml_string(s.auth.token_cookie));
    add("auth.default_anonymous", s.auth.default_anonymous_subscribe ? "subscribe" : "none");
    add("auth.namespaces", yaml_list(s.auth.namespaces, [](const settings::auth_namespace& a) {
            return "{pattern: " + yaml_string(a.pattern) +
                   ", anonymous: " + (a.anonymous_subscribe ? "subscribe" : "none") + "}";
        }));
    add("auth.publish_keys", yaml_strings(s.auth.publish_keys));
    add("auth.publish_keys_env", yaml_string(s.auth.publish_keys_env));
    add("auth.allow_unauthenticated_publish", yaml_bool(s.auth.allow_unauthenticated_publish));
    add("origins.allow", yaml_strings(s.origins.allow));
    add("quotas", yaml_list(s.quotas, [&](const settings::quota& q) {
            return "{pattern: " + yaml_string(q.pattern) + ", max_topics: " + n(q.max_topics) +
                   ", max_subscribers_per_topic: " + n(q.max_subscribers_per_topic) + "}";
        }));
    add("trusted_proxies", yaml_strings(s.trusted_proxies));
    const settings::hook* hooks[] = {&s.hooks.connect, &s.hooks.subscribe, &s.hooks.publish};
    for (std::size_t i = 0; i < std::size(hooks); ++i) {
        const auto& h = *hooks[i];
        const std::string p = std::string("hooks.") + k_hooks[i].first + ".";
        add(p + "url", yaml_string(h.url));
        add(p + "timeout", ms(h.timeout));
        add(p + "headers_to_forward", yaml_strings(h.headers_to_forward));
        add(p + "on_error", h.allow_on_error ? "allow" : "deny");
    }
    add("hooks.max_in_flight", n(s.hooks.max_in_flight));
    add("hooks.max_pending", n(s.hooks.max_pending));
    add("hooks.max_response_bytes", format_size(s.hooks.max_response_bytes));
    add("hooks.breaker_failures", n(s.hooks.breaker_failures));
    add("hooks.breaker_cooldown", ms(s.hooks.breaker_cooldown));
    add("webhooks", yaml_list(s.webhooks, [&](const settings::webhook& w) {
            return "{url: " + yaml_string(w.url) + ", events: " + yaml_strings(w.events) +
                   ", patterns: " + yaml_strings(w.patterns) +
                   ", secret: " + yaml_string(w.secret) + ", batch_size: " + n(w.batch_size) +
                   ", batch_interval: " + ms(w.batch_interval) + ", timeout: " + ms(w.timeout) +
                   ", max_queue: " + n(w.max_queue) + ", max_backoff: " + ms(w.max_backoff) + "}";
        }));
    return out;
}

std::string defaults_yaml() {
    std::string out =
        "# herald --print-defaults: every key with its compiled default; accepted ranges in\n"
        "# comments. Durations: ms, s, m, h, d. Sizes: bytes, KiB, MiB, GiB.\n";
    std::vector<std::string> open;  // the sections the previous key was in
    const auto listed = describe(settings{});
    for (const auto& k : listed) {
        std::vector<std::string> path;
        std::size_t start = 0;
        for (auto dot = k.key.find('.'); dot != std::string::npos; dot = k.key.find('.', start)) {
            path.push_back(k.key.substr(start, dot - start));
            start = dot + 1;
        }
        std::size_t same = 0;
        while (same < path.size() && same < open.size() && path[same] == open[same]) ++same;
        for (std::size_t i = same; i < path.size(); ++i)
            out += std::string(2 * i, ' ') + path[i] + ":\n";
        open = path;
        out += std::string(2 * path.size(), ' ') + k.key.substr(start) + ": " + k.value;
        if (!k.range.empty()) out += "  # range: " + k.range;
        out += '\n';
    }
    // A key the schema accepts but describe() does not list (added on a branch that did not
    // describe it): named, so that the doc check reports it.
    for (const auto& entry : schema()) {
        const std::string& key = entry.first;
        if (std::none_of(listed.begin(), listed.end(),
                         [&key](const key_doc& d) { return d.key == key; }))
            out += "# undescribed key: " + key + "\n";
    }
    return out;
}

std::vector<std::string> schema_keys() {
    std::vector<std::string> out;
    for (const auto& [k, _] : schema()) out.push_back(k);
    return out;
}

}  // namespace herald::config
