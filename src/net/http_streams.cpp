// The requests that turn an HTTP connection into a stream: admission (per-address limits, after
// the router's authorization decision), the WebSocket upgrade and the SSE start (both hand the
// socket over to a new session), and the long-poll (a poll_session held by this connection).
// The request loop itself is http_session.cpp.
#include "herald/auth/context.hpp"
#include "herald/common/text.hpp"
#include "herald/config/config.hpp"
#include "herald/wire/position.hpp"
#include "herald/wire/ws_deflate.hpp"
#include "sessions.hpp"

#include <boost/beast/http/rfc7230.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cctype>

namespace herald::net {

using metrics::reject;

namespace {
// Does a comma-separated header list contain `token` (case-insensitive)?
bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = trim_ows(list.substr(0, comma));
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

// Beast's websocket::is_upgrade() on a request_head: HTTP/1.1 or later, GET, the first
// Connection field's tokens name "upgrade" and the first Upgrade field's name "websocket".
bool is_websocket_upgrade(const request_head& req) {
    namespace http = boost::beast::http;
    const auto tokens = [&req](std::string_view name) {
        return http::token_list{req.header(name)};
    };
    return req.version() >= 11 && req.method() == http::verb::get &&
           tokens("Connection").exists("upgrade") && tokens("Upgrade").exists("websocket");
}

}  // namespace

std::string http_session::client_ip(const http_request& req) {
    if (peer_text_.empty()) peer_text_ = peer_.is_unspecified() ? "unknown" : peer_.to_string();
    if (!w_.auth) return peer_text_;
    // The header lines only; the decision is auth's.
    boost::container::small_vector<std::string_view, 2> xff;
    req.raw.each(request_head::known::x_forwarded_for, "X-Forwarded-For",
                 [&xff](std::string_view v) { xff.push_back(v); });
    return w_.auth->client_ip(peer_, peer_text_, xff);
}

// Per-address stream limits; authorization was decided by the router (handle()).
bool http_session::admit_stream(std::uint64_t seq, const http_request& req,
                                std::string& stream_ip) {
    auto* a = w_.auth;
    if (!a) return true;
    if (!hooked_ip_.empty()) {  // gate_stream() took the slot before asking the backend
        stream_ip = std::exchange(hooked_ip_, {});
        return true;
    }
    const std::string& ip = req.client_ip;
    const auto adm = a->admit_stream(ip);
    if (!adm.ok()) {
        w_.rejects.note(adm.status == auth::context::admission::new_streams_per_ip
                            ? reject_log::reason::new_connections_per_ip
                            : reject_log::reason::connections_per_ip,
                        ip);
        a->audit->refused("rate_limited", ip, req.target.path);
        fail_request(seq, reject::rate_limited, adm.message, false,
                     "Retry-After: " + std::to_string(adm.retry_after_s) + "\r\n");
        return false;
    }
    stream_ip = ip;
    return true;
}

std::optional<milliseconds> http_session::requested_heartbeat(std::uint64_t seq,
                                                              const http_request& req,
                                                              milliseconds lo, milliseconds hi) {
    const auto v = req.target.get("heartbeat");
    if (!v) return milliseconds(0);
    const auto d = config::parse_duration(*v);
    if (!d || *d < lo || *d > hi) {
        fail_request(seq, reject::bad_request,
                     "heartbeat must be a duration (30s, 2m) between " +
                         config::format_duration(lo) + " and " + config::format_duration(hi),
                     false);
        return std::nullopt;
    }
    return *d;
}

bool http_session::upgrade_websocket(std::uint64_t seq, http_request& req,
                                     const std::vector<std::string>& topics,
                                     std::unique_ptr<auth::token_claims> claims) {
    if (!is_websocket_upgrade(req.raw)) {
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
    const auto ping =
        requested_heartbeat(seq, req, w_.cfg.ws.ping_interval_min, w_.cfg.ws.ping_interval_max);
    if (!ping) return false;
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return false;
    const bool subprotocol = has_token(req.header("Sec-WebSocket-Protocol"), "herald.v1");
    std::optional<ws::deflate_offer> deflate;
    if (w_.cfg.compression.enabled || !w_.cfg.compression.namespaces.empty()) {
        // Several header lines form one list, in order.
        std::string offers;
        req.raw.each("Sec-WebSocket-Extensions", [&offers](std::string_view v) {
            if (!offers.empty()) offers += ',';
            offers.append(v);
        });
        deflate = ws::pick_deflate_offer(offers);
    }
    auto accept = ws::accept_key(key);
    slots_.clear();
    auto l = hand_over();
    in_.erase(0, in_head_);
    in_head_ = 0;
    // What the client sent after the request, if anything; an idle WebSocket keeps no input buffer
    // (moving an empty in_ would hand over the request's capacity).
    std::string leftover;
    if (!in_.empty()) leftover = std::move(in_);
    ws_options options;
    options.deflate_bits = deflate ? deflate->server_max_window_bits : 0;
    options.ping_interval = *ping;
    auto s = std::make_shared<ws_session>(w_, std::move(l), std::move(leftover), std::move(claims),
                                          std::move(stream_ip), options);
    s->start(accept, subprotocol, topics, deflate ? ws::deflate_response(*deflate) : std::string());
    return true;
}

bool http_session::start_sse(std::uint64_t seq, http_request& req,
                             const std::vector<std::string>& topics,
                             std::unique_ptr<auth::token_claims> claims) {
    std::optional<std::vector<wire::stream_pos>> since;
    std::string last_id(req.header("Last-Event-ID"));
    if (last_id.empty()) last_id = req.target.get("last_event_id").value_or("");
    if (!last_id.empty()) {
        since = wire::parse_event_id(last_id, topics.size());
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
    const auto heartbeat =
        requested_heartbeat(seq, req, w_.cfg.sse.heartbeat_min, w_.cfg.sse.heartbeat_max);
    if (!heartbeat) return false;
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return false;
    // Allowed origins get their CORS headers on the stream's response.
    std::string cors = cors_;
    slots_.clear();
    auto l = hand_over();
    const bool join_leave = req.target.get("presence").value_or("") == "1";
    auto s = std::make_shared<sse_session>(w_, std::move(l), std::move(claims),
                                           std::move(stream_ip), *heartbeat);
    s->start(topics, since, cors, join_leave);
    return true;
}

void http_session::start_poll(std::uint64_t seq, http_request& req,
                              const std::vector<std::string>& topics,
                              std::unique_ptr<auth::token_claims> claims, bool keep_alive) {
    // One cursor for one topic; for several, one epoch:offset per topic joined by ',' (as an SSE
    // stream's Last-Event-ID).
    std::optional<std::vector<wire::stream_pos>> since;
    if (auto s = req.target.get("since"); s && !s->empty()) {
        since = wire::parse_event_id(*s, topics.size());
        if (!since) {
            fail_request(seq, reject::bad_cursor,
                         "since must be the cursor of an earlier answer (epoch:offset), one per "
                         "topic joined by ',' in the order of the topics",
                         keep_alive);
            return;
        }
    }
    std::string stream_ip;
    if (!admit_stream(seq, req, stream_ip)) return;
    poll_ = std::make_unique<poll_session>(*this, w_, seq, keep_alive, topics, since,
                                           std::move(stream_ip), claims ? claims->sub : "");
    set_transport(metrics::transport::poll);
    poll_->start();
}

void http_session::on_poll_due() {
    asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(shared_from_this())] {
        self->finish_poll();
    });
}

std::unique_ptr<poll_session> http_session::end_poll() {
    set_transport(metrics::transport::http);
    return std::move(poll_);
}

void http_session::on_poll_refused(const std::string& reason) {
    auto p = end_poll();  // the shard already unsubscribed it
    fail_request(p->seq(), reject::quota_exceeded, reason, p->keep_alive(), "Retry-After: 1\r\n");
}

bool http_session::revoke(std::string_view user) {
    if (!poll_ || !poll_->belongs_to(user)) return false;
    auto p = end_poll();
    p->cancel();
    fail_request(p->seq(), reject::disconnected, "disconnected by the server", false);
    return true;
}

void http_session::finish_poll() {
    if (!poll_ || closed()) return;
    auto p = end_poll();
    const std::string body = p->finish();
    const bool keep_alive = p->keep_alive() && !w_.state.draining.load(std::memory_order_relaxed);
    complete(p->seq(), make_response(200, "application/json", body, keep_alive), keep_alive);
}

}  // namespace herald::net
