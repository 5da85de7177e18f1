// redis_broker, the link side: topics nobody follows any more (batched UNSUBSCRIBE), links coming
// up or going down (subscribe again to every channel), and the once-a-second tick.
#include "redis_broker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::broker {

namespace {
constexpr std::size_t k_subscribe_batch = 256;  // channels per SUBSCRIBE / UNSUBSCRIBE
constexpr unsigned k_meta_refresh_ticks = 30;   // on_tick runs once a second
}  // namespace

// ---------------------------------------------------------------------------------------------
// Unsubscribe, link changes, tick

void redis_broker::on_topic_idle(unsigned owner, const std::string& topic) {
    auto& ws = *workers_[owner];
    ws.idle.push_back(topic);
    if (ws.flush_posted) return;
    ws.flush_posted = true;
    // Batched: one UNSUBSCRIBE per shard for every topic that went idle in this loop turn.
    hub_.post(owner, [this, owner] { flush_idle(owner); });
}

void redis_broker::flush_idle(unsigned w) {
    auto& ws = *workers_[w];
    ws.flush_posted = false;
    std::vector<std::vector<std::string>> batches(ws.shards.size());
    std::vector<std::vector<std::string>> topics_of(ws.shards.size());
    auto idle = std::move(ws.idle);
    ws.idle.clear();
    for (const auto& topic : idle) {
        auto it = ws.topics.find(topic);
        if (it == ws.topics.end()) continue;
        auto& st = it->second;
        if (!st.waiting.empty() || st.unsub_sent || hub_.at(w).has_subscribers(topic)) continue;
        if (st.sub_sent && ws.shards[st.shard].sub->up()) {
            st.unsub_sent = true;
            st.known = false;
            st.fetching = false;
            st.need_catch_up = false;
            st.held.clear();
            ++st.gen;
            batches[st.shard].push_back(st.channel);
            topics_of[st.shard].push_back(topic);
        } else {
            ws.topics.erase(it);
        }
    }
    for (std::size_t s = 0; s < batches.size(); ++s) {
        for (std::size_t i = 0; i < batches[s].size(); i += k_subscribe_batch) {
            const auto end = std::min(batches[s].size(), i + k_subscribe_batch);
            std::vector<std::string> chunk(batches[s].begin() + static_cast<std::ptrdiff_t>(i),
                                           batches[s].begin() + static_cast<std::ptrdiff_t>(end));
            if (!ws.shards[s].sub->unsubscribe(chunk))
                for (std::size_t j = i; j < end; ++j) ws.topics.erase(topics_of[s][j]);
        }
    }
}

void redis_broker::on_sub_up(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    if (w == k_control_worker && shard == control_shard_)
        ws.shards[shard].sub->subscribe({control_channel_});
    std::vector<std::string> chunk;
    std::vector<topic_state*> sent;
    auto flush = [&] {
        if (chunk.empty()) return;
        if (ws.shards[shard].sub->subscribe(chunk))
            for (auto* st : sent) st->sub_sent = true;
        chunk.clear();
        sent.clear();
    };
    for (auto& [topic, st] : ws.topics) {
        if (st.shard != shard || st.sub_sent) continue;
        chunk.push_back(st.channel);
        sent.push_back(&st);
        if (chunk.size() >= k_subscribe_batch) flush();
    }
    flush();
}

void redis_broker::on_sub_down(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    for (auto it = ws.topics.begin(); it != ws.topics.end();) {
        auto& st = it->second;
        if (st.shard != shard) {
            ++it;
            continue;
        }
        st.sub_sent = false;
        st.confirmed = false;
        if (st.unsub_sent) {
            st.unsub_sent = false;
            if (st.waiting.empty() && !hub_.at(w).has_subscribers(it->first)) {
                it = ws.topics.erase(it);
                continue;
            }
        }
        // Whatever was published while the link was down comes from history.
        if (st.known) st.need_catch_up = true;
        ++it;
    }
}

void redis_broker::on_cmd_up(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    auto& link = *ws.shards[shard].cmd;
    // Load the scripts at once; EVALSHA falls back to EVAL should Redis forget them later.
    link.command({"SCRIPT", "LOAD", redis::publish_script}, [](redisReply*, no_reply) {});
    link.command({"SCRIPT", "LOAD", redis::read_script}, [](redisReply*, no_reply) {});
    for (auto& [topic, st] : ws.topics) {
        if (st.shard != shard) continue;
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        drain_waiting(w, topic, st);
    }
    presence_->on_cmd_up(w, shard);
}

void redis_broker::on_tick(unsigned w, time_point) {
    auto& ws = *workers_[w];
    presence_->on_tick(w);
    const bool refresh = ++ws.ticks % k_meta_refresh_ticks == 0;
    for (auto& [topic, st] : ws.topics) {
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        if (!st.waiting.empty()) drain_waiting(w, topic, st);
        // A followed topic keeps its epoch however long it stays quiet, as in memory.
        if (refresh && st.confirmed) {
            auto& link = *ws.shards[st.shard].cmd;
            link.command({"PEXPIRE", redis::meta_key(cfg_.redis.key_prefix, topic),
                          std::to_string(meta_ttl_ms(policy_for(cfg_, topic)))},
                         [](redisReply*, no_reply) {});
        }
    }
}

}  // namespace herald::broker
