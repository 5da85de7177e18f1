#include "herald/auth/context.hpp"
#include "herald/broker/broker.hpp"
#include "herald/broker/cursor.hpp"
#include "herald/common/text.hpp"
#include "herald/hub/topic.hpp"
#include "herald/net/sessions.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::net {

using metrics::reject;
using json = nlohmann::json;

namespace {
// Frames every session sends; static, so queuing them costs no allocation.
const std::string k_ping_frame = ws::make_frame(ws::opcode::ping, {});
// How long a slow consumer's close frame may take to reach it, behind what the kernel already
// holds for it: a client that reads slowly sees 1008, one that never reads is closed here.
constexpr milliseconds k_slow_close_grace{2000};
}  // namespace

ws_session::ws_session(worker_context& w, link l, std::string leftover,
                       std::unique_ptr<auth::token_claims> claims, std::string stream_ip)
    : connection(w, std::move(l), metrics::transport::ws),
      in_(std::move(leftover)),
      last_seen_(clock::now()),
      last_ping_(clock::now()),
      claims_(std::move(claims)),
      stream_ip_(std::move(stream_ip)) {}

ws_session::~ws_session() {
    if (w_.auth && !stream_ip_.empty()) w_.auth->release_stream(stream_ip_);
}

bool ws_session::revoke(std::string_view user) {
    if (!claims_ || claims_->sub != user || close_sent_) return false;
    end_with(4002, "disconnected");
    return true;
}

bool ws_session::take_message_token(time_point now) {
    const double rate = w_.cfg.limits.ws_messages_per_s;
    if (rate <= 0) return true;
    const double burst = 2 * rate;
    if (msg_refill_ == time_point{}) {
        msg_tokens_ = burst;
    } else {
        const double dt = std::chrono::duration<double>(now - msg_refill_).count();
        msg_tokens_ = std::min(burst, msg_tokens_ + dt * rate);
    }
    msg_refill_ = now;
    if (msg_tokens_ < 1) return false;
    msg_tokens_ -= 1;
    return true;
}

bool ws_session::admit_message(bool tell) {
    if (take_message_token(clock::now())) return true;
    w_.counters.inc(reject::rate_limited);
    // A client that keeps going after being told is cut off.
    if (++rate_strikes_ > 2 * w_.cfg.limits.ws_messages_per_s + 10) {
        end_with(ws::close_code::policy, "rate limited");
        return false;
    }
    if (tell) reply_error({}, "rate_limited", "too many messages; slow down");
    return false;
}

void ws_session::start(std::string_view accept, bool subprotocol,
                       const std::vector<std::string>& topics) {
    // Subscribed before the 101 leaves: a publish the client makes after the upgrade is ordered
    // after these subscriptions on every topic's owner.
    for (const auto& t : topics) subscribe_topic(t, std::nullopt, {}, false);
    std::string r =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
        "Upgrade\r\nSec-WebSocket-Accept: ";
    r += accept;
    r += "\r\n";
    if (subprotocol) r += "Sec-WebSocket-Protocol: herald.v1\r\n";
    r += "\r\n";
    enqueue(chunk::of_string(std::move(r)), true);
    if (!in_.empty()) {
        std::string early = std::move(in_);
        in_.clear();
        consume(early.data(), early.size());
        if (closed()) return;
    }
    wait_readable();
}

ws_session::ws_sub* ws_session::find(const std::string& topic) {
    for (auto& s : subs_)
        if (s->topic == topic) return s.get();
    return nullptr;
}

void ws_session::subscribe_topic(const std::string& topic, std::optional<hub::stream_pos> since,
                                 std::string reply_id, bool reply) {
    auto s = std::make_unique<ws_sub>();
    s->owner = this;
    s->topic = topic;
    s->since = std::move(since);
    s->reply_id = std::move(reply_id);
    s->reply = reply;
    w_.shard.subscribe(*s);
    w_.counters.subscriptions.add(1);
    subs_.push_back(std::move(s));
}

void ws_session::on_subscribed(hub::subscription& sub, const hub::subscribe_result& r) {
    auto& s = static_cast<ws_sub&>(sub);
    if (r.resume_requested)
        (r.recovered ? w_.counters.resumes_recovered : w_.counters.resumes_failed).add();
    if (!s.reply) return;
    std::string o = "{\"type\":\"ok\"";
    if (!s.reply_id.empty()) o += ",\"id\":" + s.reply_id;
    o += ",\"op\":\"subscribe\",\"topic\":\"" + s.topic + "\",\"epoch\":\"" + r.epoch +
         "\",\"offset\":" + std::to_string(r.top);
    if (r.resume_requested) {
        o += std::string(",\"recovered\":") + (r.recovered ? "true" : "false");
        if (!r.recovered) o += ",\"reason\":" + json_quote(r.reason);
    }
    o += '}';
    send_json(std::move(o));
}

void ws_session::on_message(hub::subscription&, const hub::message_ptr& m) {
    if (close_sent_) return;
    if (enqueue(chunk::of_shared(m, m->ws_frames))) w_.counters.frames_delivered.add();
}

void ws_session::on_reset(hub::subscription&, const hub::message_ptr& m) {
    if (close_sent_) return;
    enqueue(chunk::of_shared(m, m->ws_frames));
}

void ws_session::on_refused(hub::subscription& sub, const std::string& reason) {
    w_.counters.inc(reject::quota_exceeded);
    auto& s = static_cast<ws_sub&>(sub);
    std::string o = "{\"type\":\"error\"";
    if (!s.reply_id.empty()) o += ",\"id\":" + s.reply_id;
    o += ",\"code\":\"quota_exceeded\",\"topic\":\"" + s.topic +
         "\",\"message\":" + json_quote(reason) + "}";
    send_json(std::move(o));
    // Not inside a fan-out: the shard called from its answer handler, so erasing is safe.
    for (auto it = subs_.begin(); it != subs_.end(); ++it) {
        if (it->get() != &s) continue;
        subs_.erase(it);
        w_.counters.subscriptions.add(-1);
        break;
    }
}

void ws_session::send_json(std::string text) {
    if (close_sent_) return;
    std::string frame;
    frame.reserve(text.size() + 10);
    ws::append_frame(frame, ws::opcode::text, text);
    enqueue(chunk::of_string(std::move(frame)));
}

void ws_session::reply_error(const std::string& id, std::string_view code,
                             std::string_view message) {
    std::string o = "{\"type\":\"error\"";
    if (!id.empty()) o += ",\"id\":" + id;
    o += ",\"code\":" + json_quote(code) + ",\"message\":" + json_quote(message) + "}";
    send_json(std::move(o));
}

void ws_session::send_close(std::uint16_t code, std::string_view reason) {
    if (close_sent_) return;
    close_sent_ = true;
    enqueue(chunk::of_string(ws::make_close_frame(code, reason)), true);
}

void ws_session::fail(std::uint16_t code, std::string_view reason, reject r) {
    w_.counters.inc(r);
    end_with(code, reason);
}

void ws_session::end_with(std::uint16_t code, std::string_view reason, milliseconds grace) {
    send_close(code, reason);
    close_after_flush(grace);
    closing_ = true;
    ping_pending_ = false;
    // A message being assembled will never complete: its memory goes now.
    std::string().swap(frag_);
    in_frag_ = false;
    frag_charge_ = 0;
}

void ws_session::answer_ping() {
    if (close_sent_) {
        ping_pending_ = false;
        return;
    }
    // The queue still refers to the last pong (not all written): this ping waits for the next
    // flush (or tick), and a newer ping replaces it meanwhile.
    if (pong_ && pong_.use_count() > 1) return;
    if (!pong_) pong_ = std::make_shared<std::string>();
    pong_->clear();
    ws::append_frame(*pong_, ws::opcode::pong, ping_payload_);
    ping_pending_ = false;
    // Forced past limits.max_queued_bytes: at most this one frame (<= 127 bytes) is ever queued.
    enqueue(chunk::of_shared(pong_, *pong_), true);
}

void ws_session::on_flush_begin() {
    if (ping_pending_ && !closed() && !writing()) answer_ping();
}

std::size_t ws_session::session_held_bytes() const noexcept {
    return in_.capacity() + frag_.capacity() + ping_payload_.capacity() +
           (pong_ ? pong_->capacity() : 0);
}

void ws_session::on_readable() {
    for (int i = 0; i < 16 && !closed(); ++i) {
        error_code ec;
        std::size_t n = read_some(ec);
        if (ec) {
            close_now();  // EOF or reset: nobody to say goodbye to
            return;
        }
        if (n == 0) break;
        last_seen_ = clock::now();
        awaiting_pong_ = false;
        consume(w_.scratch().data(), n);
    }
    if (closed()) return;
    // Pings read in this batch: answered by the flush already coming when output is pending,
    // else now (which schedules one).
    if (ping_pending_ && idle_output()) answer_ping();
    wait_readable();
}

void ws_session::consume(char* data, std::size_t n) {
    // Closing: nothing the client sends matters now. It is still read, so that the socket is
    // not closed with unread bytes (which would reset it and discard our close frame).
    if (closing_) return;
    bool stop = false;
    if (in_.empty()) {
        std::size_t used = parse_frames(data, n, stop);
        if (!stop && used < n) in_.assign(data + used, n - used);
    } else {
        in_.append(data, n);
        std::size_t used = parse_frames(in_.data(), in_.size(), stop);
        if (stop || closing_)
            in_.clear();
        else
            in_.erase(0, used);
    }
    if (in_.capacity() > 4096 && in_.empty()) std::string().swap(in_);
}

std::size_t ws_session::parse_frames(char* buf, std::size_t n, bool& stop) {
    std::size_t pos = 0;
    while (pos < n && !closed()) {
        ws::frame f;
        const std::uint64_t limit = w_.cfg.limits.max_client_message_bytes;
        const std::uint64_t room = in_frag_ ? limit - std::min(limit, frag_charge_) : limit;
        auto r = ws::parse_client_frame(std::string_view(buf + pos, n - pos), room, f);
        if (r == ws::parse_result::incomplete) break;
        if (r == ws::parse_result::protocol_error) {
            fail(ws::close_code::protocol_error, "protocol error", reject::ws_protocol_error);
            stop = true;
            return n;
        }
        if (r == ws::parse_result::too_big) {
            fail(ws::close_code::too_big, "message too big", reject::ws_message_too_big);
            stop = true;
            return n;
        }
        if (n - pos < f.header_bytes + f.payload_bytes) break;  // payload not all here yet
        char* payload = buf + pos + f.header_bytes;
        ws::unmask(payload, f.payload_bytes, f.mask);
        pos += f.header_bytes + f.payload_bytes;
        if (!on_frame(f, payload)) {
            stop = true;
            return n;
        }
    }
    return pos;
}

bool ws_session::on_frame(const ws::frame& f, char* payload) {
    const std::string_view data(payload, f.payload_bytes);
    switch (f.op) {
        case ws::opcode::ping:
            // Control frames count toward the message rate, so a ping or pong flood ends in a
            // 1008 instead of costing CPU for as long as it lasts.
            if (!admit_message(false)) return !closing_;
            ping_payload_.assign(data);
            ping_pending_ = true;
            return true;
        case ws::opcode::pong: admit_message(false); return !closing_;
        case ws::opcode::close: {
            auto ci = ws::parse_close_payload(data);
            if (!ci.valid) {
                fail(ws::close_code::protocol_error, "invalid close frame",
                     reject::ws_protocol_error);
                return false;
            }
            // Echo the code (RFC 6455 5.5.1), or end our own close handshake.
            end_with(ci.code ? ci.code : ws::close_code::normal, {});
            return false;
        }
        case ws::opcode::text:
        case ws::opcode::binary:
            if (in_frag_) {
                fail(ws::close_code::protocol_error, "new message inside a fragmented one",
                     reject::ws_protocol_error);
                return false;
            }
            if (!f.fin) {
                in_frag_ = true;
                frag_op_ = f.op;
                frag_.assign(data);
                frag_charge_ = f.header_bytes + f.payload_bytes;
                return true;
            }
            break;
        case ws::opcode::cont:
            if (!in_frag_) {
                fail(ws::close_code::protocol_error, "continuation without a message",
                     reject::ws_protocol_error);
                return false;
            }
            // Each fragment's header counts too, so empty continuations cannot go on forever.
            frag_charge_ += f.header_bytes + f.payload_bytes;
            if (frag_charge_ > w_.cfg.limits.max_client_message_bytes) {
                fail(ws::close_code::too_big, "message too big", reject::ws_message_too_big);
                return false;
            }
            frag_.append(data);
            if (!f.fin) return true;
            break;
    }
    if (close_sent_) return true;  // closing: data is ignored
    const bool fragmented = f.op == ws::opcode::cont;
    const ws::opcode op = fragmented ? frag_op_ : f.op;
    std::string assembled;
    std::string_view message = data;
    if (fragmented) {
        assembled = std::move(frag_);
        frag_.clear();
        in_frag_ = false;
        frag_charge_ = 0;
        message = assembled;
    }
    if (op == ws::opcode::binary) {
        w_.counters.inc(reject::ws_bad_op);
        w_.counters.inc(reject::binary_not_supported);
        reply_error({}, "binary_not_supported", "ops are JSON text frames");
        return true;
    }
    if (!is_valid_utf8(message)) {
        fail(ws::close_code::invalid_payload, "invalid utf-8", reject::ws_invalid_utf8);
        return false;
    }
    on_text(message);
    return !closed() && !closing_;
}

void ws_session::on_text(std::string_view text) {
    auto bad = [this](const std::string& id, std::string_view code, std::string_view message) {
        w_.counters.inc(reject::ws_bad_op);
        if (auto r = metrics::reject_named(code)) w_.counters.inc(*r);  // and under its own code
        reply_error(id, code, message);
    };
    if (!admit_message(true)) return;
    json op = json::parse(text, nullptr, false);
    if (op.is_discarded()) {
        bad({}, "bad_json", "an op is one JSON object per text frame");
        return;
    }
    if (!op.is_object()) {
        bad({}, "bad_request", "an op is a JSON object, e.g. {\"op\":\"ping\"}");
        return;
    }
    std::string id;
    if (auto it = op.find("id"); it != op.end()) {
        if (!it->is_number() && !it->is_string()) {
            bad({}, "bad_request", "id must be a number or a string");
            return;
        }
        id = it->dump(-1, ' ', false, json::error_handler_t::replace);
    }
    auto opit = op.find("op");
    if (opit == op.end() || !opit->is_string()) {
        bad(id, "bad_request", "missing op");
        return;
    }
    const auto& name = opit->get_ref<const std::string&>();
    if (name == "ping") {
        send_json("{\"type\":\"ok\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                  ",\"op\":\"ping\"}");
        return;
    }
    if (name == "refresh") {
        auto tok = op.find("token");
        if (tok == op.end() || !tok->is_string() || !w_.auth) {
            bad(id, "bad_request", "refresh needs a token (a string)");
            return;
        }
        auto r = w_.auth->verify_token(tok->get_ref<const std::string&>());
        if (!r.ok() || (claims_ && r.claims.sub != claims_->sub)) {
            w_.counters.inc(reject::unauthorized);
            reply_error(id, "unauthorized",
                        r.ok() ? "the token is for another user"
                               : "invalid token: " + std::string(auth::to_string(r.status)));
            return;
        }
        claims_ = std::make_unique<auth::token_claims>(std::move(r.claims));
        std::string o = "{\"type\":\"ok\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                        ",\"op\":\"refresh\"";
        if (claims_->exp)
            o += ",\"exp\":" + std::to_string(claims_->exp->time_since_epoch().count());
        send_json(o + "}");
        return;
    }
    if (name != "subscribe" && name != "unsubscribe" && name != "publish") {
        bad(id, "unknown_op",
            "unknown op '" + name + "' (subscribe, unsubscribe, publish, ping, refresh)");
        return;
    }
    auto tit = op.find("topic");
    if (tit == op.end() || !tit->is_string()) {
        bad(id, "bad_request", name + " needs a topic (a string)");
        return;
    }
    if (!hub::is_valid_topic(tit->get_ref<const std::string&>())) {
        w_.counters.inc(reject::bad_topic);
        reply_error(id, "bad_topic", hub::k_topic_rule);
        return;
    }
    const auto& topic = tit->get_ref<const std::string&>();

    if (name == "subscribe") {
        std::optional<hub::stream_pos> since;
        if (auto sit = op.find("since"); sit != op.end() && !sit->is_null()) {
            const auto e = sit->is_object() ? sit->find("epoch") : sit->end();
            const auto o = sit->is_object() ? sit->find("offset") : sit->end();
            if (!sit->is_object() || e == sit->end() || o == sit->end() || !e->is_string() ||
                !broker::is_valid_epoch(e->get_ref<const std::string&>()) ||
                !o->is_number_unsigned()) {
                bad(id, "bad_since",
                    "since must be {\"epoch\": \"...\", \"offset\": <unsigned integer>}");
                return;
            }
            since = hub::stream_pos{e->get<std::string>(), o->get<std::uint64_t>()};
        }
        if (find(topic)) {
            bad(id, "bad_request", "already subscribed to '" + topic + "'");
            return;
        }
        if (w_.auth && !w_.auth->may_read(claims_.get(), topic)) {
            w_.counters.inc(reject::forbidden);
            reply_error(id, "forbidden", "not allowed to subscribe to '" + topic + "'");
            return;
        }
        if (subs_.size() >= w_.cfg.limits.max_topics_per_connection) {
            w_.counters.inc(reject::too_many_topics);
            reply_error(id, "too_many_topics",
                        "at most " + std::to_string(w_.cfg.limits.max_topics_per_connection) +
                            " topics per connection");
            return;
        }
        subscribe_topic(topic, std::move(since), id, true);
        return;
    }
    if (name == "unsubscribe") {
        for (auto it = subs_.begin(); it != subs_.end(); ++it) {
            if ((*it)->topic != topic) continue;
            auto& s = **it;
            // A subscribe not answered yet never will be (the owner's answer finds it gone):
            // answer it here, before the unsubscribe's ok, so every op gets exactly one reply.
            if (s.reply && !s.active) {
                std::string o = "{\"type\":\"error\"";
                if (!s.reply_id.empty()) o += ",\"id\":" + s.reply_id;
                o += ",\"code\":\"unsubscribed\",\"topic\":\"" + topic +
                     "\",\"message\":\"unsubscribed before the subscription was confirmed\"}";
                send_json(std::move(o));
            }
            w_.shard.unsubscribe(s);
            w_.counters.subscriptions.add(-1);
            subs_.erase(it);
            send_json("{\"type\":\"ok\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                      ",\"op\":\"unsubscribe\",\"topic\":\"" + topic + "\"}");
            return;
        }
        bad(id, "not_subscribed", "not subscribed to '" + topic + "'");
        return;
    }
    // publish
    // ws.client_publish opens a topic to every client; a token's publish patterns to its holder.
    const bool token_may = w_.auth && claims_ && w_.auth->policy.can_publish(claims_.get(), topic);
    if (!token_may && !hub::any_match(w_.cfg.ws.client_publish, topic)) {
        w_.counters.inc(reject::forbidden);
        reply_error(id, "forbidden",
                    "clients may not publish to '" + topic + "' (see ws.client_publish)");
        return;
    }
    hub::publish_request req;
    req.topic = topic;
    if (auto eit = op.find("event"); eit != op.end()) {
        if (!eit->is_string() || !hub::is_valid_event_name(eit->get_ref<const std::string&>())) {
            bad(id, "bad_event", "event must be 1..64 bytes of [A-Za-z0-9_.:-]");
            return;
        }
        req.event = eit->get<std::string>();
    }
    // A client retrying a publish whose acknowledgement it lost sends the same key (see
    // clients/js): the broker answers the first publish's offset and does not deliver it again.
    if (auto kit = op.find("idempotency_key"); kit != op.end()) {
        if (!kit->is_string() ||
            !hub::is_valid_idempotency_key(kit->get_ref<const std::string&>())) {
            bad(id, "bad_idempotency_key", "idempotency_key must be 1..128 printable ASCII bytes");
            return;
        }
        req.idempotency_key = kit->get<std::string>();
    }
    if (auto dit = op.find("data_base64"); dit != op.end()) {
        auto bytes =
            dit->is_string() ? base64_decode(dit->get_ref<const std::string&>()) : std::nullopt;
        if (!bytes) {
            bad(id, "bad_request", "data_base64 must be standard base64");
            return;
        }
        req.kind = hub::payload_kind::binary;
        req.payload = std::move(*bytes);
    } else if (auto dit2 = op.find("data"); dit2 != op.end()) {
        if (dit2->is_string()) {
            req.kind = hub::payload_kind::text;
            req.payload = dit2->get<std::string>();
        } else {
            req.kind = hub::payload_kind::json;
            req.payload = dit2->dump(-1, ' ', false, json::error_handler_t::replace);
        }
    } else {
        bad(id, "bad_request", "publish needs data or data_base64");
        return;
    }
    if (req.payload.size() > w_.cfg.limits.max_message_bytes) {
        w_.counters.inc(reject::payload_too_large);
        reply_error(id, "payload_too_large", "message exceeds limits.max_message_bytes");
        return;
    }
    w_.counters.publish_requests.add();
    std::weak_ptr<connection> weak = shared_from_this();
    w_.broker.publish(w_.id, std::move(req), [weak, id](broker::publish_result r) {
        auto self = std::static_pointer_cast<ws_session>(weak.lock());
        if (!self || self->closed()) return;
        if (r.status == broker::publish_status::unavailable) {
            self->reply_error(id, "unavailable", "the broker is unavailable; retry");
            return;
        }
        if (r.status == broker::publish_status::unknown) {
            // With an idempotency_key, sending the same publish again is the safe retry.
            self->reply_error(id, "unknown",
                              "Redis did not answer in time: the message may or may not be "
                              "published; retry with the same idempotency_key");
            return;
        }
        const bool duplicate = r.status == broker::publish_status::duplicate;
        if (duplicate)
            self->w_.counters.duplicates.add();
        else
            self->w_.counters.messages_published.add();
        self->send_json("{\"type\":\"ok\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                        ",\"op\":\"publish\",\"topic\":\"" + r.topic + "\",\"epoch\":\"" + r.epoch +
                        "\",\"offset\":" + std::to_string(r.offset) +
                        (duplicate ? ",\"duplicate\":true}" : "}"));
    });
}

void ws_session::on_tick(time_point now) {
    if (close_sent_) return;  // the close deadline governs
    if (claims_ && claims_->exp && std::chrono::system_clock::now() >= *claims_->exp) {
        end_with(4001, "token expired");
        return;
    }
    // A ping left pending because its predecessor's pong was still queued when the last flush
    // began, and nothing has been written since.
    if (ping_pending_ && idle_output()) answer_ping();
    if (awaiting_pong_) {
        // Any frame from the client clears awaiting_pong_ (on_readable).
        if (now - last_ping_ >= w_.cfg.ws.pong_timeout) {
            w_.counters.pong_timeouts.add();
            end_with(ws::close_code::policy, "pong timeout");
        }
        return;
    }
    if (now - last_ping_ >= w_.cfg.ws.ping_interval) {
        last_ping_ = now;
        awaiting_pong_ = true;
        enqueue(chunk::of_static(k_ping_frame), true);
    }
}

void ws_session::on_drain() {
    send_close(ws::close_code::going_away, "going away");
    arm_close_deadline(milliseconds(2000));
}

void ws_session::on_slow_consumer() {
    // Every later flush pass calls this again while the connection is slow: it must write the
    // close frame then, not drop it again.
    if (slow_closing_) {
        flush();
        return;
    }
    slow_closing_ = true;
    // What is queued is dropped (a chunk partly on the wire finishes), so the close frame comes
    // right after what the kernel already holds.
    drop_queue();
    close_sent_ = false;
    end_with(ws::close_code::policy, "slow consumer", k_slow_close_grace);
}

void ws_session::on_close() {
    for (auto& s : subs_) w_.shard.unsubscribe(*s);
    w_.counters.subscriptions.add(-static_cast<std::int64_t>(subs_.size()));
    subs_.clear();
}

}  // namespace herald::net
