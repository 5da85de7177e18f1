#include "herald/auth/context.hpp"
#include "herald/broker/broker.hpp"
#include "herald/wire/position.hpp"
#include "herald/common/text.hpp"
#include "sessions.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/topic.hpp"
#include "herald/wire/ws_deflate.hpp"
#include "herald/net/webhooks.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::net {

using metrics::reject;

namespace {
// Frames every session sends; static, so queuing them costs no allocation.
const std::string k_ping_frame = ws::make_frame(ws::opcode::ping, {});
// How long a slow consumer's close frame may take to reach it, behind what the kernel already
// holds for it: a client that reads slowly sees 1008, one that never reads is closed here.
constexpr milliseconds k_slow_close_grace{2000};

// Whether `topic`'s messages go compressed to a connection that negotiated permessage-deflate.
bool compressed_topic(const config::settings& cfg, std::string_view topic) noexcept {
    for (const auto& r : cfg.compression.namespaces)
        if (wire::pattern_match(r.pattern, topic)) return r.enabled;
    return cfg.compression.enabled;
}
}  // namespace

ws_session::ws_session(worker_context& w, link l, std::string leftover,
                       std::unique_ptr<auth::token_claims> claims, std::string stream_ip,
                       ws_options options)
    : holding_connection(w, std::move(l), metrics::transport::ws),
      ping_interval_ms_(static_cast<std::uint32_t>(std::min<milliseconds::rep>(
          (options.ping_interval.count() ? options.ping_interval : w.cfg.ws.ping_interval).count(),
          UINT32_MAX))),
      last_seen_(clock::now()),
      claims_(std::move(claims)),
      stream_ip_(stream_ip),
      who_(presence_identity(w, claims_.get())) {
    deflate_bits_ = options.deflate_bits;
    if (!leftover.empty()) input().partial = std::move(leftover);
}

ws_session::~ws_session() {
    if (w_.auth && !stream_ip_.empty()) w_.auth->release_stream(std::string(stream_ip_.view()));
}

bool ws_session::revoke(std::string_view user) {
    if (!claims_ || claims_->sub != user || close_sent_) return false;
    set_end_reason(disconnect_reason::revoked);
    end_with(4002, "disconnected");
    return true;
}

bool ws_session::take_message_token(time_point now) {
    const double rate = w_.cfg.limits.ws_messages_per_s;
    if (rate <= 0) return true;
    // A new bucket starts full, as the one a reload replaced (the limit changed) does.
    auto& r = input().rate;
    if (!r) r.emplace(ws_rate{{rate, 2 * rate, now}});
    if (r->bucket.rate() != rate) r->bucket = auth::token_bucket(rate, 2 * rate, now);
    return r->bucket.try_take(now);
}

double ws_session::strikes_now(time_point now) const noexcept {
    if (!input_ || !input_->rate) return 0;
    const auto& r = *input_->rate;
    const double quiet = std::chrono::duration<double>(now - r.strikes_at).count();
    return std::max(0.0, r.strikes - quiet * w_.cfg.limits.ws_messages_per_s / 2);
}

bool ws_session::admit_message(bool tell) {
    const auto now = clock::now();
    if (take_message_token(now)) return true;
    w_.counters.inc(reject::rate_limited);
    // A client that keeps going after being told is cut off. Strikes leak away at half the
    // message rate, so a client that once overran the limit is forgiven within seconds, while
    // one that keeps sending at more than 1.5 times the rate still reaches the cut-off.
    const double rate = w_.cfg.limits.ws_messages_per_s;
    auto& r = *input_->rate;  // made by the take above
    r.strikes = static_cast<float>(strikes_now(now) + 1);
    r.strikes_at = now;
    if (r.strikes > 2 * rate + 10) {
        set_end_reason(disconnect_reason::rate_limited);
        end_with(ws::close_code::policy, "rate limited");
        return false;
    }
    if (tell) reply_error({}, "rate_limited", "too many messages; slow down");
    return false;
}

void ws_session::start(std::string_view accept, bool subprotocol,
                       const std::vector<std::string>& topics, std::string_view extensions) {
    // Subscribed before the 101 leaves: a publish the client makes after the upgrade is ordered
    // after these subscriptions on every topic's owner.
    for (const auto& t : topics) subscribe_topic(t, std::nullopt, {}, false);
    std::string r =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
        "Upgrade\r\nSec-WebSocket-Accept: ";
    r += accept;
    r += "\r\n";
    if (subprotocol) r += "Sec-WebSocket-Protocol: herald.v1\r\n";
    if (!extensions.empty()) {
        r += "Sec-WebSocket-Extensions: ";
        r += extensions;
        r += "\r\n";
    }
    r += "\r\n";
    enqueue(chunk::of_string(std::move(r)), true);
    release_queue_when_flushed();
    if (input_ && !input_->partial.empty()) {
        std::string early = std::move(input_->partial);
        input_->partial.clear();
        consume(early.data(), early.size());
        if (closed()) return;
    }
    wait_readable();
}

ws_session::ws_sub* ws_session::find(const std::string& topic) {
    return subs_.find_if([&](const ws_sub& s) { return s.topic == topic; });
}

void ws_session::subscribe_topic(const std::string& topic, std::optional<wire::stream_pos> since,
                                 std::string reply_id, bool reply, bool join_leave,
                                 std::string info) {
    auto& s = subs_.emplace(this);
    s.join_leave = join_leave;
    s.topic = topic;
    s.resume_from(std::move(since));
    s.set_op(std::move(reply_id), std::move(info));
    s.set_flag(ws_sub::k_reply, reply);
    s.rule = delivery_rule_for(w_.cfg, topic);
    s.set_flag(ws_sub::k_compress, deflate_bits_ && compressed_topic(w_.cfg, topic));
    w_.shard.subscribe(s);
    w_.counters.subscriptions.add(1);
}

void ws_session::on_settings_changed() {
    subs_.for_each([&](ws_sub& s) {
        rebind(s, s.topic);
        s.set_flag(ws_sub::k_compress, deflate_bits_ && compressed_topic(w_.cfg, s.topic));
    });
}

void ws_session::on_subscribed(hub::subscription& sub, const hub::subscribe_result& r) {
    auto& s = static_cast<ws_sub&>(sub);
    w_.record_subscribe(s, r, metrics::transport::ws, &reconnected_);
    // Answered now: the op's state goes with this reply.
    const auto op = std::move(s.op);
    if (!s.reply()) return;
    std::string o = "{\"type\":\"ok\"";
    if (op && !op->reply_id.empty()) o += ",\"id\":" + op->reply_id;
    o += ",\"op\":\"subscribe\",\"topic\":\"" + s.topic + "\",\"epoch\":\"" + r.epoch +
         "\",\"offset\":" + std::to_string(r.top);
    if (op && !op->info.empty()) o += ",\"info\":" + op->info;
    if (r.resume_requested) {
        o += std::string(",\"recovered\":") + (r.recovered ? "true" : "false");
        if (!r.recovered) o += ",\"reason\":" + wire::json_quote(r.reason);
    }
    o += '}';
    send_json(std::move(o));
}

std::string_view ws_session::frame_for(const ws_sub& s, const hub::message_ptr& m) {
    std::string_view bytes = m->ws_frames;
    if (s.compress() && bytes.size() >= w_.cfg.compression.min_bytes) {
        // Built once per message, by the first worker that gets here; shared like ws_frames.
        const auto& d = m->ws_deflated(w_.cfg.compression.level);
        if (!d.bytes.empty() && d.window_bits <= deflate_bits_) bytes = d.bytes;
    }
    return bytes;
}

void ws_session::on_message(hub::subscription& sub, const hub::message_ptr& m) {
    if (close_sent_) return;
    auto& s = static_cast<ws_sub&>(sub);
    const std::string_view bytes = frame_for(s, m);
    if (hold_if_wanted(s, m, bytes.size())) return;
    if (enqueue_message(m, bytes, s.live(*m))) w_.counters.frames_delivered.add();
}

void ws_session::send_held(held_slot& slot, const hub::message_ptr& m) {
    if (close_sent_) return;
    auto& s = static_cast<ws_sub&>(slot);
    if (enqueue_message(m, frame_for(s, m), s.live(*m))) w_.counters.frames_delivered.add();
}

void ws_session::send_skipped(held_slot& slot, std::uint64_t from, std::uint64_t to) {
    // Offsets from..to were dropped: the client continues after `to`, and its resume logic
    // reloads (protocol.md, slow consumers).
    auto& s = static_cast<ws_sub&>(slot);
    std::string body = wire::reset_body(s.topic, s.epoch, to, "slow consumer");
    body.pop_back();
    body +=
        ",\"skipped\":{\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to) + "}}";
    send_json(wire::reset_frame_json(body));
}

void ws_session::on_reset(hub::subscription& sub, const hub::message_ptr& m) {
    if (close_sent_) return;
    // The stream moved on: what was held back (and skipped) belongs to the old position.
    auto& s = static_cast<ws_sub&>(sub);
    drop_held(s);
    enqueue(chunk::of_shared(m, m->ws_frames));
}

void ws_session::on_refused(hub::subscription& sub, const std::string& reason) {
    w_.counters.inc(reject::quota_exceeded);
    auto& s = static_cast<ws_sub&>(sub);
    if (w_.auth) w_.auth->audit->refused("quota_exceeded", stream_ip_, "/ws " + s.topic);
    std::string o = "{\"type\":\"error\"";
    if (!s.reply_id().empty()) o.append(",\"id\":").append(s.reply_id());
    o += ",\"code\":\"quota_exceeded\",\"topic\":\"" + s.topic +
         "\",\"message\":" + wire::json_quote(reason) + "}";
    send_json(std::move(o));
    // Not inside a fan-out: the shard called from its answer handler, so erasing is safe.
    subs_.erase(s);
    w_.counters.subscriptions.add(-1);
}

void ws_session::send_json(std::string_view text) {
    if (close_sent_) return;
    std::string frame;
    frame.reserve(text.size() + 10);
    ws::append_frame(frame, ws::opcode::text, text);
    enqueue(chunk::of_string(std::move(frame)));
}

void ws_session::reply_error(const std::string& id, std::string_view code,
                             std::string_view message) {
    send_json(wire::ws_error(id, code, message));
}

void ws_session::send_close(std::uint16_t code, std::string_view reason) {
    if (close_sent_) return;
    close_sent_ = true;
    enqueue(chunk::of_string(ws::make_close_frame(code, reason)), true);
}

void ws_session::fail(std::uint16_t code, std::string_view reason, reject r) {
    w_.counters.inc(r);
    set_end_reason(disconnect_reason::protocol_error);
    end_with(code, reason);
}

void ws_session::end_with(std::uint16_t code, std::string_view reason, milliseconds grace) {
    send_close(code, reason);
    close_after_flush(grace);
    closing_ = true;
    ping_pending_ = false;
    // A message being assembled will never complete: its memory goes now.
    if (input_) {
        std::string().swap(input_->frag);
        input_->frag_charge = 0;
    }
    in_frag_ = false;
    frag_compressed_ = false;
}

void ws_session::answer_ping() {
    if (close_sent_) {
        ping_pending_ = false;
        return;
    }
    // The queue still refers to the last pong (not all written): this ping waits for the next
    // flush (or tick), and a newer ping replaces it meanwhile.
    auto& in = input();
    if (in.pong && in.pong.use_count() > 1) return;
    if (!in.pong) in.pong = std::make_shared<std::string>();
    in.pong->clear();
    ws::append_frame(*in.pong, ws::opcode::pong, in.ping_payload);
    ping_pending_ = false;
    // Forced past limits.max_queued_bytes: at most this one frame (<= 127 bytes) is ever queued.
    enqueue(chunk::of_shared(in.pong, *in.pong), true);
}

void ws_session::trim_input() noexcept {
    if (!input_ || ping_pending_ || in_frag_ || !input_->partial.empty() || input_->rate) return;
    // The queue still refers to the pong: a new pong must not be made before it leaves.
    if (input_->pong && input_->pong.use_count() > 1) return;
    input_.reset();
}

void ws_session::on_flush_begin() {
    if (ping_pending_ && !closed() && !writing()) answer_ping();
}

std::size_t ws_session::session_held_bytes() const noexcept {
    std::size_t n = held_total();
    if (input_) {
        n += sizeof(ws_input) + input_->partial.capacity() + input_->frag.capacity() +
             input_->ping_payload.capacity() + (input_->pong ? input_->pong->capacity() : 0);
    }
    return n;
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
    if (!input_ || input_->partial.empty()) {
        std::size_t used = parse_frames(data, n, stop);
        if (!stop && used < n) input().partial.assign(data + used, n - used);
    } else {
        auto& in = input_->partial;
        in.append(data, n);
        std::size_t used = parse_frames(in.data(), in.size(), stop);
        if (stop || closing_)
            in.clear();
        else
            in.erase(0, used);
    }
    // Only a partial frame keeps a buffer: the next read goes to the worker's scratch buffer.
    if (input_ && input_->partial.empty()) std::string().swap(input_->partial);
}

std::size_t ws_session::parse_frames(char* buf, std::size_t n, bool& stop) {
    std::size_t pos = 0;
    while (pos < n && !closed()) {
        ws::frame f;
        const std::uint64_t limit = w_.cfg.limits.max_client_message_bytes;
        const std::uint64_t room = in_frag_ ? limit - std::min(limit, input_->frag_charge) : limit;
        auto r = ws::parse_client_frame(std::string_view(buf + pos, n - pos), room, f,
                                        deflate_bits_ != 0);
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
            input().ping_payload.assign(data);
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
                frag_compressed_ = f.rsv1;
                input().frag.assign(data);
                input_->frag_charge = f.header_bytes + f.payload_bytes;
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
            input_->frag_charge += f.header_bytes + f.payload_bytes;
            if (input_->frag_charge > w_.cfg.limits.max_client_message_bytes) {
                fail(ws::close_code::too_big, "message too big", reject::ws_message_too_big);
                return false;
            }
            input_->frag.append(data);
            if (!f.fin) return true;
            break;
    }
    if (close_sent_) return true;  // closing: data is ignored
    const bool fragmented = f.op == ws::opcode::cont;
    const ws::opcode op = fragmented ? frag_op_ : f.op;
    if (!fragmented) return f.rsv1 ? on_compressed(op, data) : on_data_message(op, data);
    const std::string assembled = std::move(input_->frag);
    const bool compressed = frag_compressed_;
    input_->frag.clear();
    input_->frag_charge = 0;
    in_frag_ = false;
    frag_compressed_ = false;
    return compressed ? on_compressed(op, assembled) : on_data_message(op, assembled);
}

bool ws_session::on_compressed(ws::opcode op, std::string_view compressed) {
    // Transient: inflated, handled and freed within this call, never more than the cap (+1).
    std::string message;
    switch (ws::inflate_message(compressed, w_.cfg.limits.max_client_message_bytes, message)) {
        case ws::inflate_status::ok: break;
        case ws::inflate_status::too_big:
            fail(ws::close_code::too_big, "message too big", reject::ws_message_too_big);
            return false;
        case ws::inflate_status::corrupt:
            fail(ws::close_code::invalid_payload, "invalid compressed data",
                 reject::ws_protocol_error);
            return false;
    }
    return on_data_message(op, message);
}

bool ws_session::on_data_message(ws::opcode op, std::string_view message) {
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

void ws_session::on_tick(time_point now) {
    if (close_sent_) return;  // the close deadline governs
    if (claims_ && claims_->exp && std::chrono::system_clock::now() >= *claims_->exp) {
        set_end_reason(disconnect_reason::token_expired);
        end_with(4001, "token expired");
        return;
    }
    // A ping left pending because its predecessor's pong was still queued when the last flush
    // began, and nothing has been written since.
    if (ping_pending_ && idle_output()) answer_ping();
    // Nothing left to remember: a new one would be the same.
    if (input_ && input_->rate && input_->rate->bucket.full(now) && strikes_now(now) <= 0)
        input_->rate.reset();
    trim_input();
    if (awaiting_pong_) {
        // Any frame from the client clears awaiting_pong_ (on_readable).
        if (now - last_seen_ >= w_.cfg.ws.pong_timeout) {
            w_.counters.pong_timeouts.add();
            set_end_reason(disconnect_reason::ping_timeout);
            end_with(ws::close_code::policy, "pong timeout");
        }
        return;
    }
    // Idle either way for the period: a connection that carries messages needs no ping.
    if (now - std::max(last_write_, last_seen_) >= milliseconds(ping_interval_ms_)) {
        last_seen_ = now;
        awaiting_pong_ = true;
        enqueue(chunk::of_static(k_ping_frame), true);
    }
}

void ws_session::on_drain(std::optional<milliseconds> reconnect_after) {
    set_end_reason(disconnect_reason::drain);
    if (reconnect_after)
        send_close(ws::close_code::going_away,
                   "going away; reconnect_after_ms=" + std::to_string(reconnect_after->count()));
    else
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
    set_end_reason(disconnect_reason::slow_consumer);
    // What is queued is dropped (a chunk partly on the wire finishes), so the close frame comes
    // right after what the kernel already holds.
    drop_queue();
    close_sent_ = false;
    end_with(ws::close_code::policy, "slow consumer", k_slow_close_grace);
}

void ws_session::on_close() {
    stop_holding();
    if (w_.webhooks) {
        std::vector<std::string_view> topics;
        subs_.for_each([&](const ws_sub& s) { topics.emplace_back(s.topic); });
        w_.webhooks->disconnect("ws", claims_ ? claims_->sub : "", stream_ip_,
                                end_reason_.value_or(disconnect_reason::client_closed), topics);
    }
    subs_.for_each([&](ws_sub& s) { w_.shard.unsubscribe(s); });
    w_.counters.subscriptions.add(-static_cast<std::int64_t>(subs_.size()));
    subs_.clear();
}

}  // namespace herald::net
