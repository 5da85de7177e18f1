// The WebSocket ops that wait for a backend hook: subscribe (hooks.subscribe) and publish
// (hooks.publish). The op is checked first as without a hook (ws_ops.cpp); the hook can only
// refuse it, add `info` to the subscription, or replace the published data.
#include "herald/net/hooks.hpp"
#include "herald/wire/envelope.hpp"
#include "sessions.hpp"

namespace herald::net {

using metrics::reject;

namespace {
// Hook calls one connection may await at once: each op beyond is answered `rate_limited`, so a
// client cannot pile up calls to the backend (a well-behaved one waits for its replies).
constexpr unsigned k_max_ws_hook_calls = 4;

hook_client_info who(std::string_view address, const auth::token_claims* c) {
    return {address, "ws", c ? std::string_view(c->sub) : "", c ? std::string_view(c->info) : ""};
}
}  // namespace

bool ws_session::take_hook_call(const std::string& id) {
    if (hook_calls_ >= k_max_ws_hook_calls) {
        w_.counters.inc(reject::rate_limited);
        reply_error(id, "rate_limited", "too many ops waiting for the application; slow down");
        return false;
    }
    ++hook_calls_;
    return true;
}

bool ws_session::refused_by_hook(const std::string& id, const hook_verdict& v) {
    if (v.allow) return false;
    if (v.from_error) {
        w_.counters.inc(reject::unavailable);
        reply_error(id, "unavailable", "the application's backend did not answer; retry");
    } else {
        w_.counters.inc(reject::forbidden);
        reply_error(id, "forbidden", v.message);
    }
    return true;
}

void ws_session::hook_subscribe(std::string topic, std::optional<wire::stream_pos> since,
                                std::string id, bool join_leave) {
    if (!take_hook_call(id)) return;
    auto body = hook_caller::subscribe_body(who(stream_ip_, claims_.get()), {}, topic);
    std::weak_ptr<connection> weak = shared_from_this();
    w_.hooks->call(hook_kind::subscribe, std::move(body), {},
                   [weak, topic = std::move(topic), since = std::move(since), id = std::move(id),
                    join_leave](hook_verdict v) mutable {
                       auto self = std::static_pointer_cast<ws_session>(weak.lock());
                       if (!self || self->closed() || self->close_sent_) return;
                       --self->hook_calls_;
                       if (self->refused_by_hook(id, v)) return;
                       // Checked again: the same topic may have been subscribed meanwhile.
                       if (self->find(topic)) {
                           self->reply_error(id, "bad_request",
                                             "already subscribed to '" + topic + "'");
                           return;
                       }
                       if (self->subs_.size() >= self->w_.cfg.limits.max_topics_per_connection) {
                           self->w_.counters.inc(reject::too_many_topics);
                           self->reply_error(id, "too_many_topics", "too many topics");
                           return;
                       }
                       self->subscribe_topic(topic, std::move(since), id, true, join_leave,
                                             std::move(v.info));  // <= 1 KiB
                   });
}

void ws_session::hook_publish(hub::publish_request req, std::string id) {
    if (!take_hook_call(id)) return;
    auto body = hook_caller::publish_body(who(stream_ip_, claims_.get()), {}, req.topic, req.kind,
                                          req.payload);
    std::weak_ptr<connection> weak = shared_from_this();
    w_.hooks->call(hook_kind::publish, std::move(body), {},
                   [weak, req = std::move(req), id = std::move(id)](hook_verdict v) mutable {
                       auto self = std::static_pointer_cast<ws_session>(weak.lock());
                       if (!self || self->closed() || self->close_sent_) return;
                       --self->hook_calls_;
                       if (self->refused_by_hook(id, v)) return;
                       if (v.data) {
                           if (v.data->second.size() > self->w_.cfg.limits.max_message_bytes) {
                               self->w_.counters.inc(reject::payload_too_large);
                               self->reply_error(
                                   id, "payload_too_large",
                                   "the application's data exceeds limits.max_message_bytes");
                               return;
                           }
                           req.kind = v.data->first;
                           req.payload = std::move(v.data->second);
                       }
                       self->publish_now(std::move(req), std::move(id));
                   });
}

}  // namespace herald::net
