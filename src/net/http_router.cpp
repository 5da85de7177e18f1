// The router: from one parsed request to its handler. CORS, the endpoint table (method, path),
// the topics the request would read, the one authorization decision (auth::context), then the
// stream endpoints (http_streams.cpp) or the application's http_api. The request loop that
// parses requests and orders their answers is http_session.cpp.
#include "herald/auth/context.hpp"
#include "herald/wire/topic.hpp"
#include "herald/net/hooks.hpp"
#include "sessions.hpp"

namespace herald::net {

namespace http = boost::beast::http;
using metrics::reject;
using known = request_head::known;

namespace {
// The HTTP answer to an authorization refusal (auth/access.hpp).
void refuse(http_session& s, std::uint64_t seq, const auth::decision& d, bool keep_alive) {
    switch (d.status) {
        case auth::verdict::unauthorized:
            s.fail_request(seq, reject::unauthorized, d.message, keep_alive,
                           d.invalid_token ? "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"
                                           : "WWW-Authenticate: Bearer\r\n");
            return;
        case auth::verdict::forbidden:
            // An anonymous client is told a credential might help.
            s.fail_request(seq, reject::forbidden, d.message, keep_alive,
                           d.anonymous ? "WWW-Authenticate: Bearer\r\n" : "");
            return;
        case auth::verdict::rate_limited:
            s.fail_request(seq, reject::rate_limited, d.message, keep_alive,
                           "Retry-After: " + std::to_string(d.retry_after_s) + "\r\n");
            return;
        case auth::verdict::ok: return;
    }
}
}  // namespace

std::optional<std::vector<std::string>> http_session::query_topics(std::uint64_t seq, const url& u,
                                                                   bool keep_alive, bool required) {
    auto topics = u.all("topic");
    if (topics.empty() && required) {
        fail_request(seq, reject::bad_topic, "at least one topic parameter is required",
                     keep_alive);
        return std::nullopt;
    }
    if (topics.size() > w_.cfg.limits.max_topics_per_connection) {
        fail_request(seq, reject::too_many_topics,
                     "at most " + std::to_string(w_.cfg.limits.max_topics_per_connection) +
                         " topics per connection",
                     keep_alive);
        return std::nullopt;
    }
    for (std::size_t i = 0; i < topics.size(); ++i) {
        if (!wire::is_valid_topic(topics[i])) {
            fail_request(seq, reject::bad_topic, std::string(wire::k_topic_rule), keep_alive);
            return std::nullopt;
        }
        for (std::size_t j = 0; j < i; ++j)
            if (topics[j] == topics[i]) {
                fail_request(seq, reject::bad_topic, "topic '" + topics[i] + "' is given twice",
                             keep_alive);
                return std::nullopt;
            }
    }
    return topics;
}

void http_session::handle(http_request& req) {
    const std::uint64_t seq = next_seq_++;
    slots_.push_back(slot{seq, false, true, {}, false});
    if (refuse_) {
        fail_request(seq, *refuse_, "too many connections; retry later", false,
                     "Retry-After: 1\r\n");
        return;
    }
    const bool keep_alive =
        req.raw.keep_alive() && !w_.state.draining.load(std::memory_order_relaxed);
    auto target = parse_target(req.raw.target());
    if (!target) {
        fail_request(seq, reject::bad_request, "malformed request target", keep_alive);
        return;
    }
    req.target = std::move(*target);
    const auto& path = req.target.path;
    cors_.clear();
    struct clear_cors {
        std::string& c;
        ~clear_cors() { c.clear(); }
    } cleanup{cors_};
    if (auto origin = req.header(known::origin); !origin.empty() && w_.auth) {
        auto h = w_.auth->cors(origin, req.method() == http::verb::options);
        if (!h) {
            fail_request(seq, reject::forbidden, "origin not allowed", keep_alive);
            return;
        }
        cors_ = std::move(*h);
    }
    const auto* ep = find_endpoint(path);
    if (!ep) {
        fail_request(seq, reject::not_found, "no such endpoint: " + path, keep_alive);
        return;
    }
    if (ep->id == endpoint_id::history) {
        // Its page may take half the output budget (out_mark()): dispatch nothing after it until
        // it is answered, so that pipelined /history requests never overflow the budget.
        slots_.back().large = true;
        large_owed_ = true;
    }
    if (req.method() == http::verb::options) {
        complete(seq, make_response(204, "text/plain", "", keep_alive, cors_), keep_alive);
        return;
    }
    if (req.method() != ep->method) {
        const auto m = http::to_string(ep->method);
        const std::string verb(m.data(), m.size());
        fail_request(seq, reject::method_not_allowed, "use " + verb, keep_alive,
                     "Allow: " + verb + "\r\n");
        return;
    }
    req.route = ep;
    const bool stream = ep->id == endpoint_id::ws || ep->id == endpoint_id::sse;
    const bool held = stream || ep->id == endpoint_id::poll;  // refusals close these
    if (held && w_.state.draining.load(std::memory_order_relaxed)) {
        fail_request(seq, reject::draining, "the server is shutting down; reconnect", false);
        return;
    }
    // The topics the request would read, validated, then the row's authorization decision: no
    // handler runs for a request its access class refuses.
    std::vector<std::string> topics;
    if (ep->topics == topic_source::path) {
        topics.push_back(path.substr(ep->path.size()));
        if (!wire::is_valid_topic(topics.back())) {
            fail_request(seq, reject::bad_topic, std::string(wire::k_topic_rule), keep_alive);
            return;
        }
    } else if (ep->topics != topic_source::none) {
        auto t = query_topics(seq, req.target, stream ? false : keep_alive,
                              ep->topics == topic_source::query);
        if (!t) return;
        topics = std::move(*t);
    }
    req.client_ip = client_ip(req);
    std::unique_ptr<auth::token_claims> reader;
    if (w_.auth) {
        const auth::credentials cred{req.header(known::authorization), req.header(known::cookie),
                                     req.target.query, req.header(known::x_herald_csrf),
                                     req.method() != http::verb::get || held};
        auto d = w_.auth->authorize(ep->access, cred, topics, req.client_ip);
        if (!d.ok()) {
            // The one rate-limited verdict is the publish rate (auth::context::authorize_key).
            if (d.status == auth::verdict::rate_limited) {
                w_.rejects.note(reject_log::reason::publish_rate, req.client_ip);
                w_.auth->audit->refused("rate_limited", req.client_ip, req.target.path);
            } else {
                w_.auth->audit->auth_failure(
                    d.status == auth::verdict::unauthorized ? "unauthorized" : "forbidden",
                    d.message, req.client_ip, req.target.path);
            }
            refuse(*this, seq, d, held ? false : keep_alive);
            return;
        }
        reader = std::move(d.reader);
    }
    if (held) {
        if (w_.hooks && w_.hooks->gates_streams())
            gate_stream(seq, std::move(req), std::move(topics), std::move(reader), keep_alive);
        else
            start_stream(seq, req, topics, std::move(reader), keep_alive);
        return;
    }
    w_.api.handle(w_, req,
                  responder(std::static_pointer_cast<http_session>(shared_from_this()), seq,
                            keep_alive, cors_));
}

void http_session::start_stream(std::uint64_t seq, http_request& req,
                                const std::vector<std::string>& topics,
                                std::unique_ptr<auth::token_claims> claims, bool keep_alive) {
    switch (req.route->id) {
        case endpoint_id::ws: upgrade_websocket(seq, req, topics, std::move(claims)); return;
        case endpoint_id::sse: start_sse(seq, req, topics, std::move(claims)); return;
        default: start_poll(seq, req, topics, std::move(claims), keep_alive); return;
    }
}

}  // namespace herald::net
