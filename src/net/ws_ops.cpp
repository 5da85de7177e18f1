// The WebSocket session's client ops (docs/protocol.md): one JSON object per text frame —
// ping, subscribe, unsubscribe, publish — and their replies. Framing, control frames, delivery
// and timers are ws_session.cpp.
#include "herald/auth/context.hpp"
#include "herald/broker/broker.hpp"
#include "herald/common/text.hpp"
#include "herald/net/hooks.hpp"
#include "herald/net/webhooks.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/payload.hpp"
#include "herald/wire/position.hpp"
#include "herald/wire/topic.hpp"
#include "sessions.hpp"

#include <nlohmann/json.hpp>

namespace herald::net {

using metrics::reject;
using json = nlohmann::json;

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
        const bool hooked = claims_ && claims_->from_hook;
        if (!r.ok() || (claims_ && r.claims.sub != (hooked ? claims_->token_sub : claims_->sub))) {
            w_.counters.inc(reject::unauthorized);
            w_.auth->audit->auth_failure(
                "unauthorized",
                r.ok() ? "refresh: token for another user" : auth::to_string(r.status), stream_ip_,
                "/ws refresh", claims_ ? std::string_view(claims_->sub) : "");
            reply_error(id, "unauthorized",
                        r.ok() ? "the token is for another user"
                               : "invalid token: " + std::string(auth::to_string(r.status)));
            return;
        }
        if (hooked) {
            // The connect hook's user and info outlive the token they came with.
            r.claims.token_sub = std::move(r.claims.sub);
            r.claims.sub = claims_->sub;
            r.claims.info = claims_->info;
            r.claims.from_hook = true;
        }
        claims_ = std::make_unique<auth::token_claims>(std::move(r.claims));
        std::string o = "{\"type\":\"ok\"" + (id.empty() ? std::string() : ",\"id\":" + id) +
                        ",\"op\":\"refresh\"";
        if (claims_->exp)
            o += ",\"exp\":" + std::to_string(claims_->exp->time_since_epoch().count());
        send_json(o + "}");
        return;
    }
    if (name != "subscribe" && name != "unsubscribe" && name != "publish" && name != "presence") {
        bad(id, "unknown_op",
            "unknown op '" + name + "' (subscribe, unsubscribe, publish, presence, ping, refresh)");
        return;
    }
    auto tit = op.find("topic");
    if (tit == op.end() || !tit->is_string()) {
        bad(id, "bad_request", name + " needs a topic (a string)");
        return;
    }
    if (!wire::is_valid_topic(tit->get_ref<const std::string&>())) {
        w_.counters.inc(reject::bad_topic);
        reply_error(id, "bad_topic", wire::k_topic_rule);
        return;
    }
    const auto& topic = tit->get_ref<const std::string&>();
    if (name == "presence") {
        presence_op(id, topic);
        return;
    }

    if (name == "subscribe") {
        std::optional<wire::stream_pos> since;
        if (auto sit = op.find("since"); sit != op.end() && !sit->is_null()) {
            const auto e = sit->is_object() ? sit->find("epoch") : sit->end();
            const auto o = sit->is_object() ? sit->find("offset") : sit->end();
            if (!sit->is_object() || e == sit->end() || o == sit->end() || !e->is_string() ||
                !wire::is_valid_epoch(e->get_ref<const std::string&>()) ||
                !o->is_number_unsigned()) {
                bad(id, "bad_since",
                    "since must be {\"epoch\": \"...\", \"offset\": <unsigned integer>}");
                return;
            }
            since = wire::stream_pos{e->get<std::string>(), o->get<std::uint64_t>()};
        }
        bool join_leave = false;
        if (auto jit = op.find("join_leave"); jit != op.end() && !jit->is_null()) {
            if (!jit->is_boolean()) {
                bad(id, "bad_request", "join_leave must be true or false");
                return;
            }
            join_leave = jit->get<bool>();
        }
        if (find(topic)) {
            bad(id, "bad_request", "already subscribed to '" + topic + "'");
            return;
        }
        if (w_.auth && !w_.auth->may_read(claims_.get(), topic)) {
            w_.counters.inc(reject::forbidden);
            w_.auth->audit->auth_failure("forbidden", "subscribe to '" + topic + "'", stream_ip_,
                                         "/ws subscribe",
                                         claims_ ? std::string_view(claims_->sub) : "");
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
        if (w_.hooks && w_.hooks->enabled(hook_kind::subscribe)) {
            hook_subscribe(topic, std::move(since), std::move(id), join_leave);
            return;
        }
        subscribe_topic(topic, std::move(since), id, true, join_leave);
        return;
    }
    if (name == "unsubscribe") {
        if (ws_sub* found = find(topic)) {
            auto& s = *found;
            // A subscribe not answered yet never will be (the owner's answer finds it gone):
            // answer it here, before the unsubscribe's ok, so every op gets exactly one reply.
            if (s.reply() && !s.active) {
                std::string o = "{\"type\":\"error\"";
                if (!s.reply_id().empty()) o.append(",\"id\":").append(s.reply_id());
                o += ",\"code\":\"unsubscribed\",\"topic\":\"" + topic +
                     "\",\"message\":\"unsubscribed before the subscription was confirmed\"}";
                send_json(std::move(o));
            }
            w_.shard.unsubscribe(s);
            w_.counters.subscriptions.add(-1);
            subs_.erase(s);
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
    if (!token_may && !wire::any_match(w_.cfg.ws.client_publish, topic)) {
        w_.counters.inc(reject::forbidden);
        reply_error(id, "forbidden",
                    "clients may not publish to '" + topic + "' (see ws.client_publish)");
        return;
    }
    hub::publish_request req;
    req.topic = topic;
    if (auto eit = op.find("event"); eit != op.end()) {
        if (!eit->is_string() || !wire::is_valid_event_name(eit->get_ref<const std::string&>())) {
            bad(id, "bad_event", "event must be 1..64 bytes of [A-Za-z0-9_.:-]");
            return;
        }
        req.event = eit->get<std::string>();
    }
    // A client retrying a publish whose acknowledgement it lost sends the same key (see
    // clients/js): the broker answers the first publish's offset and does not deliver it again.
    if (auto kit = op.find("idempotency_key"); kit != op.end()) {
        if (!kit->is_string() ||
            !wire::is_valid_idempotency_key(kit->get_ref<const std::string&>())) {
            bad(id, "bad_idempotency_key", "idempotency_key must be 1..128 printable ASCII bytes");
            return;
        }
        req.idempotency_key = kit->get<std::string>();
    }
    // As the HTTP `traceparent` header: a malformed one is ignored, never an error.
    if (auto tit = op.find("traceparent"); tit != op.end() && tit->is_string())
        req.trace =
            wire::parse_traceparent(tit->get_ref<const std::string&>()).value_or(wire::trace_id{});
    switch (wire::read_payload(op, req.kind, req.payload)) {
        case wire::payload_status::ok: break;
        case wire::payload_status::bad_base64:
            bad(id, "bad_request", "data_base64 must be standard base64");
            return;
        case wire::payload_status::missing:
            bad(id, "bad_request", "publish needs data or data_base64");
            return;
    }
    if (req.payload.size() > w_.cfg.limits.max_message_bytes) {
        w_.counters.inc(reject::payload_too_large);
        reply_error(id, "payload_too_large", "message exceeds limits.max_message_bytes");
        return;
    }
    w_.counters.publish_requests.add();
    if (w_.hooks && w_.hooks->enabled(hook_kind::publish)) {
        hook_publish(std::move(req), std::move(id));
        return;
    }
    publish_now(std::move(req), std::move(id));
}

void ws_session::publish_now(hub::publish_request req, std::string id) {
    std::weak_ptr<connection> weak = shared_from_this();
    // The `publish` webhook event, emitted on this worker whether or not the client stays.
    std::function<void(const broker::publish_result&)> announce;
    if (w_.webhooks && w_.webhooks->wants("publish"))
        announce = [&w = w_, user = claims_ ? claims_->sub
                                            : std::string()](const broker::publish_result& r) {
            w.webhooks->publish(r.topic, r.epoch, r.offset, "ws", user);
        };
    // The first line of a traced message's way (its offset is in the owner's line).
    if (!req.trace.empty())
        wire::log_trace(req.trace, "publish: worker {} topic '{}' over WebSocket", w_.id,
                        req.topic);
    w_.broker.publish(w_.id, std::move(req), [weak, id, announce](broker::publish_result r) {
        if (announce && r.status == broker::publish_status::ok) announce(r);
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

}  // namespace herald::net
