// redis_broker, following topics: a subscribe resolved against Redis, the pub/sub relay that
// dispatches messages in offset order, and catching up over a gap (history, or a reset).
#include "redis_broker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::broker {

// ---------------------------------------------------------------------------------------------
// Subscribe

redis_broker::topic_state& redis_broker::state_of(unsigned w, const std::string& topic) {
    auto& topics = workers_[w]->topics;
    auto it = topics.find(topic);
    if (it != topics.end()) return it->second;
    auto& st = topics[topic];
    st.shard = shard_of(w, topic);
    st.channel = channel_of(topic);
    return st;
}

void redis_broker::ensure_subscribed(unsigned w, topic_state& st) {
    if (st.sub_sent || st.unsub_sent) return;
    if (st.shard == k_no_shard) return;  // a cluster slot without a master: on_slot_map
    auto& links = workers_[w]->shards[st.shard];
    if (!links.sub_up()) return;  // on_sub_up subscribes every topic
    if (links.subscribe({st.channel})) st.sub_sent = true;
}

void redis_broker::resolve(unsigned owner, const std::string& topic,
                           const std::optional<hub::stream_pos>& since, subscribe_handler done) {
    auto& st = state_of(owner, topic);
    st.waiting.push_back({since, std::move(done)});
    ensure_subscribed(owner, st);
    drain_waiting(owner, topic, st);
}

// Resolves wait until the channel is confirmed, so the snapshot read after it and the live
// stream overlap (the hub drops what a subscription already has) instead of leaving a hole.
void redis_broker::drain_waiting(unsigned w, const std::string& topic, topic_state& st) {
    if (!st.confirmed || st.waiting.empty()) return;
    if (!workers_[w]->shards[st.shard].cmd->up()) return;  // on_cmd_up or on_tick retries
    auto waiting = std::move(st.waiting);
    st.waiting.clear();
    for (auto& p : waiting) answer_resolve(w, topic, std::move(p));
}

void redis_broker::answer_resolve(unsigned w, const std::string& topic, pending_resolve p) {
    auto& st = state_of(w, topic);
    std::uint64_t after = 0;
    std::size_t limit = 0;
    if (p.since) {
        after = p.since->offset;
        limit = cfg_.history.max_recovery;
    }
    read(w, st.shard, topic, after, limit, false,
         [this, w, topic, p = std::move(p)](redisReply* reply, no_reply) mutable {
             auto r = redis::parse_read_reply(reply);
             if (!r || r->epoch.empty()) {
                 if (reply && reply->type == REDIS_REPLY_ERROR)
                     spdlog::warn("redis resolve '{}': {}", topic,
                                  std::string_view(reply->str, reply->len));
                 // Link lost mid-way: wait again; answered when the links are back.
                 auto& st = state_of(w, topic);
                 st.waiting.push_back(std::move(p));
                 ensure_subscribed(w, st);
                 return;
             }
             hub::subscribe_result res;
             res.epoch = r->epoch;
             res.top = r->top;
             if (p.since) {
                 res.resume_requested = true;
                 const auto rec = recover_from(*r, *p.since, cfg_.history.max_recovery);
                 res.recovered = rec == recovery::ok;
                 if (res.recovered) {
                     res.replay.reserve(r->entries.size());
                     for (auto& e : r->entries)
                         res.replay.push_back(to_message(topic, std::move(e)));
                 } else {
                     res.reason = to_string(rec);
                 }
             }
             auto it = workers_[w]->topics.find(topic);
             if (it != workers_[w]->topics.end()) {
                 auto& st = it->second;
                 if (!st.known && !st.fetching && !st.need_catch_up) {
                     st.known = true;
                     st.epoch = r->epoch;
                     st.last = r->top;
                 } else if (st.known && !st.fetching && !st.need_catch_up && st.epoch != r->epoch) {
                     catch_up(w, topic, st);  // the stream was reset and no message told us yet
                 }
             }
             p.done(std::move(res));
             // The subscriber may have left while this was in flight.
             if (!hub_.at(w).has_subscribers(topic)) on_topic_idle(w, topic);
         });
}

void redis_broker::on_push(unsigned w, std::size_t shard, redisReply* reply) {
    const auto p = redis::parse_push(reply);
    if (p.channel == control_channel_) {
        if (w == k_control_worker && shard == workers_[w]->control_shard) on_control(w, p);
        return;
    }
    const auto t = redis::topic_of_channel(cfg_.redis.key_prefix, p.channel);
    if (t.empty()) return;
    auto& topics = workers_[w]->topics;
    const std::string topic(t);
    auto it = topics.find(topic);
    if (it == topics.end() || it->second.shard != shard) return;
    auto& st = it->second;
    switch (p.kind) {
        case redis::push::type::subscribe:
            if (!st.sub_sent) return;
            st.confirmed = true;
            if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
            drain_waiting(w, topic, st);
            return;
        case redis::push::type::unsubscribe:
            // Asked for (unsub_sent), or not: a cluster node that lost the topic's slot drops
            // its sharded subscribers. Then messages may already go elsewhere: once subscribed
            // again, the gap is read from history (the keys moved with the slot).
            if (!st.unsub_sent && st.known) {
                st.need_catch_up = true;
                ask_cluster();
            }
            st.unsub_sent = false;
            st.sub_sent = false;
            st.confirmed = false;
            if (!st.waiting.empty() || hub_.at(w).has_subscribers(topic))
                ensure_subscribed(w, st);  // wanted again while the UNSUBSCRIBE was in flight
            else
                topics.erase(it);
            return;
        case redis::push::type::message: {
            if (!st.confirmed || st.unsub_sent) return;
            if (presence_->on_channel_message(w, topic, p.payload)) return;
            auto e = redis::decode_entry(p.payload);
            if (!e) {
                spdlog::warn("redis: undecodable message on channel '{}'", p.channel);
                return;
            }
            relay(w, topic, st, to_message(topic, std::move(*e)));
            return;
        }
        case redis::push::type::other: return;
    }
}

// Hands the topic's messages to the hub in offset order, exactly once each; anything that does
// not follow the last relayed offset goes through catch_up() first.
void redis_broker::relay(unsigned w, const std::string& topic, topic_state& st,
                         hub::message_ptr m) {
    if (st.fetching || st.need_catch_up) {
        st.held.push_back(std::move(m));
        return;
    }
    if (!st.known) {
        st.known = true;
        st.epoch = m->epoch;
        st.last = m->offset;
        hub_.at(w).dispatch(m);
        return;
    }
    if (m->epoch == st.epoch) {
        if (m->offset <= st.last) return;  // already relayed (or covered by a gap read)
        if (m->offset == st.last + 1) {
            st.last = m->offset;
            hub_.at(w).dispatch(m);
            return;
        }
    }
    st.held.push_back(std::move(m));
    catch_up(w, topic, st);
}

void redis_broker::catch_up(unsigned w, const std::string& topic, topic_state& st) {
    if (!st.confirmed || !workers_[w]->shards[st.shard].cmd->up()) {
        st.need_catch_up = true;  // after the re-SUBSCRIBE, or on_tick
        return;
    }
    st.need_catch_up = false;
    st.fetching = true;
    const auto pol = policy_for(cfg_, topic);
    // History never holds more than its size, so a larger gap cannot be filled anyway.
    const std::size_t limit = std::max<std::size_t>(pol.size, 1);
    read(w, st.shard, topic, st.last, limit, false,
         [this, w, topic, gen = st.gen, limit](redisReply* reply, no_reply) {
             auto it = workers_[w]->topics.find(topic);
             if (it == workers_[w]->topics.end() || it->second.gen != gen) return;
             auto& st = it->second;
             st.fetching = false;
             auto r = redis::parse_read_reply(reply);
             if (!r || r->epoch.empty()) {
                 st.need_catch_up = true;
                 return;
             }
             const auto rec =
                 st.known ? recover_from(*r, {st.epoch, st.last}, limit) : recovery::epoch_changed;
             if (rec == recovery::ok) {
                 const std::uint64_t missing = r->top - st.last;
                 for (auto& e : r->entries) {
                     auto m = to_message(topic, std::move(e));
                     st.last = m->offset;
                     hub_.at(w).dispatch(m);
                 }
                 if (missing > 0) {
                     gaps_filled_.fetch_add(1, std::memory_order_relaxed);
                     shard_stats_[st.shard].gaps_filled.fetch_add(1, std::memory_order_relaxed);
                     gap_messages_.fetch_add(missing, std::memory_order_relaxed);
                     spdlog::info("redis: topic '{}': filled a gap of {} messages from history",
                                  topic, missing);
                 }
             } else {
                 spdlog::warn(
                     "redis: topic '{}': cannot fill a gap after {}:{} ({}); reset to {}:{}", topic,
                     st.epoch, st.last, to_string(rec), r->epoch, r->top);
                 send_reset(w, topic, st, r->epoch, r->top, to_string(rec));
             }
             auto held = std::move(st.held);
             st.held.clear();
             for (auto& m : held) relay(w, topic, st, std::move(m));
         });
}

recovery redis_broker::recover_from(const redis::read_reply& r, const hub::stream_pos& pos,
                                    std::size_t max_messages) {
    auto rec = check_recovery(r.epoch, r.first, r.top, pos, max_messages);
    // The read asked for what follows pos; anything but exactly pos + 1 .. top cannot be used.
    if (rec == recovery::ok && (r.entries.size() != r.top - pos.offset ||
                                (!r.entries.empty() && r.entries.front().offset != pos.offset + 1)))
        rec = recovery::gap_too_large;
    return rec;
}

void redis_broker::send_reset(unsigned w, const std::string& topic, topic_state& st,
                              const std::string& epoch, std::uint64_t top, const char* reason) {
    st.known = true;
    st.epoch = epoch;
    st.last = top;
    resets_sent_.fetch_add(1, std::memory_order_relaxed);
    shard_stats_[st.shard].resets.fetch_add(1, std::memory_order_relaxed);
    hub_.at(w).dispatch(hub::make_reset(topic, epoch, top, reason, clock::now()));
}

}  // namespace herald::broker
