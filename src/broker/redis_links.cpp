// redis_broker, the link side: topics nobody follows any more (batched UNSUBSCRIBE), links coming
// up or going down (subscribe again to every channel), and the once-a-second tick.
#include "redis_broker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include <unistd.h>

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
        if (st.sub_sent && ws.shards[st.shard].sub_up()) {
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
            if (!ws.shards[s].unsubscribe(chunk))
                for (std::size_t j = i; j < end; ++j) ws.topics.erase(topics_of[s][j]);
        }
    }
}

void redis_broker::on_sub_up(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    if (w == k_control_worker && shard == ws.control_shard)
        ws.control_sent = ws.shards[shard].subscribe({control_channel_});
    std::vector<std::string> chunk;
    std::vector<topic_state*> sent;
    auto flush = [&] {
        if (chunk.empty()) return;
        if (ws.shards[shard].subscribe(chunk))
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
    if (shard == ws.control_shard) ws.control_sent = false;
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
    link.command({"SCRIPT", "LOAD", script_body_[0]}, [](redisReply*, no_reply) {});
    link.command({"SCRIPT", "LOAD", script_body_[1]}, [](redisReply*, no_reply) {});
    for (auto& [topic, st] : ws.topics) {
        if (st.shard != shard) continue;
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        drain_waiting(w, topic, st);
    }
    presence_->on_cmd_up(w, shard);
}

void redis_broker::on_tick(unsigned w, time_point) {
    tick_sentinels(w);
    tick_cluster(w);
    auto& ws = *workers_[w];
    presence_->on_tick(w);
    const bool refresh = ++ws.ticks % k_meta_refresh_ticks == 0;
    for (auto& [topic, st] : ws.topics) {
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        if (!st.waiting.empty()) drain_waiting(w, topic, st);
        // A cluster node refused the SSUBSCRIBE (the slot moved) and the map now routes the
        // topic again: subscribe where it points.
        if (cluster_ && !st.sub_sent && !st.unsub_sent) ensure_subscribed(w, st);
        // A followed topic keeps its epoch however long it stays quiet, as in memory.
        if (refresh && st.confirmed) {
            auto& link = *ws.shards[st.shard].cmd;
            link.command({"PEXPIRE", redis::meta_key(cfg_.redis.key_prefix, topic),
                          std::to_string(meta_ttl_ms(policy_for(cfg_, topic)))},
                         [](redisReply*, no_reply) {});
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel shards: each shard's watch runs on worker home_of(shard) and moves every worker's
// links of the shard when the master changes. Until a sentinel names a master the links stay
// unstarted (down, so /readyz says so).

void redis_broker::start_sentinels(const std::vector<asio::io_context*>& contexts) {
    watches_.resize(shard_names_.size());
    for (std::size_t s = 0; s < shard_names_.size(); ++s) {
        if (s >= cfg_.redis.sentinels.size() || cfg_.redis.sentinels[s].empty()) continue;
        const auto home = home_of(s);
        sentinel_watch::options opt;
        opt.master = shard_names_[s];
        for (const auto& a : cfg_.redis.sentinels[s]) {
            auto ep = parse_endpoint(a);
            if (!ep) throw std::invalid_argument("redis.shards: bad sentinel address " + a);
            opt.sentinels.push_back(*ep);
        }
        opt.link.connect_timeout = cfg_.redis.connect_timeout;
        opt.link.command_timeout = cfg_.redis.command_timeout;
        opt.link.ping_interval = cfg_.redis.ping_interval;
        opt.link.max_backoff = cfg_.redis.reconnect_max_backoff;
        opt.link.client_name = "herald-" + std::to_string(::getpid()) + "-sentinel";
        auto w = std::make_unique<sentinel_watch>(*contexts[home], std::move(opt),
                                                  workers_[home]->rng());
        w->on_master = [this, s](const redis_endpoint& ep) { on_master(s, ep); };
        watches_[s] = std::move(w);
        hub_.post(home, [this, s] { watches_[s]->start(); });
    }
}

void redis_broker::on_master(std::size_t shard, const redis_endpoint& ep) {
    auto& st = shard_stats_[shard];
    if (st.master_known.exchange(true, std::memory_order_relaxed)) {
        st.failovers.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("redis shard '{}': master moved to {}; reconnecting every link",
                     shard_names_[shard], ep.name());
    }
    // Each worker moves its own links: a link and its topics live on that worker only. The
    // re-subscribe, script reload and gap filling follow from the links coming up (on_sub_up,
    // on_cmd_up, catch_up).
    for (unsigned v = 0; v < workers_.size(); ++v) {
        hub_.post(v, [this, v, shard, ep] { workers_[v]->shards[shard].set_endpoint(ep); });
    }
}

void redis_broker::ask_sentinels(std::size_t shard) {
    if (shard >= watches_.size() || !watches_[shard]) return;
    hub_.post(home_of(shard), [this, shard] { watches_[shard]->query(); });
}

void redis_broker::tick_sentinels(unsigned w) {
    for (std::size_t s = 0; s < watches_.size(); ++s) {
        if (!watches_[s] || home_of(s) != w) continue;
        watches_[s]->query();
        shard_stats_[s].sentinels_up.store(static_cast<std::int64_t>(watches_[s]->sentinels_up()),
                                           std::memory_order_relaxed);
    }
}

}  // namespace herald::broker
