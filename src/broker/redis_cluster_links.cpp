// redis_broker, Redis Cluster: worker 0 reads the slot map (CLUSTER SLOTS from any node that
// answers: the seeds, then every node the last map named), gives each master a shard (a master
// promoted by a failover keeps its predecessor's shard: they share node ids), moves the shards'
// links, and posts the slot -> shard table to every worker, which moves the topics whose slot
// changed shard (unsubscribe there, subscribe here, fill the gap from history).
#include "redis_broker.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include <unistd.h>

namespace herald::broker {

namespace {
constexpr unsigned k_cluster_home = 0;  // the worker reading the slot map
}

void redis_broker::start_cluster(const std::vector<asio::io_context*>& contexts) {
    if (!cluster_) return;
    for (const auto& a : cfg_.redis.cluster) {
        auto ep = parse_endpoint(a);
        if (!ep) throw std::invalid_argument("redis.cluster: bad address " + a);
        cluster_seeds_.push_back(*ep);
    }
    cluster_known_ = cluster_seeds_;
    cluster_shards_.resize(shard_names_.size());
    {
        std::lock_guard lock(labels_mu_);
        labels_ = shard_names_;
    }
    redis_link::options opt;
    opt.endpoint = cluster_seeds_.front();
    link_options(cfg_, opt);
    opt.client_name = "herald-" + std::to_string(::getpid()) + "-cluster";
    cluster_link_ = std::make_unique<redis_link>(*contexts[k_cluster_home], opt,
                                                 workers_[k_cluster_home]->rng());
    cluster_link_->on_up = [this] { refresh_cluster(); };
    hub_.post(k_cluster_home, [this] { cluster_link_->start(); });
}

void redis_broker::ask_cluster() {
    if (!cluster_) return;
    hub_.post(k_cluster_home, [this] { refresh_cluster(); });
}

void redis_broker::tick_cluster(unsigned w) {
    if (!cluster_) return;
    auto& ws = *workers_[w];
    // The control channel: subscribed again where the map points after a refusal.
    if (w == k_control_worker && !ws.control_sent && ws.control_shard != k_no_shard &&
        ws.shards[ws.control_shard].sub_up())
        ws.control_sent = ws.shards[ws.control_shard].subscribe({control_channel_});
    if (w != k_cluster_home) return;
    if (cluster_link_->up()) {
        refresh_cluster();  // once a second: a failover or a finished migration shows here
        return;
    }
    // The node asked is gone: ask the next one the configuration or a map named.
    cluster_next_ = (cluster_next_ + 1) % cluster_known_.size();
    cluster_asking_ = false;
    cluster_link_->set_endpoint(cluster_known_[cluster_next_]);
}

void redis_broker::refresh_cluster() {
    if (cluster_asking_ || !cluster_link_->up()) return;
    cluster_asking_ = true;
    const bool sent = cluster_link_->command({"CLUSTER", "SLOTS"}, [this](redisReply* r, no_reply) {
        cluster_asking_ = false;
        auto masters = redis::parse_cluster_slots(r);
        if (!masters || masters->empty()) {
            spdlog::warn("redis cluster: {} answered no usable slot map{}{}",
                         cluster_link_->endpoint().name(), redis::is_error(r) ? ": " : "",
                         redis::is_error(r) ? std::string_view(r->str, r->len) : "");
            cluster_link_->reconnect("no slot map");
            cluster_next_ = (cluster_next_ + 1) % cluster_known_.size();
            cluster_link_->set_endpoint(cluster_known_[cluster_next_]);
            return;
        }
        on_cluster_slots(std::move(*masters));
    });
    if (!sent) cluster_asking_ = false;
}

void redis_broker::on_cluster_slots(std::vector<redis::cluster_master> masters) {
    const auto n = shard_names_.size();
    std::vector<std::size_t> placed(masters.size(), k_no_shard);
    std::vector<bool> taken(n, false);
    auto place = [&](auto match) {
        for (std::size_t m = 0; m < masters.size(); ++m) {
            if (placed[m] != k_no_shard) continue;
            for (std::size_t s = 0; s < n; ++s) {
                if (taken[s] || !match(masters[m], cluster_shards_[s])) continue;
                placed[m] = s;
                taken[s] = true;
                break;
            }
        }
    };
    // The same master first; then a master that shares a node with a shard (a promoted
    // replica); then a shard never used.
    place([](const redis::cluster_master& m, const cluster_shard& c) {
        return c.assigned && !c.nodes.empty() && c.nodes.front() == m.id;
    });
    place([](const redis::cluster_master& m, const cluster_shard& c) {
        if (!c.assigned) return false;
        return std::any_of(m.nodes.begin(), m.nodes.end(), [&](const std::string& id) {
            return std::find(c.nodes.begin(), c.nodes.end(), id) != c.nodes.end();
        });
    });
    place([](const redis::cluster_master&, const cluster_shard& c) { return !c.assigned; });

    auto table = std::make_shared<slot_table>();
    table->fill(k_unserved);
    const auto workers = static_cast<std::int64_t>(workers_.size());
    std::vector<redis_endpoint> known = cluster_seeds_;
    auto learn = [&](const redis_endpoint& ep) {
        if (std::find(known.begin(), known.end(), ep) == known.end()) known.push_back(ep);
    };
    for (std::size_t m = 0; m < masters.size(); ++m) {
        const auto& mm = masters[m];
        learn(mm.endpoint);
        for (const auto& r : mm.replicas) learn(r);
        const auto s = placed[m];
        if (s == k_no_shard) {
            spdlog::error("redis cluster: more than {} masters; {} is not served", n,
                          mm.endpoint.name());
            continue;
        }
        auto& c = cluster_shards_[s];
        const bool moved = !c.assigned || !(c.master == mm.endpoint);
        if (!c.assigned) {
            // Counted down before any of its links can come up (they start below).
            c.assigned = true;
            links_down_.fetch_add(2 * workers, std::memory_order_relaxed);
            shard_stats_[s].cmd_down.fetch_add(workers, std::memory_order_relaxed);
            shard_stats_[s].sub_down.fetch_add(workers, std::memory_order_relaxed);
            shard_stats_[s].assigned.store(true, std::memory_order_relaxed);
            spdlog::info("redis cluster: master {} ({} slot ranges)", mm.endpoint.name(),
                         mm.ranges.size());
        } else if (moved) {
            shard_stats_[s].failovers.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("redis cluster: {} now serves the slots of {}; reconnecting every link",
                         mm.endpoint.name(), c.master.name());
        }
        c.master = mm.endpoint;
        c.nodes = mm.nodes;
        if (moved) {
            {
                std::lock_guard lock(labels_mu_);
                labels_[s] = mm.endpoint.name();
            }
            for (unsigned v = 0; v < workers_.size(); ++v)
                hub_.post(
                    v, [this, v, s, ep = mm.endpoint] { workers_[v]->shards[s].set_endpoint(ep); });
        }
        for (auto [from, to] : mm.ranges)
            for (std::size_t slot = from; slot <= to; ++slot)
                (*table)[slot] = static_cast<std::uint8_t>(s);
    }
    cluster_known_ = std::move(known);
    if (cluster_next_ >= cluster_known_.size()) cluster_next_ = 0;
    const auto unserved = std::count(table->begin(), table->end(), k_unserved);
    slots_unserved_.store(unserved, std::memory_order_relaxed);
    cluster_mapped_.store(true, std::memory_order_relaxed);
    const auto& current = workers_[k_cluster_home]->slots;
    if (current && *current == *table) return;
    map_refreshes_.fetch_add(1, std::memory_order_relaxed);
    if (unserved > 0) spdlog::warn("redis cluster: {} slots have no master", unserved);
    std::shared_ptr<const slot_table> shared = std::move(table);
    for (unsigned v = 0; v < workers_.size(); ++v)
        hub_.post(v, [this, v, shared] { on_slot_map(v, shared); });
}

void redis_broker::on_slot_map(unsigned w, std::shared_ptr<const slot_table> map) {
    auto& ws = *workers_[w];
    ws.slots = std::move(map);
    std::vector<std::pair<std::string, std::size_t>> moves;
    for (const auto& [topic, st] : ws.topics) {
        const auto to = shard_of(w, topic);
        if (to != st.shard) moves.emplace_back(topic, to);
    }
    for (const auto& [topic, to] : moves) move_topic(w, topic, to);
    const auto cs = shard_of_slot(w, redis::key_slot(control_channel_));
    if (cs == ws.control_shard) return;
    if (w == k_control_worker) {
        if (ws.control_sent && ws.control_shard != k_no_shard &&
            ws.shards[ws.control_shard].sub_up())
            ws.shards[ws.control_shard].unsubscribe({control_channel_});
        ws.control_sent = false;  // tick_cluster subscribes where it lives now
    }
    ws.control_shard = cs;
}

// The topic's slot is served by another shard now: leave the old channel, follow the new one,
// and read what was published in between from history (the keys moved with the slot).
void redis_broker::move_topic(unsigned w, const std::string& topic, std::size_t to) {
    auto& ws = *workers_[w];
    auto it = ws.topics.find(topic);
    if (it == ws.topics.end()) return;
    auto& st = it->second;
    if (st.sub_sent && st.shard != k_no_shard && ws.shards[st.shard].sub_up())
        ws.shards[st.shard].unsubscribe({st.channel});  // its answer is ignored: wrong shard
    if (st.unsub_sent && st.waiting.empty() && !hub_.at(w).has_subscribers(topic)) {
        ws.topics.erase(it);
        return;
    }
    st.shard = to;
    st.sub_sent = false;
    st.confirmed = false;
    st.unsub_sent = false;
    st.fetching = false;
    ++st.gen;  // a gap read in flight on the old shard is void
    if (st.known) st.need_catch_up = true;
    ensure_subscribed(w, st);
}

void redis_broker::on_refused(unsigned w, std::size_t shard, const std::string& channel,
                              redisReply* err) {
    const auto redirect = redis::parse_redirect(err);
    if (redirect)
        shard_stats_[shard].moved.fetch_add(1, std::memory_order_relaxed);
    else if (err != nullptr)
        spdlog::warn("redis cluster: SSUBSCRIBE {}: {}", channel,
                     std::string_view(err->str, err->len));
    ask_cluster();
    auto& ws = *workers_[w];
    if (channel == control_channel_) {
        if (shard == ws.control_shard) ws.control_sent = false;
        return;
    }
    const std::string topic(redis::topic_of_channel(cfg_.redis.key_prefix, channel));
    auto it = ws.topics.find(topic);
    if (it == ws.topics.end() || it->second.shard != shard) return;
    // Not subscribed: on_tick subscribes again where the refreshed map points.
    auto& st = it->second;
    st.sub_sent = false;
    st.confirmed = false;
    if (st.known) st.need_catch_up = true;
}

std::size_t redis_broker::shard_at(unsigned w, const redis_endpoint& ep) const {
    const auto& shards = workers_[w]->shards;
    for (std::size_t s = 0; s < shards.size(); ++s)
        if (shard_stats_[s].assigned.load(std::memory_order_relaxed) &&
            shards[s].cmd->endpoint() == ep)
            return s;
    return k_no_shard;
}

}  // namespace herald::broker
