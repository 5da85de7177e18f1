#include "herald/auth/context.hpp"
#include "herald/wire/position.hpp"
#include "herald/net/webhooks.hpp"
#include "sessions.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/sse_codec.hpp"

namespace herald::net {

namespace {
constexpr std::string_view k_heartbeat = ": heartbeat\n\n";
constexpr std::string_view k_shutdown = "event: shutdown\ndata: {\"reason\":\"going away\"}\n\n";
}  // namespace

sse_session::sse_session(worker_context& w, link l, std::unique_ptr<auth::token_claims> claims,
                         std::string stream_ip, milliseconds heartbeat)
    : holding_connection(w, std::move(l), metrics::transport::sse),
      heartbeat_(heartbeat.count() ? heartbeat : w.cfg.sse.heartbeat),
      claims_(std::move(claims)),
      stream_ip_(stream_ip),
      who_(presence_identity(w, claims_.get())) {}

sse_session::~sse_session() {
    if (w_.auth && !stream_ip_.empty()) w_.auth->release_stream(std::string(stream_ip_.view()));
}

bool sse_session::revoke(std::string_view user) {
    if (!claims_ || claims_->sub != user || closed()) return false;
    end_reason_ = disconnect_reason::revoked;
    end_with("event: disconnect\ndata: {\"reason\":\"disconnected\"}\n\n");
    return true;
}

void sse_session::on_settings_changed() {
    subs_.for_each([&](sse_sub& s) { rebind(s, s.topic); });
}

void sse_session::end_with(std::string_view event) {
    enqueue(chunk::of_string(std::string(event)), true);
    close_after_flush(milliseconds(2000));
}

void sse_session::start(const std::vector<std::string>& topics,
                        const std::optional<std::vector<wire::stream_pos>>& since,
                        std::string_view extra_headers, bool join_leave) {
    for (std::size_t i = 0; i < topics.size(); ++i) {
        auto& s = subs_.emplace(this);
        s.join_leave = join_leave;
        s.topic = topics[i];
        s.tag = static_cast<std::uint32_t>(i);
        if (since) s.resume_from((*since)[i]);
        s.rule = delivery_rule_for(w_.cfg, s.topic);
        w_.shard.subscribe(s);
    }
    w_.counters.subscriptions.add(static_cast<std::int64_t>(subs_.size()));
    // No Content-Length and no chunking: the stream ends when the connection does, and every
    // event's bytes can be the same shared buffer for every subscriber.
    std::string h =
        "HTTP/1.1 200 OK\r\nServer: herald\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n";
    h += extra_headers;
    h += "\r\n";
    enqueue(chunk::of_string(std::move(h)), true);
    release_queue_when_flushed();
    wait_readable();
}

std::string sse_session::stream_id() const {
    std::string id;
    subs_.for_each([&](const sse_sub& s) {
        if (!id.empty()) id += ',';
        id += s.sent_epoch;
        id += ':';
        id += std::to_string(s.sent_offset);
    });
    return id;
}

void sse_session::send_message(sse_sub& s, const hub::message_ptr& m) {
    s.sent(*m);  // a held event's id names the positions up to it, not the hub's latest
    bool ok;
    if (subs_.size() == 1) {
        ok = enqueue_message(m, m->sse_event, s.live(*m));
    } else {
        // The id names every topic's position, so it is this stream's own; the rest is shared.
        enqueue(chunk::of_string(sse::encode_id_line(stream_id())));
        ok = enqueue_message(m, m->sse_body(), s.live(*m));
    }
    if (ok) w_.counters.frames_delivered.add();
}

void sse_session::send_reset(sse_sub& s, std::string_view reason, std::uint64_t skipped_from,
                             std::uint64_t skipped_to) {
    std::string e = sse::encode_id_line(stream_id());
    e += "event: reset\ndata: {\"topic\":\"" + s.topic + "\",\"epoch\":\"";
    e += s.sent_epoch.view();
    e += "\",\"offset\":" + std::to_string(s.sent_offset) +
         ",\"reason\":" + wire::json_quote(reason);
    if (skipped_to != 0)
        e += ",\"skipped\":{\"from\":" + std::to_string(skipped_from) +
             ",\"to\":" + std::to_string(skipped_to) + "}";
    e += "}\n\n";
    enqueue(chunk::of_string(std::move(e)));
}

void sse_session::deliver(sse_sub& s, const hub::message_ptr& m) {
    if (hold_if_wanted(s, m, m->sse_event.size())) return;
    send_message(s, m);
}

void sse_session::send_held(held_slot& s, const hub::message_ptr& m) {
    send_message(static_cast<sse_sub&>(s), m);
}

void sse_session::send_skipped(held_slot& slot, std::uint64_t from, std::uint64_t to) {
    // As on WebSocket: the client continues after `to`, and the event's id says so.
    auto& s = static_cast<sse_sub&>(slot);
    s.sent_epoch = s.epoch;
    s.sent_offset = to;
    send_reset(s, "slow consumer", from, to);
}

void sse_session::on_message(hub::subscription& sub, const hub::message_ptr& m) {
    auto& s = static_cast<sse_sub&>(sub);
    if (answered_ < subs_.size()) {
        hold_early(s, m);
        return;
    }
    deliver(s, m);
}

void sse_session::on_subscribed(hub::subscription& sub, const hub::subscribe_result& r) {
    auto& s = static_cast<sse_sub&>(sub);
    ++answered_;
    // The shard set the position the client starts from: its own when recovered, else the top.
    s.sent_epoch = s.epoch;
    s.sent_offset = s.last_offset;
    w_.record_subscribe(s, r, metrics::transport::sse, &reconnected_);
    if (r.resume_requested) {
        // The reset goes out in order with messages.
        if (!r.recovered) hold_early(s, nullptr, r.reason);
    }
    if (answered_ < subs_.size()) return;
    // The stream's first block says that every topic is subscribed (with broker: redis, that this
    // instance follows each topic's channel): a message published after a client read `retry:`
    // reaches it.
    send_retry();
    const auto held = std::move(held_);
    if (!held) return;
    for (const auto& [hs, m, resume_reason] : *held) {
        if (!m) {
            send_reset(*hs, resume_reason);
        } else if (m->reset) {
            hs->sent(*m);
            send_reset(*hs, m->reset_reason);
        } else {
            deliver(*hs, m);
        }
    }
}

void sse_session::on_reset(hub::subscription& sub, const hub::message_ptr& m) {
    auto& s = static_cast<sse_sub&>(sub);
    if (answered_ < subs_.size()) {
        hold_early(s, m);
        return;
    }
    drop_held(s);  // what was held belongs to the old position
    s.sent(*m);
    send_reset(s, m->reset_reason);
}

void sse_session::on_refused(hub::subscription& s, const std::string& reason) {
    // The stream already started, so the refusal is its last event.
    w_.counters.inc(metrics::reject::quota_exceeded);
    if (w_.auth) w_.auth->audit->refused("quota_exceeded", stream_ip_, "/sse " + s.topic);
    send_retry();  // the client's reconnection delay, then why it must go
    end_with("event: error\ndata: {\"code\":\"quota_exceeded\",\"topic\":\"" + s.topic +
             "\",\"message\":" + wire::json_quote(reason) + "}\n\n");
}

void sse_session::on_presence(hub::subscription&, const hub::presence_event_ptr& e) {
    // Before every topic is answered the stream has not started (no `retry:` yet); a join or
    // leave then is left out, as for a subscriber that was not there yet.
    if (answered_ < subs_.size()) return;
    enqueue(chunk::of_shared(e, e->sse_event));
}

void sse_session::send_retry() {
    if (retry_sent_) return;
    retry_sent_ = true;
    enqueue(chunk::of_string("retry: " + std::to_string(w_.cfg.sse.retry.count()) + "\n\n"), true);
    release_queue_when_flushed();
}

void sse_session::on_readable() {
    // A stream carries nothing from the client; reading only notices that it went away.
    for (int i = 0; i < 4; ++i) {
        error_code ec;
        std::size_t n = read_some(ec);
        if (ec) {
            close_now();
            return;
        }
        if (n == 0) break;
    }
    wait_readable();
}

void sse_session::on_tick(time_point now) {
    if (claims_ && claims_->exp && std::chrono::system_clock::now() >= *claims_->exp && !closed()) {
        if (!end_reason_) end_reason_ = disconnect_reason::token_expired;
        if (!slow()) end_with("event: token_expired\ndata: {\"reason\":\"token expired\"}\n\n");
        claims_->exp.reset();
        return;
    }
    if (now - last_write_ >= heartbeat_ && idle_output()) enqueue(chunk::of_static(k_heartbeat));
}

void sse_session::on_drain(std::optional<milliseconds> reconnect_after) {
    if (!end_reason_) end_reason_ = disconnect_reason::drain;
    if (reconnect_after) {
        // `retry:` makes a plain EventSource wait as long as the hint asks.
        const auto ms = std::to_string(reconnect_after->count());
        enqueue(chunk::of_string("retry: " + ms +
                                 "\nevent: shutdown\ndata: {\"reason\":\"going away\"," +
                                 "\"reconnect_after_ms\":" + ms + "}\n\n"),
                true);
    } else {
        enqueue(chunk::of_static(k_shutdown), true);
    }
    close_after_flush(milliseconds(2000));
}

void sse_session::on_close() {
    stop_holding();
    if (w_.webhooks) {
        std::vector<std::string_view> topics;
        subs_.for_each([&](const sse_sub& s) { topics.emplace_back(s.topic); });
        const auto why = slow() ? disconnect_reason::slow_consumer
                                : end_reason_.value_or(disconnect_reason::client_closed);
        w_.webhooks->disconnect("sse", claims_ ? claims_->sub : "", stream_ip_, why, topics);
    }
    subs_.for_each([&](sse_sub& s) { w_.shard.unsubscribe(s); });
    w_.counters.subscriptions.add(-static_cast<std::int64_t>(subs_.size()));
    subs_.clear();
    held_.reset();
}

}  // namespace herald::net
