#include "herald/auth/context.hpp"
#include "herald/broker/broker.hpp"
#include "herald/broker/cursor.hpp"
#include "herald/common/text.hpp"
#include "herald/hub/topic.hpp"
#include "herald/net/sessions.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <spdlog/spdlog.h>

namespace herald::net {

namespace http = boost::beast::http;
using metrics::reject;

namespace {
// Requests dispatched and not yet answered, per connection; past it nothing more is parsed (or
// read) until an answer comes.
constexpr std::size_t k_max_pipelined = 32;
// Requests parsed and dispatched per loop turn; the rest waits for a later turn (posted), so a
// burst of pipelined requests on one connection cannot starve the others on its worker.
constexpr std::size_t k_max_per_turn = 64;
// Reads per readiness event (each up to the 64 KiB scratch buffer).
constexpr int k_max_reads_per_turn = 16;
// An idle connection gives back an input buffer grown by a burst.
constexpr std::size_t k_keep_input_capacity = 16 * 1024;

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Does a comma-separated header list contain `token` (case-insensitive)?
bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = trim(list.substr(0, comma));
        if (item.size() == token.size() &&
            std::equal(item.begin(), item.end(), token.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == b;
            }))
            return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

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

std::string_view http_request::header(std::string_view name) const {
    auto it = raw.find(name);
    return it == raw.end() ? std::string_view{}
                           : std::string_view(it->value().data(), it->value().size());
}

void responder::send(int status, std::string_view content_type, std::string_view body,
                     std::string_view extra_headers) const {
    if (auto s = session_.lock())
        s->complete(seq_,
                    make_response(status, content_type, body, keep_alive_,
                                  extra_ + std::string(extra_headers)),
                    keep_alive_);
}

void responder::error(reject reason, std::string_view message,
                      std::string_view extra_headers) const {
    if (auto s = session_.lock())
        s->fail_request(seq_, reason, message, keep_alive_, extra_ + std::string(extra_headers));
}

http_session::http_session(worker_context& w, link l)
    : connection(w, std::move(l), metrics::transport::http) {}

void http_session::start() {
    arm_idle();
    // A TLS handshake is part of the request head: it gets the header timeout, not the idle one.
    if (handshaking()) deadline_ = clock::now() + w_.cfg.http.header_timeout;
    wait_readable();
}

void http_session::arm_idle() {
    reading_request_ = false;
    deadline_ = clock::now() + w_.cfg.http.idle_timeout;
}

std::size_t http_session::out_mark() const noexcept {
    return w_.cfg.limits.max_queued_bytes / 2;
}

bool http_session::may_read() const noexcept {
    if (stop_reading_) return true;  // input is read and dropped: holding none, it costs nothing
    if (draining_ || peer_done_) return false;
    // Enough input for the parser to finish a request head, and room for its answer.
    // A posted process() means this turn's share of requests is used up.
    return unparsed() <= w_.cfg.http.max_header_bytes && slots_.size() < k_max_pipelined &&
           !waiting_room_ && !process_posted_ && output_bytes() + slot_bytes_ < out_mark();
}

std::size_t http_session::session_held_bytes() const noexcept {
    return in_.capacity() + parsed_bytes_ + slot_bytes_;
}

void http_session::on_readable() {
    // Read (bounded per turn) and parse as the bytes come, so that unparsed input stays within
    // one request head and one read (may_read()).
    for (int i = 0; i < k_max_reads_per_turn; ++i) {
        error_code ec;
        std::size_t n = read_some(ec);
        if (ec) {
            peer_done_ = true;
            break;
        }
        if (n == 0) break;
        if (stop_reading_) continue;  // discard: an error answer is on its way, then we close
        if (!reading_request_) {
            reading_request_ = true;
            deadline_ = clock::now() + w_.cfg.http.header_timeout;
        }
        in_.append(w_.scratch().data(), n);
        process();
        if (closed()) return;
        if (!may_read()) break;
    }
    settle();
}

void http_session::settle() {
    if (closed()) return;
    if (peer_done_ || draining_) {
        // Nothing more will be read: close once everything read is answered.
        if (slots_.empty() && !poll_ && !process_posted_ && !waiting_room_) {
            close_after_flush();  // answers already queued still leave, then a lingering close
            release_hold();
            return;
        }
        // Nothing reads any more, so nothing keeps this session alive while the API or a poll
        // answers: hold a reference until the last answer is queued (release_hold()).
        hold(hold_session);
        return;
    }
    wait_readable();  // parked while may_read() says no; the answers leaving resume it
}

void http_session::schedule_process() {
    if (processing_ || process_posted_ || closed()) return;
    process_posted_ = true;
    asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(shared_from_this())] {
        self->process_posted_ = false;
        if (self->closed()) return;
        self->process();
        self->settle();
    });
}

void http_session::on_output_room() {
    waiting_room_ = false;
    process();
    settle();
}

void http_session::process() {
    // Answers completed while this runs only queue their bytes (complete() does not call back
    // here), so the depth of the stack does not depend on the input.
    if (processing_ || process_posted_) return;  // a posted one goes on where this would
    processing_ = true;
    draining_ = draining_ || w_.state.draining.load(std::memory_order_relaxed);
    std::size_t dispatched = 0;
    bool yield = false;
    while (!closed() && !stop_reading_ && !poll_ && slots_.size() < k_max_pipelined &&
           unparsed() > 0) {
        if (output_bytes() + slot_bytes_ >= out_mark()) {
            // The client does not read its answers: parse (and read) nothing more until half
            // of them have left.
            waiting_room_ = true;
            want_room(out_mark() / 2);
            break;
        }
        if (dispatched == k_max_per_turn) {
            yield = true;
            break;
        }
        if (!parser_) {
            parser_ = std::make_unique<parser_t>();
            parser_->header_limit(static_cast<std::uint32_t>(w_.cfg.http.max_header_bytes));
            parser_->body_limit(w_.cfg.limits.max_message_bytes);
            parser_->eager(true);
            if (!reading_request_) {
                reading_request_ = true;
                deadline_ = clock::now() + w_.cfg.http.header_timeout;
            }
        }
        error_code ec;
        std::size_t used = parser_->put(asio::buffer(in_.data() + in_head_, unparsed()), ec);
        in_head_ += used;
        parsed_bytes_ += used;
        if (ec == http::error::need_more) {
            if (used == 0) break;
            continue;
        }
        if (ec) {
            std::uint64_t seq = next_seq_++;
            slots_.push_back(slot{seq, false, true, {}});
            stop_reading_ = true;
            drop_input();
            if (ec == http::error::header_limit)
                fail_request(seq, reject::headers_too_large,
                             "request headers exceed http.max_header_bytes", false);
            else if (ec == http::error::body_limit)
                fail_request(seq, reject::payload_too_large,
                             "body exceeds limits.max_message_bytes", false);
            else
                fail_request(seq, reject::bad_request, "malformed HTTP request: " + ec.message(),
                             false);
            break;
        }
        if (parser_->is_done()) {
            auto req = parser_->release();
            parser_.reset();
            parsed_bytes_ = 0;
            arm_idle();  // the next request gets its own header_timeout from its first byte
            ++dispatched;
            if (draining_) {
                answer_draining(unparsed() == 0);
            } else {
                handle(std::move(req));
            }
        }
    }
    const bool starved = !closed() && !stop_reading_ && !poll_ && !waiting_room_ && !yield &&
                         slots_.size() < k_max_pipelined;
    if (draining_ && starved && (parser_ || unparsed() > 0)) {
        // Part of a request (a head, half a body): the rest is not waited for.
        answer_draining(true);
    }
    if (!closed()) {
        in_.erase(0, in_head_);
        in_head_ = 0;
        if (in_.empty() && in_.capacity() > k_keep_input_capacity) std::string().swap(in_);
    }
    processing_ = false;
    if (yield) schedule_process();
}

void http_session::drop_input() {
    in_.clear();
    in_head_ = 0;
    parser_.reset();
    parsed_bytes_ = 0;
}

void http_session::answer_draining(bool last) {
    std::uint64_t seq = next_seq_++;
    slots_.push_back(slot{seq, false, true, {}});
    if (last) {
        stop_reading_ = true;
        drop_input();
    }
    fail_request(seq, reject::draining,
                 "the server is shutting down; this request was not processed, retry it", !last,
                 "Retry-After: 1\r\n");
}

void http_session::fail_request(std::uint64_t seq, reject reason, std::string_view message,
                                bool keep_alive, std::string_view extra_headers) {
    auto spec = error_for(reason);
    w_.counters.inc(reason);
    complete(
        seq,
        make_error(spec.status, spec.code, message, keep_alive, cors_ + std::string(extra_headers)),
        keep_alive);
}

void http_session::release_hold() {
    unhold(hold_session);
}

void http_session::complete(std::uint64_t seq, std::string response, bool keep_alive) {
    for (auto& s : slots_) {
        if (s.seq == seq) {
            s.ready = true;
            s.keep_alive = keep_alive;
            s.response = std::move(response);
            slot_bytes_ += s.response.size();
            break;
        }
    }
    bool close = false;
    std::size_t done = 0;
    while (done < slots_.size() && slots_[done].ready) {
        auto& s = slots_[done];
        slot_bytes_ -= s.response.size();
        enqueue(chunk::of_string(std::move(s.response)));
        ++done;
        if (!s.keep_alive) {
            close = true;
            break;
        }
    }
    slots_.erase(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(done));
    if (close) {
        // Requests pipelined behind this one are not answered: Connection: close says so.
        stop_reading_ = true;
        for (const auto& s : slots_) slot_bytes_ -= s.response.size();
        slots_.clear();
        close_after_flush();
        return;
    }
    // Never process() from here: an answer given synchronously inside process() would recurse
    // once per pipelined request. process() goes on by itself, or on a later turn.
    if (done == 0) return;
    if (slots_.empty() && !parser_ && unparsed() == 0) arm_idle();  // idle from the last answer
    schedule_process();
}

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
        if (!hub::is_valid_topic(topics[i])) {
            fail_request(seq, reject::bad_topic, std::string(hub::k_topic_rule), keep_alive);
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

void http_session::handle(beast_request raw) {
    const std::uint64_t seq = next_seq_++;
    slots_.push_back(slot{seq, false, true, {}});
    if (refuse_) {
        fail_request(seq, *refuse_, "too many connections; retry later", false,
                     "Retry-After: 1\r\n");
        return;
    }
    const bool keep_alive = raw.keep_alive() && !w_.state.draining.load(std::memory_order_relaxed);
    auto target = parse_target(std::string_view(raw.target().data(), raw.target().size()));
    if (!target) {
        fail_request(seq, reject::bad_request, "malformed request target", keep_alive);
        return;
    }
    http_request req{std::move(raw), std::move(*target), {}};
    const auto& path = req.target.path;
    cors_.clear();
    struct clear_cors {
        std::string& c;
        ~clear_cors() { c.clear(); }
    } cleanup{cors_};
    if (auto origin = req.header("Origin"); !origin.empty() && w_.auth) {
        auto h = auth::cors_headers(w_.auth->origins, origin, req.method() == http::verb::options);
        if (!h) {
            fail_request(seq, reject::forbidden, "origin not allowed", keep_alive);
            return;
        }
        for (const auto& [k, v] : *h) cors_ += k + ": " + v + "\r\n";
    }
    const auto* ep = find_endpoint(path);
    if (!ep) {
        fail_request(seq, reject::not_found, "no such endpoint: " + path, keep_alive);
        return;
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
        if (!hub::is_valid_topic(topics.back())) {
            fail_request(seq, reject::bad_topic, std::string(hub::k_topic_rule), keep_alive);
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
        const auth::credentials cred{req.header("Authorization"), req.header("Cookie"),
                                     req.target.query};
        auto d = w_.auth->authorize(ep->access, cred, topics, req.client_ip);
        if (!d.ok()) {
            // The one rate-limited verdict is the publish rate (auth::context::authorize_key).
            if (d.status == auth::verdict::rate_limited)
                w_.rejects.note(reject_log::reason::publish_rate, req.client_ip);
            refuse(*this, seq, d, held ? false : keep_alive);
            return;
        }
        reader = std::move(d.reader);
    }
    switch (ep->id) {
        case endpoint_id::ws: upgrade_websocket(seq, req, topics, std::move(reader)); return;
        case endpoint_id::sse: start_sse(seq, req, topics, std::move(reader)); return;
        case endpoint_id::poll: start_poll(seq, req, topics, std::move(reader), keep_alive); return;
        default: break;
    }
    w_.api.handle(w_, req,
                  responder(std::static_pointer_cast<http_session>(shared_from_this()), seq,
                            keep_alive, cors_));
}

std::string http_session::client_ip(const http_request& req) {
    if (peer_.is_unspecified()) {  // once per connection, not per request
        error_code ec;
        auto ep = socket_.remote_endpoint(ec);
        if (ec) return "unknown";
        peer_ = auth::unmap(ep.address());
        peer_text_ = peer_.to_string();
    }
    const auto& peer = peer_;
    if (!w_.auth || w_.auth->proxies.empty() || !w_.auth->proxies.contains(peer)) return peer_text_;
    // Several X-Forwarded-For lines form one list, in order.
    std::string xff;
    for (const auto& f : req.raw) {
        if (!boost::beast::iequals(f.name_string(), "X-Forwarded-For")) continue;
        if (!xff.empty()) xff += ',';
        xff.append(f.value().data(), f.value().size());
    }
    return auth::client_address(peer, xff, w_.auth->proxies).to_string();
}

// Per-address stream limits; authorization was decided by the router (handle()).
bool http_session::admit_stream(std::uint64_t seq, const http_request& req,
                                std::string& stream_ip) {
    auto* a = w_.auth;
    if (!a) return true;
    const std::string& ip = req.client_ip;
    std::int64_t retry = 1;
    if (!a->allow_new_stream(ip, retry)) {
        w_.rejects.note(reject_log::reason::new_connections_per_ip, ip);
        fail_request(seq, reject::rate_limited, "too many new connections from this address", false,
                     "Retry-After: " + std::to_string(retry) + "\r\n");
        return false;
    }
    if (!a->acquire_stream(ip)) {
        w_.rejects.note(reject_log::reason::connections_per_ip, ip);
        fail_request(seq, reject::rate_limited, "too many connections from this address", false,
                     "Retry-After: 1\r\n");
        return false;
    }
    stream_ip = ip;
    return true;
}

bool http_session::upgrade_websocket(std::uint64_t seq, http_request& req,
                                     const std::vector<std::string>& topics,
                                     std::unique_ptr<auth::token_claims> claims) {
    if (!boost::beast::websocket::is_upgrade(req.raw)) {
        fail_request(seq, reject::bad_request,
                     "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
                     false, "Upgrade: websocket\r\n");
        return false;
    }
    auto key = req.header("Sec-WebSocket-Key");
    if (key.size() != 24 || !base64_decode(key)) {
        fail_request(seq, reject::bad_request, "missing or malformed Sec-WebSocket-Key", false);
        return false;
    }
    if (req.header("Sec-WebSocket-Version") != "13") {
        fail_request(seq, reject::bad_request, "unsupported WebSocket version (use 13)", false,
                     "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    if (slots_.size() != 1 || !idle_output()) {
        fail_request(seq, reject::bad_request,
                     "an upgrade must not be pipelined behind other requests", false);
        return false;
    }
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return false;
    const bool subprotocol = has_token(req.header("Sec-WebSocket-Protocol"), "herald.v1");
    auto accept = ws::accept_key(key);
    slots_.clear();
    auto l = hand_over();
    in_.erase(0, in_head_);
    in_head_ = 0;
    auto s = std::make_shared<ws_session>(w_, std::move(l), std::move(in_), std::move(claims),
                                          std::move(stream_ip));
    s->start(accept, subprotocol, topics);
    return true;
}

bool http_session::start_sse(std::uint64_t seq, http_request& req,
                             const std::vector<std::string>& topics,
                             std::unique_ptr<auth::token_claims> claims) {
    std::optional<std::vector<hub::stream_pos>> since;
    std::string last_id(req.header("Last-Event-ID"));
    if (last_id.empty()) last_id = req.target.get("last_event_id").value_or("");
    if (!last_id.empty()) {
        since = broker::parse_event_id(last_id, topics.size());
        if (!since) {
            fail_request(seq, reject::bad_last_event_id,
                         "Last-Event-ID must be one epoch:offset per topic, joined by ',' in the "
                         "order of the topics",
                         false);
            return false;
        }
    }
    if (slots_.size() != 1 || !idle_output()) {
        fail_request(seq, reject::bad_request,
                     "a stream must not be pipelined behind other requests", false);
        return false;
    }
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return false;
    // Allowed origins get their CORS headers on the stream's response.
    std::string cors = cors_;
    slots_.clear();
    auto l = hand_over();
    auto s =
        std::make_shared<sse_session>(w_, std::move(l), std::move(claims), std::move(stream_ip));
    s->start(topics, since, cors);
    return true;
}

void http_session::start_poll(std::uint64_t seq, http_request& req,
                              const std::vector<std::string>& topics,
                              std::unique_ptr<auth::token_claims> claims, bool keep_alive) {
    if (topics.size() != 1) {
        fail_request(seq, reject::bad_topic, "long-polling takes exactly one topic", keep_alive);
        return;
    }
    std::optional<hub::stream_pos> since;
    if (auto s = req.target.get("since"); s && !s->empty()) {
        since = broker::parse_position(*s);
        if (!since) {
            fail_request(seq, reject::bad_cursor,
                         "since must be a cursor epoch:offset from an earlier answer", keep_alive);
            return;
        }
    }
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return;
    poll_ = std::make_unique<poll_state>();
    poll_->stream_ip = std::move(stream_ip);
    if (claims) poll_->user = claims->sub;
    poll_->seq = seq;
    poll_->keep_alive = keep_alive;
    poll_->deadline = clock::now() + w_.cfg.poll.timeout;
    poll_->sub.owner = this;
    poll_->sub.topic = topics[0];
    poll_->sub.since = since;
    set_transport(metrics::transport::poll);
    w_.shard.subscribe(poll_->sub);
}

void http_session::on_subscribed(hub::subscription& s, const hub::subscribe_result& r) {
    if (!poll_ || &s != &poll_->sub) return;
    poll_->answered = true;
    if (r.resume_requested) {
        if (r.recovered) {
            w_.counters.resumes_recovered.add();
        } else {
            w_.counters.resumes_failed.add();
            poll_->resume_failed = true;
            poll_->reason = r.reason;
            // Answer at once, from the top of the stream.
            if (!poll_->finish_posted) {
                poll_->finish_posted = true;
                asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(
                                        shared_from_this())] { self->finish_poll(); });
            }
        }
    }
}

void http_session::on_reset(hub::subscription& s, const hub::message_ptr& m) {
    if (!poll_ || &s != &poll_->sub) return;
    // Whatever was collected is older than the reset: answer the reset alone, from its position.
    poll_->messages.clear();
    poll_->resume_failed = true;
    poll_->reason = m->reset_reason;
    if (!poll_->finish_posted) {
        poll_->finish_posted = true;
        asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(shared_from_this())] {
            self->finish_poll();
        });
    }
}

void http_session::on_refused(hub::subscription& s, const std::string& reason) {
    if (!poll_ || &s != &poll_->sub) return;
    auto p = std::move(poll_);  // the shard already unsubscribed it
    end_poll(p);
    fail_request(p->seq, reject::quota_exceeded, reason, p->keep_alive, "Retry-After: 1\r\n");
}

bool http_session::revoke(std::string_view user) {
    if (!poll_ || poll_->user.empty() || poll_->user != user) return false;
    auto p = std::move(poll_);
    w_.shard.unsubscribe(p->sub);
    end_poll(p);
    fail_request(p->seq, reject::disconnected, "disconnected by the server", false);
    return true;
}

// A long-poll is over: its concurrent-stream slot is free and the connection is plain HTTP again.
void http_session::end_poll(std::unique_ptr<poll_state>& p) {
    if (w_.auth && !p->stream_ip.empty()) w_.auth->release_stream(p->stream_ip);
    set_transport(metrics::transport::http);
}

void http_session::on_message(hub::subscription& s, const hub::message_ptr& m) {
    if (!poll_ || &s != &poll_->sub || poll_->resume_failed) return;
    poll_->messages.push_back(m);
    w_.counters.frames_delivered.add();
    // Answer at the end of this loop turn, so a replay and a burst leave in one answer.
    if (!poll_->finish_posted) {
        poll_->finish_posted = true;
        asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(shared_from_this())] {
            self->finish_poll();
        });
    }
}

void http_session::finish_poll() {
    if (!poll_ || closed()) return;
    auto p = std::move(poll_);
    const auto& s = p->sub;
    // Read the position before unsubscribing (which deactivates the subscription).
    const std::string epoch = s.epoch.empty() && s.since ? s.since->epoch : s.epoch;
    const std::uint64_t cursor = s.active ? s.last_offset : (s.since ? s.since->offset : 0);
    w_.shard.unsubscribe(p->sub);
    end_poll(p);
    std::string body = "{\"topic\":\"" + s.topic + "\",\"epoch\":\"" + epoch + "\"";
    if (s.since || p->resume_failed)
        body += std::string(",\"recovered\":") + (p->resume_failed ? "false" : "true");
    if (p->resume_failed) body += ",\"reason\":" + json_quote(p->reason);
    body += ",\"cursor\":\"" + epoch + ":" + std::to_string(cursor) + "\",\"messages\":[";
    bool first = true;
    for (const auto& m : p->messages) {
        if (!first) body += ',';
        first = false;
        body += "{\"offset\":" + std::to_string(m->offset);
        if (!m->event.empty()) body += ",\"event\":\"" + m->event + "\"";
        body += ',';
        body += m->data_json_member();
        body += '}';
    }
    body += "]}";
    const bool keep_alive = p->keep_alive && !w_.state.draining.load(std::memory_order_relaxed);
    complete(p->seq, make_response(200, "application/json", body, keep_alive), keep_alive);
}

void http_session::on_close() {
    release_hold();
    if (poll_) {
        w_.shard.unsubscribe(poll_->sub);
        if (w_.auth && !poll_->stream_ip.empty()) w_.auth->release_stream(poll_->stream_ip);
        poll_.reset();
    }
}

void http_session::on_tick(time_point now) {
    if (poll_) {
        if (now >= poll_->deadline) finish_poll();
        return;
    }
    if (!slots_.empty()) return;  // the API is answering
    if (waiting_room_ || (output_bytes() > 0 && !stop_reading_)) {
        // Answers are owed to a client that does not read them: it gets as long as an idle one.
        if (now - last_write_ >= w_.cfg.http.idle_timeout) close_now();
        return;
    }
    if (now < deadline_) return;
    if (reading_request_) {
        w_.counters.inc(reject::header_timeout);
        stop_reading_ = true;
        drop_input();
        auto spec = error_for(reject::header_timeout);
        enqueue(chunk::of_string(
            make_error(spec.status, spec.code, "request not received in time", false)));
        close_after_flush(milliseconds(1000));
    } else {
        if (handshaking()) w_.counters.tls_errors.add(1);  // a TLS handshake that never finished
        close_now();
    }
}

void http_session::on_drain() {
    draining_ = true;
    if (poll_) {
        poll_->keep_alive = false;
        finish_poll();
    }
    if (closed() || stop_reading_) return;  // already answering its last request
    if (slots_.empty() && !parser_ && unparsed() == 0 && idle_output() && !process_posted_) {
        close_now();  // idle keep-alive connection: nothing is owed
        return;
    }
    // Dispatched requests get their answers; requests read but not dispatched (whole or in
    // part) get 503 `draining`; then the connection closes (settle()).
    process();
    settle();
}

}  // namespace herald::net
