#include "publish_api.hpp"

#include "client_js.hpp"

#include "herald/auth/context.hpp"
#include "herald/broker/cursor.hpp"
#include "herald/common/text.hpp"
#include "herald/hub/topic.hpp"
#include "herald/net/http_util.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace herald::app {

namespace http = boost::beast::http;
using json = nlohmann::json;
using metrics::reject;

namespace {
constexpr std::size_t k_max_batch = 1000;

std::string lower(std::string_view s) {
    std::string o(s);
    std::transform(o.begin(), o.end(), o.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return o;
}

std::string media_type(std::string_view content_type) {
    auto semi = content_type.find(';');
    auto t = content_type.substr(0, semi);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    return lower(t);
}

std::string result_json(const broker::publish_result& r) {
    std::string o = "{\"topic\":\"" + r.topic + "\",\"epoch\":\"" + r.epoch +
                    "\",\"offset\":" + std::to_string(r.offset) +
                    ",\"subscribers\":" + std::to_string(r.subscribers);
    if (r.status == broker::publish_status::duplicate) o += ",\"duplicate\":true";
    o += '}';
    return o;
}

// /readyz while a broker link is down: {"status":"unavailable","error":{"code":"broker_down",...}}
std::string broker_down_body(std::string reason) {
    if (reason.empty()) reason = "the broker is not ready";  // it recovered meanwhile
    return "{\"status\":\"unavailable\",\"error\":{\"code\":\"broker_down\",\"message\":" +
           net::json_quote(reason) + "}}";
}

// A publish the broker did not apply, or may not have: the answer, or false when it was applied.
bool refuse(const net::responder& r, broker::publish_status st) {
    if (st == broker::publish_status::unavailable) {
        r.error(reject::unavailable, "the broker is unavailable; retry", "Retry-After: 1\r\n");
        return true;
    }
    if (st == broker::publish_status::unknown) {
        r.error(reject::unknown,
                "Redis did not answer in time: the message may or may not be published; retry "
                "with the same Idempotency-Key, which publishes it at most once",
                "Retry-After: 1\r\n");
        return true;
    }
    return false;
}

// Collects the answers of a multi-topic publish; every callback runs on the same worker.
struct batch {
    explicit batch(net::responder r) : resp(std::move(r)) {}
    net::responder resp;
    std::vector<broker::publish_result> results;
    std::size_t remaining = 0;
    // The worst outcome: unknown (some may be applied) over unavailable (none of those was).
    broker::publish_status failed = broker::publish_status::ok;

    void finish() {
        if (refuse(resp, failed)) return;
        std::string body = "{\"results\":[";
        for (std::size_t i = 0; i < results.size(); ++i) {
            if (i) body += ',';
            body += result_json(results[i]);
        }
        body += "]}";
        resp.send(200, "application/json", body);
    }
};

// Collects the two halves of a revocation; both callbacks run on the same worker.
struct revocation {
    explicit revocation(net::responder r) : resp(std::move(r)) {}
    net::responder resp;
    std::size_t local = 0;
    broker::broadcast_result remote;
    int remaining = 2;

    void arrive() {
        if (--remaining > 0) return;
        if (!remote.delivered) {
            resp.error(reject::unavailable,
                       "closed " + std::to_string(local) +
                           " connections on this instance, but the broker is unavailable and "
                           "other instances were not told; retry",
                       "Retry-After: 1\r\n");
            return;
        }
        resp.send(200, "application/json",
                  "{\"disconnected\":" + std::to_string(local) +
                      ",\"instances\":" + std::to_string(remote.instances) + "}");
    }
};

void count_result(net::worker_context& w, const broker::publish_result& r) {
    if (r.status == broker::publish_status::ok)
        w.counters.messages_published.add();
    else if (r.status == broker::publish_status::duplicate)
        w.counters.duplicates.add();
}
}  // namespace

publish_api::publish_api(const config::settings& cfg, metrics::registry& metrics,
                         broker::broker& broker, net::process_state& state)
    : cfg_(cfg), metrics_(metrics), broker_(broker), state_(state) {}

void publish_api::handle(net::worker_context& w, const net::http_request& req, net::responder r) {
    // The router (net/endpoints.hpp) has matched the row, its method and its authorization.
    using net::endpoint_id;
    const auto& path = req.target.path;
    switch (req.route ? req.route->id : endpoint_id::ws) {
        case endpoint_id::healthz: r.send(200, "application/json", "{\"status\":\"ok\"}"); return;
        case endpoint_id::readyz:
            if (state_.draining.load(std::memory_order_relaxed))
                r.send(503, "application/json",
                       "{\"status\":\"draining\",\"error\":{\"code\":\"draining\",\"message\":"
                       "\"shutting down\"}}");
            else if (!state_.ready.load(std::memory_order_relaxed))
                r.send(
                    503, "application/json",
                    "{\"status\":\"starting\",\"error\":{\"code\":\"not_ready\",\"message\":\"not "
                    "ready\"}}");
            else if (!broker_.ready())
                r.send(503, "application/json", broker_down_body(broker_.not_ready_reason()));
            else
                r.send(200, "application/json", "{\"status\":\"ready\"}");
            return;
        case endpoint_id::metrics: metrics_text(r); return;
        case endpoint_id::admin_disconnect: admin_disconnect(w, req, r); return;
        case endpoint_id::publish:
            w.counters.publish_requests.add();
            publish_json(w, req, r);
            return;
        case endpoint_id::publish_topic:
            w.counters.publish_requests.add();
            publish_one(w, req, path.substr(req.route->path.size()), r);
            return;
        case endpoint_id::history: history(w, req, path.substr(req.route->path.size()), r); return;
        case endpoint_id::client_js:
            // The ETag names the client's version and content; a page may cache it for an hour.
            r.send(200, "text/javascript; charset=utf-8", client_js(),
                   "Cache-Control: public, max-age=3600\r\nETag: " + std::string(client_js_etag()) +
                       "\r\n");
            return;
        case endpoint_id::ws:
        case endpoint_id::sse:
        case endpoint_id::poll: break;  // served by the HTTP session
    }
    r.error(reject::not_found, "no such endpoint: " + path);
}

void publish_api::admin_disconnect(net::worker_context& w, const net::http_request& req,
                                   net::responder r) {
    json body = json::parse(req.body(), nullptr, false);
    auto u = body.is_object() ? body.find("user") : body.end();
    if (body.is_discarded() || !body.is_object() || u == body.end() || !u->is_string() ||
        u->get_ref<const std::string&>().empty()) {
        r.error(reject::bad_request, "body must be {\"user\": \"<sub of the user's tokens>\"}");
        return;
    }
    // This instance closes its connections itself, whatever the broker's state; the broker tells
    // the others. The answer waits for both (their callbacks run on this worker).
    auto t = std::make_shared<revocation>(r);
    auto user = u->get<std::string>();
    broker_.broadcast_disconnect(w.id, user, [t](broker::broadcast_result b) {
        t->remote = b;
        t->arrive();
    });
    auto local = [t](std::size_t n) {
        t->local = n;
        t->arrive();
    };
    if (disconnect_)
        disconnect_(w.id, std::move(user), std::move(local));
    else
        local(0);
}

void publish_api::publish_one(net::worker_context& w, const net::http_request& req,
                              const std::string& topic, net::responder r) {
    if (!hub::is_valid_topic(topic)) {
        r.error(reject::bad_topic, hub::k_topic_rule);
        return;
    }
    hub::publish_request p;
    p.topic = topic;
    const auto type = media_type(req.header("Content-Type"));
    if (type == "application/json") {
        if (!json::accept(req.body())) {
            r.error(reject::bad_json, "body is not valid JSON (Content-Type: application/json)");
            return;
        }
        p.kind = hub::payload_kind::json;
    } else if (type == "application/octet-stream") {
        p.kind = hub::payload_kind::binary;
    } else if (type.empty() || type.compare(0, 5, "text/") == 0 ||
               type == "application/x-www-form-urlencoded") {
        if (!is_valid_utf8(req.body())) {
            r.error(reject::bad_encoding,
                    "a text message must be UTF-8; send binary as application/octet-stream");
            return;
        }
        p.kind = hub::payload_kind::text;
    } else {
        r.error(reject::unsupported_media_type,
                "Content-Type must be text/*, application/json or application/octet-stream");
        return;
    }
    if (auto e = req.target.get("event")) {
        if (!hub::is_valid_event_name(*e)) {
            r.error(reject::bad_event, "event must be 1..64 bytes of [A-Za-z0-9_.:-]");
            return;
        }
        p.event = *e;
    }
    if (auto k = req.header("Idempotency-Key"); !k.empty()) {
        if (!hub::is_valid_idempotency_key(k)) {
            r.error(reject::bad_idempotency_key,
                    "Idempotency-Key must be 1..128 printable ASCII bytes");
            return;
        }
        p.idempotency_key = std::string(k);
    }
    p.payload = req.body();
    broker_.publish(w.id, std::move(p), [&w, r](broker::publish_result res) {
        if (refuse(r, res.status)) return;
        count_result(w, res);
        r.send(200, "application/json", result_json(res));
    });
}

void publish_api::publish_json(net::worker_context& w, const net::http_request& req,
                               net::responder r) {
    const auto type = media_type(req.header("Content-Type"));
    if (!type.empty() && type != "application/json") {
        r.error(reject::unsupported_media_type,
                "POST /publish takes Content-Type: application/json");
        return;
    }
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
        r.error(reject::bad_json, "body must be a JSON object");
        return;
    }
    std::vector<hub::publish_request> out;
    std::string problem;
    reject problem_kind = reject::bad_request;
    std::string header_key(req.header("Idempotency-Key"));
    if (!header_key.empty() && !hub::is_valid_idempotency_key(header_key)) {
        r.error(reject::bad_idempotency_key,
                "Idempotency-Key must be 1..128 printable ASCII bytes");
        return;
    }
    auto take = [&](const json& m) -> bool {
        if (!m.is_object()) {
            problem = "each message must be a JSON object";
            return false;
        }
        std::vector<std::string> topics;
        if (auto t = m.find("topic"); t != m.end()) {
            if (!t->is_string()) return problem = "topic must be a string", false;
            topics.push_back(t->get<std::string>());
        }
        if (auto ts = m.find("topics"); ts != m.end()) {
            if (!ts->is_array()) return problem = "topics must be an array of strings", false;
            for (const auto& t : *ts) {
                if (!t.is_string()) return problem = "topics must be an array of strings", false;
                topics.push_back(t.get<std::string>());
            }
        }
        if (topics.empty()) return problem = "a message needs topic or topics", false;
        hub::publish_request base;
        if (auto d = m.find("data_base64"); d != m.end()) {
            auto bytes =
                d->is_string() ? base64_decode(d->get_ref<const std::string&>()) : std::nullopt;
            if (!bytes) return problem = "data_base64 must be standard base64", false;
            base.kind = hub::payload_kind::binary;
            base.payload = std::move(*bytes);
        } else if (auto d2 = m.find("data"); d2 != m.end()) {
            if (d2->is_string()) {
                base.kind = hub::payload_kind::text;
                base.payload = d2->get<std::string>();
            } else {
                base.kind = hub::payload_kind::json;
                base.payload = d2->dump(-1, ' ', false, json::error_handler_t::replace);
            }
        } else {
            return problem = "a message needs data or data_base64", false;
        }
        if (base.payload.size() > cfg_.limits.max_message_bytes) {
            problem_kind = reject::payload_too_large;
            return problem = "message exceeds limits.max_message_bytes", false;
        }
        if (auto e = m.find("event"); e != m.end()) {
            if (!e->is_string() || !hub::is_valid_event_name(e->get_ref<const std::string&>())) {
                problem_kind = reject::bad_event;
                return problem = "event must be 1..64 bytes of [A-Za-z0-9_.:-]", false;
            }
            base.event = e->get<std::string>();
        }
        if (auto k = m.find("idempotency_key"); k != m.end()) {
            if (!k->is_string() ||
                !hub::is_valid_idempotency_key(k->get_ref<const std::string&>())) {
                problem_kind = reject::bad_idempotency_key;
                return problem = "idempotency_key must be 1..128 printable ASCII bytes", false;
            }
            base.idempotency_key = k->get<std::string>();
        } else {
            base.idempotency_key = header_key;
        }
        for (auto& t : topics) {
            if (!hub::is_valid_topic(t)) {
                problem_kind = reject::bad_topic;
                return problem = std::string(hub::k_topic_rule), false;
            }
            if (out.size() >= k_max_batch)
                return problem = "at most 1000 messages per request", false;
            auto p = base;
            p.topic = std::move(t);
            out.push_back(std::move(p));
        }
        return true;
    };
    bool ok = true;
    if (auto ms = body.find("messages"); ms != body.end()) {
        if (!ms->is_array() || ms->empty()) {
            r.error(reject::bad_request, "messages must be a non-empty array");
            return;
        }
        for (const auto& m : *ms)
            if (!(ok = take(m))) break;
    } else {
        ok = take(body);
    }
    if (!ok) {
        r.error(problem_kind, problem);
        return;
    }
    auto b = std::make_shared<batch>(r);
    b->results.resize(out.size());
    b->remaining = out.size();
    for (std::size_t i = 0; i < out.size(); ++i) {
        broker_.publish(w.id, std::move(out[i]), [&w, b, i](broker::publish_result res) {
            if (res.status == broker::publish_status::unknown)
                b->failed = res.status;
            else if (res.status != broker::publish_status::unavailable)
                count_result(w, res);
            else if (b->failed == broker::publish_status::ok)
                b->failed = res.status;
            b->results[i] = std::move(res);
            if (--b->remaining == 0) b->finish();
        });
    }
}

void publish_api::history(net::worker_context& w, const net::http_request& req,
                          const std::string& topic, net::responder r) {
    // `topic` is valid and readable by this client: the router checked both.
    std::optional<hub::stream_pos> since;
    if (auto s = req.target.get("since"); s && !s->empty()) {
        if (auto off = parse_u64(*s))
            since = hub::stream_pos{"", *off};
        else if (auto pos = broker::parse_position(*s))
            since = std::move(pos);
        else {
            r.error(reject::bad_cursor, "since must be an offset or epoch:offset");
            return;
        }
    }
    std::size_t limit = cfg_.history.size;
    if (auto l = req.target.get("limit")) {
        auto v = parse_u64(*l);
        if (!v) {
            r.error(reject::bad_request, "limit must be an unsigned integer");
            return;
        }
        limit = std::min<std::size_t>(*v, limit);
    }
    (void)w;
    broker_.history(w.id, topic, since, limit, [r, topic](broker::history_result h) {
        if (h.unavailable) {
            r.error(reject::unavailable, "the broker is unavailable; retry", "Retry-After: 1\r\n");
            return;
        }
        if (h.epoch_mismatch) {
            r.error(reject::bad_cursor,
                    "since names another epoch of this topic (current: " + h.epoch + ")");
            return;
        }
        std::string body = "{\"topic\":\"" + topic + "\",\"epoch\":\"" + h.epoch +
                           "\",\"offset\":" + std::to_string(h.top) + ",\"messages\":[";
        for (std::size_t i = 0; i < h.messages.size(); ++i) {
            const auto& m = *h.messages[i];
            if (i) body += ',';
            body += "{\"offset\":" + std::to_string(m.offset);
            if (!m.event.empty()) body += ",\"event\":\"" + m.event + "\"";
            body += ',' + m.data_json_member() + '}';
        }
        body += "]}";
        r.send(200, "application/json", body);
    });
}

void publish_api::metrics_text(net::responder r) {
    std::vector<metrics::registry::gauge> extra = {
        {"herald_ready", "1 when /readyz answers 200.",
         state_.ready.load() && !state_.draining.load() && broker_.ready() ? 1.0 : 0.0},
        {"herald_draining", "1 while shutting down.", state_.draining.load() ? 1.0 : 0.0},
        {"herald_history_bytes", "Bytes held by message history.",
         static_cast<double>(broker_.history_bytes())},
        {"herald_open_sockets", "TCP connections open (all transports).",
         static_cast<double>(state_.connections.load())},
    };
    for (auto& g : broker_.metrics()) extra.push_back(std::move(g));
    r.send(200, "text/plain; version=0.0.4", metrics_.render(extra));
}

}  // namespace herald::app
