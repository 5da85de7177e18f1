// Backend hooks: the request bodies, the call, the reading of the answer, the counters.
#include "herald/net/hooks.hpp"

#include "herald/net/http_api.hpp"
#include "herald/wire/payload.hpp"
#include "herald/wire/topic.hpp"

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

namespace herald::net {

using json = nlohmann::json;

const char* to_string(hook_kind k) noexcept {
    switch (k) {
        case hook_kind::connect: return "connect";
        case hook_kind::subscribe: return "subscribe";
        case hook_kind::publish: return "publish";
        case hook_kind::count_: break;
    }
    return "?";
}

namespace {
// Most topics one connect answer may add (each still counts against
// limits.max_topics_per_connection where the stream subscribes them).
constexpr std::size_t k_max_hook_topics = 1024;
// `info` a connection or subscription keeps.
constexpr std::size_t k_max_info_bytes = 1024;

const char* hook_key(hook_kind k) noexcept {
    switch (k) {
        case hook_kind::connect: return "hooks.connect.url";
        case hook_kind::subscribe: return "hooks.subscribe.url";
        default: return "hooks.publish.url";
    }
}

void open_body(std::string& o, std::string_view hook, const hook_client_info& c,
               const std::vector<std::pair<std::string, std::string>>& headers) {
    o += "{\"hook\":";
    o += wire::json_quote(hook);
    o += ",\"client\":{\"address\":" + wire::json_quote(c.address) +
         ",\"transport\":" + wire::json_quote(c.transport) +
         ",\"user\":" + wire::json_quote(c.user);
    if (!c.info.empty()) o += ",\"info\":" + std::string(c.info);
    o += "},\"headers\":{";
    bool first = true;
    for (const auto& [k, v] : headers) {
        if (!first) o += ',';
        first = false;
        o += wire::json_quote(k) + ":" + wire::json_quote(v);
    }
    o += '}';
}

hook_verdict on_error(const config::settings::hook& spec, std::string why) {
    hook_verdict v;
    v.allow = spec.allow_on_error;
    v.from_error = true;
    v.message = std::move(why);
    return v;
}
}  // namespace

hook_caller::hook_caller(asio::io_context& ioc, const config::settings& cfg,
                         hook_counters& counters)
    : cfg_(cfg),
      counters_(counters),
      client_(ioc, client_limits{cfg.hooks.max_in_flight, cfg.hooks.max_pending,
                                 cfg.hooks.max_response_bytes,
                                 static_cast<unsigned>(cfg.hooks.breaker_failures),
                                 cfg.hooks.breaker_cooldown}) {
    for (std::size_t i = 0; i < targets_.size(); ++i) {
        const auto k = static_cast<hook_kind>(i);
        const auto& url = spec(k).url;
        if (url.empty()) continue;
        targets_[i] = parse_http_url(url);
        if (!targets_[i])
            throw config::config_error(hook_key(k),
                                       "expected http://host[:port]/path, got '" + url + "'");
    }
}

const config::settings::hook& hook_caller::spec(hook_kind k) const noexcept {
    switch (k) {
        case hook_kind::connect: return cfg_.hooks.connect;
        case hook_kind::subscribe: return cfg_.hooks.subscribe;
        default: return cfg_.hooks.publish;
    }
}

std::vector<std::pair<std::string, std::string>> hook_caller::forwarded(
    hook_kind k, const http_request& req) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& name : spec(k).headers_to_forward) {
        // Several lines of one header are joined as HTTP allows (Cookie with "; ").
        std::string v;
        req.raw.each(name, [&v, &name](std::string_view value) {
            if (!v.empty()) v += boost::beast::iequals(name, "Cookie") ? "; " : ", ";
            v.append(value);
        });
        if (!v.empty()) out.emplace_back(name, std::move(v));
    }
    return out;
}

std::string hook_caller::connect_body(
    const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::vector<std::string>& topics) {
    std::string o;
    open_body(o, "connect", c, headers);
    o += ",\"topics\":[";
    for (std::size_t i = 0; i < topics.size(); ++i) {
        if (i) o += ',';
        o += wire::json_quote(topics[i]);
    }
    return o + "]}";
}

std::string hook_caller::subscribe_body(
    const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
    std::string_view topic) {
    std::string o;
    open_body(o, "subscribe", c, headers);
    return o + ",\"topic\":" + wire::json_quote(topic) + "}";
}

std::string hook_caller::publish_body(
    const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
    std::string_view topic, wire::payload_kind kind, std::string_view payload) {
    std::string o;
    open_body(o, "publish", c, headers);
    return o + ",\"topic\":" + wire::json_quote(topic) + "," + wire::data_member(kind, payload) +
           "}";
}

hook_verdict hook_caller::read_answer(hook_kind k, const http_answer& a,
                                      const config::settings::hook& spec) {
    if (a.status != call_status::ok)
        return on_error(spec, std::string("the backend did not answer: ") + to_string(a.status));
    if (a.code == 401 || a.code == 403) {
        hook_verdict v;
        v.message = "refused by the application";
        return v;
    }
    if (a.code < 200 || a.code > 299)
        return on_error(spec, "the backend answered HTTP " + std::to_string(a.code));
    json j = json::parse(a.body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return on_error(spec, "the backend's answer is not a JSON object");
    auto allow = j.find("allow");
    if (allow == j.end() || !allow->is_boolean())
        return on_error(spec, "the backend's answer has no boolean \"allow\"");
    hook_verdict v;
    v.allow = allow->get<bool>();
    if (auto m = j.find("message"); m != j.end() && m->is_string())
        v.message = m->get<std::string>().substr(0, 200);
    if (!v.allow) {
        if (v.message.empty()) v.message = "refused by the application";
        return v;
    }
    if (auto u = j.find("user"); u != j.end()) {
        if (!u->is_string() || u->get_ref<const std::string&>().size() > 256)
            return on_error(spec, "\"user\" must be a string of at most 256 bytes");
        v.user = u->get<std::string>();
    }
    if (auto i = j.find("info"); i != j.end() && !i->is_null()) {
        v.info = i->dump(-1, ' ', false, json::error_handler_t::replace);
        // Kept per connection or subscription: bounded like the rest of its memory.
        if (v.info.size() > k_max_info_bytes) return on_error(spec, "\"info\" is over 1 KiB");
    }
    if (k == hook_kind::connect) {
        if (auto ts = j.find("topics"); ts != j.end()) {
            if (!ts->is_array() || ts->size() > k_max_hook_topics)
                return on_error(spec, "\"topics\" must be an array of topic names");
            for (const auto& t : *ts) {
                if (!t.is_string() || !wire::is_valid_topic(t.get_ref<const std::string&>()))
                    return on_error(spec, "\"topics\" must be an array of topic names");
                v.topics.push_back(t.get<std::string>());
            }
        }
    }
    if (k == hook_kind::publish && (j.contains("data") || j.contains("data_base64"))) {
        wire::payload_kind kind{};
        std::string payload;
        if (wire::read_payload(j, kind, payload) != wire::payload_status::ok)
            return on_error(spec, "\"data_base64\" must be standard base64");
        v.data.emplace(kind, std::move(payload));
    }
    return v;
}

void hook_caller::call(hook_kind k, std::string body,
                       std::vector<std::pair<std::string, std::string>> forwarded,
                       std::function<void(hook_verdict)> done) {
    const auto i = idx(k);
    const auto& s = spec(k);
    http_call c{std::move(body), std::move(forwarded), s.timeout};
    client_.post(
        *targets_[i], std::move(c), [this, k, i, &s, done = std::move(done)](http_answer a) {
            auto v = read_answer(k, a, s);
            const auto outcome = v.from_error ? hook_outcome::error
                                 : v.allow    ? hook_outcome::allowed
                                              : hook_outcome::denied;
            counters_.calls[static_cast<std::size_t>(outcome)][i].add();
            const auto us = a.took.count();
            counters_.latency_us[i].add(us);
            std::size_t b = 0;
            while (b < k_hook_buckets_ms.size() && us > 1000ll * k_hook_buckets_ms[b]) ++b;
            counters_.buckets[i][b].add();
            counters_.open_breakers.add(static_cast<std::int64_t>(client_.open_breakers()) -
                                        counters_.open_breakers.get());
            done(std::move(v));
        });
}

}  // namespace herald::net

namespace herald::net {

std::vector<metrics::registry::gauge> hook_metrics(
    const std::vector<std::unique_ptr<hook_counters>>& workers) {
    using gauge = metrics::registry::gauge;
    constexpr std::size_t kinds = static_cast<std::size_t>(hook_kind::count_);
    const auto sum = [&workers](auto get) {
        std::int64_t n = 0;
        for (const auto& w : workers) n += get(*w).get();
        return static_cast<double>(n);
    };
    gauge calls{"herald_hook_calls_total",
                "Backend hook calls by hook and result (allowed, denied, error: on_error decided).",
                0, "counter"};
    static constexpr const char* results[] = {"allowed", "denied", "error"};
    for (std::size_t k = 0; k < kinds; ++k)
        for (std::size_t r = 0; r < std::size(results); ++r)
            calls.samples.emplace_back(
                std::string("{hook=\"") + to_string(static_cast<hook_kind>(k)) + "\",result=\"" +
                    results[r] + "\"}",
                sum([&](hook_counters& c) -> metrics::counter& { return c.calls[r][k]; }));
    gauge hist{"herald_hook_duration_seconds",
               "Backend hook call durations (to the answer, the error or the timeout).", 0,
               "histogram"};
    for (std::size_t k = 0; k < kinds; ++k) {
        const std::string hook = to_string(static_cast<hook_kind>(k));
        double cumulative = 0;
        for (std::size_t b = 0; b <= k_hook_buckets_ms.size(); ++b) {
            cumulative +=
                sum([&](hook_counters& c) -> metrics::counter& { return c.buckets[k][b]; });
            static constexpr const char* les[] = {"0.005", "0.01", "0.025", "0.05",
                                                  "0.1",   "0.25", "1",     "+Inf"};
            static_assert(std::size(les) == k_hook_buckets_ms.size() + 1);
            const std::string le = les[b];
            hist.samples.emplace_back("_bucket{hook=\"" + hook + "\",le=\"" + le + "\"}",
                                      cumulative);
        }
        hist.samples.emplace_back(
            "_sum{hook=\"" + hook + "\"}",
            sum([&](hook_counters& c) -> metrics::counter& { return c.latency_us[k]; }) / 1e6);
        hist.samples.emplace_back("_count{hook=\"" + hook + "\"}", cumulative);
    }
    gauge open{"herald_hook_breakers_open",
               "Backend targets whose circuit breaker is open, summed over the workers.",
               sum([](hook_counters& c) -> metrics::counter& { return c.open_breakers; })};
    return {std::move(calls), std::move(hist), std::move(open)};
}

}  // namespace herald::net
