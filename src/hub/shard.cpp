#include "herald/hub/hub.hpp"
#include "herald/wire/topic.hpp"

namespace herald::hub {

hub::hub(std::vector<asio::io_context*> contexts) : contexts_(std::move(contexts)) {
    for (unsigned i = 0; i < contexts_.size(); ++i)
        shards_.push_back(std::make_unique<shard>(*this, i));
}

void hub::set_quotas(std::vector<quota_rule> rules) {
    quotas_ = std::move(rules);
    quota_topics_ = std::make_unique<std::atomic<std::size_t>[]>(quotas_.size());
}

int hub::quota_for(std::string_view topic) const noexcept {
    for (std::size_t i = 0; i < quotas_.size(); ++i)
        if (wire::pattern_match(quotas_[i].pattern, topic)) return static_cast<int>(i);
    return -1;
}

unsigned hub::owner_of(std::string_view topic) const noexcept {
    return static_cast<unsigned>(wire::topic_hash(topic) % shards_.size());
}

shard::shard(hub& h, unsigned worker) : hub_(h), worker_(worker) {}

void shard::subscribe(subscription& s) {
    s.id = ++next_sub_id_;
    s.active = false;
    s.asked = clock::now();
    s.early.clear();
    auto& lt = topics_[s.topic];
    s.index = static_cast<std::uint32_t>(lt.subs.size());
    lt.subs.push_back(&s);
    waiting_.emplace(s.id, &s);
    ++local_subscriptions_;

    const unsigned owner = hub_.owner_of(s.topic);
    hub_.post(owner,
              [h = &hub_, owner, from = worker_, topic = s.topic, id = s.id, since = s.since] {
                  h->at(owner).on_remote_subscribe(from, topic, id, since);
              });
}

bool shard::remove_local(subscription& s) {
    waiting_.erase(s.id);
    auto it = topics_.find(s.topic);
    if (it == topics_.end()) return false;
    auto& subs = it->second.subs;
    if (s.index >= subs.size() || subs[s.index] != &s) return false;  // not subscribed here
    subs[s.index] = subs.back();
    subs[s.index]->index = s.index;
    subs.pop_back();
    if (subs.empty()) topics_.erase(it);
    --local_subscriptions_;
    s.early.clear();
    s.active = false;
    return true;
}

void shard::unsubscribe(subscription& s) {
    if (!remove_local(s)) return;
    const unsigned owner = hub_.owner_of(s.topic);
    hub_.post(owner, [h = &hub_, owner, from = worker_, topic = s.topic] {
        h->at(owner).on_remote_unsubscribe(from, topic);
    });
}

void shard::on_remote_subscribe(unsigned from, const std::string& topic, std::uint64_t sub_id,
                                const std::optional<stream_pos>& since) {
    // A refused subscription is counted like any other and uncounted by the worker's ordinary
    // unsubscribe, so the counts stay right even when the worker unsubscribes first.
    std::string refusal;
    auto found = routes_.find(topic);
    int counted_quota = -1;
    if (const int q = hub_.quota_for(topic); q >= 0) {
        const auto& rule = hub_.quota(q);
        if (found != routes_.end() && rule.max_subscribers_per_topic &&
            found->second.total >= rule.max_subscribers_per_topic) {
            refusal = "topic '" + topic + "' has its maximum of " +
                      std::to_string(rule.max_subscribers_per_topic) + " subscribers";
        } else if (found == routes_.end() && rule.max_topics) {
            if (hub_.quota_topics(q).fetch_add(1) >= rule.max_topics) {
                hub_.quota_topics(q).fetch_sub(1);
                refusal = "namespace '" + rule.pattern + "' has its maximum of " +
                          std::to_string(rule.max_topics) + " active topics";
            } else {
                counted_quota = q;
            }
        }
    }
    auto& r = found != routes_.end() ? found->second : routes_[topic];
    if (r.per_worker.empty()) {
        r.per_worker.assign(hub_.workers(), 0);
        r.quota = counted_quota;
    }
    ++r.per_worker[from];
    ++r.total;
    if (!refusal.empty()) {
        hub_.post(from, [h = &hub_, from, sub_id, reason = std::move(refusal)] {
            h->at(from).on_subscribe_refused(sub_id, reason);
        });
        return;
    }
    // Counted before resolving: every message ordered after the answer reaches `from`.
    hub_.broker().resolve(worker_, topic, since, [h = &hub_, from, sub_id](subscribe_result res) {
        h->post(from, [h, from, sub_id, res = std::move(res)]() mutable {
            h->at(from).on_subscribe_answer(sub_id, std::move(res));
        });
    });
}

void shard::on_remote_unsubscribe(unsigned from, const std::string& topic) {
    auto it = routes_.find(topic);
    if (it == routes_.end()) return;
    auto& r = it->second;
    if (r.per_worker[from] > 0) {
        --r.per_worker[from];
        --r.total;
    }
    if (r.total == 0) {
        if (r.quota >= 0) hub_.quota_topics(r.quota).fetch_sub(1);
        routes_.erase(it);
        hub_.broker().on_topic_idle(worker_, topic);
    }
}

void shard::on_subscribe_refused(std::uint64_t sub_id, const std::string& reason) {
    auto it = waiting_.find(sub_id);
    if (it == waiting_.end()) return;  // already unsubscribed (which uncounted it)
    subscription& s = *it->second;
    unsubscribe(s);
    s.owner->on_refused(s, reason);
}

void shard::on_subscribe_answer(std::uint64_t sub_id, subscribe_result r) {
    auto it = waiting_.find(sub_id);
    if (it == waiting_.end()) return;  // unsubscribed (or closed) while the owner answered
    subscription& s = *it->second;
    waiting_.erase(it);
    s.active = true;
    s.epoch = r.epoch;
    s.epoch_key = wire::topic_hash(s.epoch);
    s.last_offset = (r.recovered && s.since) ? s.since->offset : r.top;
    s.owner->on_subscribed(s, r);
    for (const auto& m : r.replay) offer(s, m);
    auto early = std::move(s.early);
    s.early.clear();
    for (const auto& m : early) offer(s, m);
}

void shard::offer(subscription& s, const message_ptr& m) {
    if (m->reset) {
        if (m->epoch_key == s.epoch_key && m->offset <= s.last_offset) return;  // already there
        s.epoch = m->epoch;
        s.epoch_key = m->epoch_key;
        s.last_offset = m->offset;
        s.owner->on_reset(s, m);
        return;
    }
    if (m->epoch_key != s.epoch_key) {
        // The stream was reset under this subscriber; it follows the new epoch.
        s.epoch = m->epoch;
        s.epoch_key = m->epoch_key;
    } else if (m->offset <= s.last_offset) {
        return;  // already delivered, or older than the subscriber's position
    }
    s.last_offset = m->offset;
    s.owner->on_message(s, m);
}

void shard::deliver(const message_ptr& m) {
    auto it = topics_.find(m->topic);
    if (it == topics_.end()) return;
    // Subscribers never unsubscribe from inside on_message (they schedule a close), so the
    // list is stable during this loop.
    for (subscription* s : it->second.subs) {
        if (!s->active) {
            s->early.push_back(m);
            continue;
        }
        offer(*s, m);
    }
}

std::size_t shard::dispatch(const message_ptr& m) {
    auto it = routes_.find(m->topic);
    if (it == routes_.end()) return 0;
    const auto& r = it->second;
    for (unsigned w = 0; w < r.per_worker.size(); ++w) {
        if (r.per_worker[w] == 0) continue;
        if (w == worker_) {
            deliver(m);
            continue;
        }
        if (outbox_.empty()) outbox_.resize(hub_.workers());
        outbox_[w].push_back(m);
        if (!outbox_posted_) {
            outbox_posted_ = true;
            hub_.post(worker_, [this] { send_outbox(); });
        }
    }
    return r.total;
}

void shard::send_outbox() {
    outbox_posted_ = false;
    for (unsigned w = 0; w < outbox_.size(); ++w) {
        if (outbox_[w].empty()) continue;
        hub_.post(w, [h = &hub_, w, batch = std::move(outbox_[w])] {
            auto& s = h->at(w);
            for (const auto& m : batch) s.deliver(m);
        });
        outbox_[w].clear();
    }
}

}  // namespace herald::hub
