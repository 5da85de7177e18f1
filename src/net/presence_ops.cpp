// Presence at the sessions: a stream's entry, and the WebSocket `presence` op (docs/protocol.md).
// Join/leave delivery is the sessions' on_presence; the tables are the hub's (hub/presence.hpp).
#include "herald/hub/presence.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/topic.hpp"
#include "sessions.hpp"

namespace herald::net {

using metrics::reject;

std::unique_ptr<hub::presence_client> presence_identity(worker_context& w,
                                                        const auth::token_claims* claims) {
    if (w.cfg.presence.patterns.empty()) return nullptr;  // presence is off: nothing to carry
    auto c = std::make_unique<hub::presence_client>();
    c->client = w.shard.new_client_id();
    if (claims) {
        c->sub = claims->sub;
        // Bounded: an entry is copied to the owner (and to Redis) per presence topic.
        if (claims->info.size() <= w.cfg.presence.max_info_bytes) c->info = claims->info;
    }
    return c;
}

void ws_session::presence_op(const std::string& id, const std::string& topic) {
    const auto* s = find(topic);
    if (!s || !s->active) {
        w_.counters.inc(reject::ws_bad_op);
        w_.counters.inc(reject::not_subscribed);
        reply_error(id, "not_subscribed",
                    "subscribe to '" + topic + "' (and wait for its ok) to read its presence");
        return;
    }
    // An API-key reader may read any presence, as over HTTP.
    if (!(claims_ && claims_->api_key) && !wire::any_match(w_.cfg.presence.client_read, topic)) {
        w_.counters.inc(reject::forbidden);
        reply_error(
            id, "forbidden",
            "clients may not read the presence of '" + topic + "' (see presence.client_read)");
        return;
    }
    if (!wire::any_match(w_.cfg.presence.patterns, topic)) {
        w_.counters.inc(reject::ws_bad_op);
        w_.counters.inc(reject::bad_request);
        reply_error(id, "bad_request", "'" + topic + "' has no presence (see presence.patterns)");
        return;
    }
    std::weak_ptr<connection> weak = shared_from_this();
    w_.shard.query_presence(topic, false, [weak, id, topic](hub::presence_result r) {
        auto self = std::static_pointer_cast<ws_session>(weak.lock());
        if (!self || self->closed()) return;
        if (!r.available) {
            self->reply_error(id, "unavailable", "the broker is unavailable; retry");
            return;
        }
        self->send_json("{\"type\":\"presence\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                        ",\"topic\":" + wire::json_quote(topic) + "," +
                        hub::presence_result_members(r) + "}");
    });
}

void ws_session::on_presence(hub::subscription&, const hub::presence_event_ptr& e) {
    if (close_sent_) return;
    enqueue(chunk::of_shared(e, e->ws_frame));
}

}  // namespace herald::net
