// POST /publish/<topic> (one message, the body is the payload) and POST /publish (a JSON batch).
#include "api.hpp"

#include "herald/auth/context.hpp"
#include "herald/common/text.hpp"
#include "herald/net/hooks.hpp"
#include "herald/net/webhooks.hpp"
#include "herald/wire/payload.hpp"
#include "herald/wire/topic.hpp"
#include "herald/wire/trace.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace herald::app {

using json = nlohmann::json;
using metrics::reject;
using known = net::request_head::known;

namespace {
constexpr std::size_t k_max_batch = 1000;

// The media type of a Content-Type value, without parameters or surrounding blanks; compared
// case-insensitively (is_media()).
std::string_view media_type(std::string_view content_type) {
    auto semi = content_type.find(';');
    auto t = content_type.substr(0, semi);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    return t;
}

constexpr char ascii_lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Whether media type `t` is `lower_name` (lower case), or starts with it when `prefix`.
bool is_media(std::string_view t, std::string_view lower_name, bool prefix = false) {
    if (prefix ? t.size() < lower_name.size() : t.size() != lower_name.size()) return false;
    for (std::size_t i = 0; i < lower_name.size(); ++i)
        if (ascii_lower(t[i]) != lower_name[i]) return false;
    return true;
}

// One result's JSON object, appended. A topic and an epoch need no escaping (wire/topic.hpp).
// Written in place into room sized once (the `+=` of each literal, with its strlen and capacity
// check, was about 550 instructions of every publish).
void append_result_json(std::string& o, const broker::publish_result& r) {
    static constexpr std::string_view open_topic = R"({"topic":")";
    static constexpr std::string_view epoch_key = R"(","epoch":")";
    static constexpr std::string_view offset_key = R"(","offset":)";
    static constexpr std::string_view subscribers_key = R"(,"subscribers":)";
    static constexpr std::string_view duplicate = R"(,"duplicate":true)";
    static constexpr std::size_t digits = 20;  // of a 64-bit number
    const std::size_t at = o.size();
    o.resize(at + open_topic.size() + r.topic.size() + epoch_key.size() + r.epoch.size() +
             offset_key.size() + digits + subscribers_key.size() + digits + duplicate.size() + 1);
    char* p = o.data() + at;
    const auto put = [&p](std::string_view s) {
        std::memcpy(p, s.data(), s.size());
        p += s.size();
    };
    put(open_topic);
    put(r.topic);
    put(epoch_key);
    put(r.epoch);
    put(offset_key);
    p = std::to_chars(p, p + digits, r.offset).ptr;
    put(subscribers_key);
    p = std::to_chars(p, p + digits, r.subscribers).ptr;
    if (r.status == broker::publish_status::duplicate) put(duplicate);
    *p++ = '}';
    o.resize(static_cast<std::size_t>(p - o.data()));
}

// A worker's buffer for the JSON body of a single publish's answer (at most about 330 B: a topic
// is at most 255 B): emptied, never shrunk, so that an answer allocates nothing for its body
// (each worker is one thread; the body is copied into the response before the next is built).
std::string& answer_scratch() {
    thread_local std::string buf;
    buf.clear();
    return buf;
}

// A publish the broker did not apply, or may not have: the answer, or false when it was applied.
// The trace id of a W3C `traceparent` header; a missing or malformed one is no trace (a
// tracing header never fails a publish).
wire::trace_id trace_of(const net::http_request& req) {
    return wire::parse_traceparent(req.header(known::traceparent)).value_or(wire::trace_id{});
}

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
        std::string body = R"({"results":[)";
        for (std::size_t i = 0; i < results.size(); ++i) {
            if (i) body += ',';
            append_result_json(body, results[i]);
        }
        body += "]}";
        resp.send(200, "application/json", body);
    }
};

void count_result(net::worker_context& w, const broker::publish_result& r) {
    if (r.status == broker::publish_status::ok) {
        w.counters.messages_published.add();
        if (w.webhooks) w.webhooks->publish(r.topic, r.epoch, r.offset, "http", "");
    } else if (r.status == broker::publish_status::duplicate) {
        w.counters.duplicates.add();
    }
}

using publish_fn = std::function<void(std::vector<hub::publish_request>)>;

// The publish hook (hooks.publish), asked about every message of the request at once; `go` runs
// with the messages (their data replaced where the backend said so) only when it allowed all of
// them, so a request is published whole or not at all. Without the hook, `go` runs now.
void ask_publish_hook(net::worker_context& w, const net::http_request& req,
                      std::vector<hub::publish_request> ps, const net::responder& r,
                      std::size_t max_bytes, publish_fn go) {
    if (!w.hooks || !w.hooks->enabled(net::hook_kind::publish)) {
        go(std::move(ps));
        return;
    }
    struct pending {
        std::vector<hub::publish_request> ps;
        std::size_t waiting = 0;
        std::optional<net::hook_verdict> refusal;
        bool too_large = false;
    };
    auto p = std::make_shared<pending>();
    p->ps = std::move(ps);
    p->waiting = p->ps.size();
    const auto headers = w.hooks->forwarded(net::hook_kind::publish, req);
    const net::hook_client_info who{req.client_ip, "http", "", ""};
    for (std::size_t i = 0; i < p->ps.size(); ++i) {
        const auto& m = p->ps[i];
        w.hooks->call(net::hook_kind::publish,
                      net::hook_caller::publish_body(who, headers, m.topic, m.kind, m.payload),
                      headers, [p, i, r, max_bytes, go](net::hook_verdict v) {
                          if (!v.allow) {
                              if (!p->refusal) p->refusal = std::move(v);
                          } else if (v.data) {
                              p->too_large = p->too_large || v.data->second.size() > max_bytes;
                              p->ps[i].kind = v.data->first;
                              p->ps[i].payload = std::move(v.data->second);
                          }
                          if (--p->waiting != 0) return;
                          if (p->refusal && p->refusal->from_error)
                              r.error(reject::unavailable,
                                      "the application's backend did not answer; retry",
                                      "Retry-After: 1\r\n");
                          else if (p->refusal)
                              r.error(reject::forbidden, p->refusal->message);
                          else if (p->too_large)
                              r.error(reject::payload_too_large,
                                      "the application's data exceeds limits.max_message_bytes");
                          else
                              go(std::move(p->ps));
                      });
    }
}
}  // namespace

void api::publish_one(net::worker_context& w, net::http_request& req, const std::string& topic,
                      net::responder r) {
    if (!wire::is_valid_topic(topic)) {
        r.error(reject::bad_topic, wire::k_topic_rule);
        return;
    }
    hub::publish_request p;
    p.topic = topic;
    const auto type = media_type(req.header(known::content_type));
    if (is_media(type, "application/json")) {
        if (!json::accept(req.body())) {
            r.error(reject::bad_json, "body is not valid JSON (Content-Type: application/json)");
            return;
        }
        p.kind = hub::payload_kind::json;
    } else if (is_media(type, "application/octet-stream")) {
        p.kind = hub::payload_kind::binary;
    } else if (type.empty() || is_media(type, "text/", true) ||
               is_media(type, "application/x-www-form-urlencoded")) {
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
        if (!wire::is_valid_event_name(*e)) {
            r.error(reject::bad_event, "event must be 1..64 bytes of [A-Za-z0-9_.:-]");
            return;
        }
        p.event = *e;
    }
    if (auto k = req.header(known::idempotency_key); !k.empty()) {
        if (!wire::is_valid_idempotency_key(k)) {
            r.error(reject::bad_idempotency_key,
                    "Idempotency-Key must be 1..128 printable ASCII bytes");
            return;
        }
        p.idempotency_key = std::string(k);
    }
    // The request is not read again: its body becomes the payload without a copy.
    p.payload = std::move(req.raw.body());
    p.trace = trace_of(req);
    // Timed from here (the request is read and valid) to the broker's answer, whatever it is;
    // a publish hook's call is part of it.
    const auto t0 = clock::now();
    if (!w.hooks || !w.hooks->enabled(net::hook_kind::publish)) {
        send_one(w, std::move(p), std::move(r), t0);
        return;
    }
    std::vector<hub::publish_request> one;
    one.push_back(std::move(p));
    ask_publish_hook(w, req, std::move(one), r, w.cfg.limits.max_message_bytes,
                     [this, &w, r, t0](std::vector<hub::publish_request> ps) {
                         send_one(w, std::move(ps[0]), net::responder(r), t0);
                     });
}

void api::send_one(net::worker_context& w, hub::publish_request&& p, net::responder&& r,
                   time_point t0) {
    const auto trace = p.trace;
    broker_.publish(w.id, std::move(p),
                    [&w, r = std::move(r), t0, trace](broker::publish_result res) {
                        w.counters.publish_duration.observe(clock::now() - t0);
                        broker::log_published(trace, w.id, res);
                        if (refuse(r, res.status)) return;
                        count_result(w, res);
                        auto& body = answer_scratch();
                        append_result_json(body, res);
                        r.send(200, "application/json", body);
                    });
}

void api::publish_json(net::worker_context& w, const net::http_request& req, net::responder r) {
    const auto type = media_type(req.header(known::content_type));
    if (!type.empty() && !is_media(type, "application/json")) {
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
    std::string header_key(req.header(known::idempotency_key));
    const auto trace = trace_of(req);  // one header: every message of the batch carries it
    if (!header_key.empty() && !wire::is_valid_idempotency_key(header_key)) {
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
        base.trace = trace;
        switch (wire::read_payload(m, base.kind, base.payload)) {
            case wire::payload_status::ok: break;
            case wire::payload_status::bad_base64:
                return problem = "data_base64 must be standard base64", false;
            case wire::payload_status::missing:
                return problem = "a message needs data or data_base64", false;
        }
        if (base.payload.size() > w.cfg.limits.max_message_bytes) {
            problem_kind = reject::payload_too_large;
            return problem = "message exceeds limits.max_message_bytes", false;
        }
        if (auto e = m.find("event"); e != m.end()) {
            if (!e->is_string() || !wire::is_valid_event_name(e->get_ref<const std::string&>())) {
                problem_kind = reject::bad_event;
                return problem = "event must be 1..64 bytes of [A-Za-z0-9_.:-]", false;
            }
            base.event = e->get<std::string>();
        }
        if (auto k = m.find("idempotency_key"); k != m.end()) {
            if (!k->is_string() ||
                !wire::is_valid_idempotency_key(k->get_ref<const std::string&>())) {
                problem_kind = reject::bad_idempotency_key;
                return problem = "idempotency_key must be 1..128 printable ASCII bytes", false;
            }
            base.idempotency_key = k->get<std::string>();
        } else {
            base.idempotency_key = header_key;
        }
        for (auto& t : topics) {
            if (!wire::is_valid_topic(t)) {
                problem_kind = reject::bad_topic;
                return problem = std::string(wire::k_topic_rule), false;
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
    ask_publish_hook(w, req, std::move(out), r, w.cfg.limits.max_message_bytes,
                     [this, &w, r](std::vector<hub::publish_request> ps) {
                         publish_batch(w, std::move(ps), r);
                     });
}

void api::publish_batch(net::worker_context& w, std::vector<hub::publish_request> out,
                        net::responder r) {
    auto b = std::make_shared<batch>(r);
    b->results.resize(out.size());
    b->remaining = out.size();
    const auto t0 = clock::now();
    for (std::size_t i = 0; i < out.size(); ++i) {
        const auto trace = out[i].trace;
        broker_.publish(w.id, std::move(out[i]), [&w, b, i, t0, trace](broker::publish_result res) {
            broker::log_published(trace, w.id, res);
            if (res.status == broker::publish_status::unknown)
                b->failed = res.status;
            else if (res.status != broker::publish_status::unavailable)
                count_result(w, res);
            else if (b->failed == broker::publish_status::ok)
                b->failed = res.status;
            b->results[i] = std::move(res);
            if (--b->remaining > 0) return;
            w.counters.publish_duration.observe(clock::now() - t0);
            b->finish();
        });
    }
}

}  // namespace herald::app
