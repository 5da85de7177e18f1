#include "herald/hub/hub.hpp"
#include "herald/wire/topic.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace herald::hub {

namespace {
// shard::deliver's prefetch distances (in subscribers): far enough for a miss to complete
// while the deliveries in between run, near enough that what was fetched is still cached.
constexpr std::size_t k_ahead_sub = 12;
constexpr std::size_t k_ahead_owner = 8;
constexpr std::size_t k_ahead_session = 4;
// Asks for every cache line of the object at `p` (`size` bytes), for reading.
inline void prefetch_object(const void* p, std::size_t size) noexcept {
    const auto* c = static_cast<const char*>(p);
    for (std::size_t off = 0; off < size; off += 64) __builtin_prefetch(c + off);
    __builtin_prefetch(c + size - 1);
}

// One process: the owner's table is the whole truth, and a join/leave is delivered at once.
class local_presence final : public presence_backend {
public:
    explicit local_presence(hub& h) : hub_(h) {}

    void join(unsigned owner, const std::string& topic, const presence_client& c,
              const presence_table& table) override {
        hub_.at(owner).dispatch_presence(make_presence_event(topic, true, c));
        if (table.connections() == 1)
            hub_.notify(owner, {presence_change_kind::occupied, topic, c});
    }
    void leave(unsigned owner, const std::string& topic, const presence_client& c,
               const presence_table& table) override {
        hub_.at(owner).dispatch_presence(make_presence_event(topic, false, c));
        if (table.empty()) hub_.notify(owner, {presence_change_kind::vacated, topic, c});
    }
    void query(unsigned /*owner*/, const std::string& /*topic*/, const presence_table* table,
               bool counts_only, presence_handler done) override {
        presence_result r;
        if (table) {
            r.users = table->users();
            r.connections = table->connections();
        }
        r.clients_omitted = counts_only || r.connections > hub_.presence_max_clients();
        if (!r.clients_omitted) r.clients = table ? table->clients_json() : "[]";
        done(std::move(r));
    }

private:
    hub& hub_;
};

}  // namespace

hub::hub(std::vector<asio::io_context*> contexts)
    : contexts_(std::move(contexts)), outgoing_(new outgoing[contexts_.size()]) {
    for (unsigned i = 0; i < contexts_.size(); ++i) outgoing_[i].to.resize(contexts_.size());
    for (unsigned i = 0; i < contexts_.size(); ++i)
        shards_.push_back(std::make_unique<shard>(*this, i));
    local_presence_ = std::make_unique<local_presence>(*this);
    presence_backend_ = local_presence_.get();
    std::random_device rd;
    tag_ = fmt::format("{:08x}", rd());
}

// Hand-offs never sent (the sender's loop stopped first) go before the shards: what they hold
// (a session, a callback) may still reach its shard when it is freed.
hub::~hub() {
    outgoing_.reset();
}

hub::batch::~batch() {
    for (task* t = head; t;) delete std::exchange(t, t->next);
}

void hub::batch::push(task* t) noexcept {
    (tail ? tail->next : head) = t;
    tail = t;
}

void hub::batch::run_all() {
    // Each task is unlinked before it runs: one that posts again only adds to other batches.
    while (head) {
        std::unique_ptr<task> t(std::exchange(head, head->next));
        t->run();
    }
    tail = nullptr;
}

void hub::enqueue(unsigned from, unsigned to, task* t) {
    auto& out = outgoing_[from];
    out.to[to].push(t);
    if (out.posted) return;
    out.posted = true;
    // Posted from `from`'s own thread: it joins that loop's queue behind what this turn queued,
    // so everything the turn hands to other workers leaves together.
    asio::post(*contexts_[from], [this, from] { send_posts(from); });
}

void hub::enqueue_self(unsigned worker, task* t) {
    auto& out = outgoing_[worker];
    out.self.push(t);
    if (out.self_posted) return;
    out.self_posted = true;
    asio::post(*contexts_[worker], [this, worker] {
        auto& o = outgoing_[worker];
        o.self_posted = false;
        batch mine(std::move(o.self));  // what its tasks post goes to the next batch
        mine.run_all();
    });
}

void hub::send_posts(unsigned from) {
    auto& out = outgoing_[from];
    out.posted = false;
    for (unsigned w = 0; w < out.to.size(); ++w) {
        if (!out.to[w].head) continue;
        asio::post(*contexts_[w], [b = batch(std::move(out.to[w]))]() mutable { b.run_all(); });
    }
}

void hub::set_presence(std::vector<std::string> patterns, std::size_t max_clients) {
    presence_patterns_ = std::move(patterns);
    presence_max_ = max_clients;
}

bool hub::presence_on(std::string_view topic) const noexcept {
    return wire::any_match(presence_patterns_, topic);
}

void hub::set_quotas(std::vector<quota_rule> rules, bool running) {
    for (auto& r : rules) {
        auto& slot = quota_slots_[r.pattern];
        if (!slot) slot = &quota_counts_.emplace_back(0);
        r.topics = slot;
    }
    auto table = std::make_shared<const quota_table>(std::move(rules));
    for (unsigned i = 0; i < workers(); ++i) {
        if (!running) {
            shards_[i]->set_quotas(table);
            continue;
        }
        post(i, [s = shards_[i].get(), table] { s->set_quotas(table); });
    }
}

const quota_rule* shard::quota_for(std::string_view topic) const noexcept {
    if (!quotas_) return nullptr;
    for (const auto& r : *quotas_)
        if (wire::pattern_match(r.pattern, topic)) return &r;
    return nullptr;
}

unsigned hub::owner_of(std::string_view topic) const noexcept {
    return static_cast<unsigned>(wire::topic_hash(topic) % shards_.size());
}

shard::shard(hub& h, unsigned worker) : hub_(h), worker_(worker) {}

void shard::subscribe(subscription& s) {
    s.id = ++next_sub_id_;
    s.active = false;
    s.asked = clock::now();
    if (s.pre) s.pre->early.clear();
    auto& lt = topics_[s.topic];
    s.index = static_cast<std::uint32_t>(lt.subs.size());
    lt.subs.push_back(&s);
    waiting_.emplace(s.id, &s);
    ++local_subscriptions_;

    const presence_client* entry = s.who();
    s.in_presence = entry && hub_.presence_on(s.topic);
    std::optional<presence_client> who;
    if (s.in_presence) who = *entry;
    const unsigned owner = hub_.owner_of(s.topic);
    hub_.post(owner, [h = &hub_, owner, from = worker_, topic = s.topic, id = s.id,
                      since = s.since() ? std::optional<stream_pos>(*s.since()) : std::nullopt,
                      who = std::move(who)] {
        h->at(owner).on_remote_subscribe(from, topic, id, since, who);
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
    if (s.pre) s.pre->early.clear();
    s.active = false;
    return true;
}

void shard::unsubscribe(subscription& s) {
    if (!remove_local(s)) return;
    const unsigned owner = hub_.owner_of(s.topic);
    std::string client;
    if (s.in_presence) client = s.who()->client;
    hub_.post(owner,
              [h = &hub_, owner, from = worker_, topic = s.topic, client = std::move(client)] {
                  h->at(owner).on_remote_unsubscribe(from, topic, client);
              });
}

void shard::on_remote_subscribe(unsigned from, const std::string& topic, std::uint64_t sub_id,
                                const std::optional<stream_pos>& since,
                                const std::optional<presence_client>& who) {
    // A refused subscription is counted like any other and uncounted by the worker's ordinary
    // unsubscribe, so the counts stay right even when the worker unsubscribes first.
    std::string refusal;
    auto found = routes_.find(topic);
    std::atomic<std::size_t>* counted_quota = nullptr;
    if (const auto* q = quota_for(topic)) {
        const auto& rule = *q;
        if (found != routes_.end() && rule.max_subscribers_per_topic &&
            found->second.total >= rule.max_subscribers_per_topic) {
            refusal = "topic '" + topic + "' has its maximum of " +
                      std::to_string(rule.max_subscribers_per_topic) + " subscribers";
        } else if (found == routes_.end() && rule.max_topics) {
            if (rule.topics->fetch_add(1) >= rule.max_topics) {
                rule.topics->fetch_sub(1);
                refusal = "namespace '" + rule.pattern + "' has its maximum of " +
                          std::to_string(rule.max_topics) + " active topics";
            } else {
                counted_quota = rule.topics;
            }
        }
    }
    if (found == routes_.end()) ++routes_gen_;
    auto& r = found != routes_.end() ? found->second : routes_[topic];
    if (r.per_worker.empty()) {
        r.per_worker.assign(hub_.workers(), 0);
        r.quota = counted_quota;
        r.seen_at = clock::now();
    }
    ++r.per_worker[from];
    ++r.total;
    // A refused subscription never joins (its unsubscribe, which always follows, finds nothing).
    if (who && refusal.empty()) presence_join(topic, *who);
    if (!refusal.empty()) {
        hub_.post(from, [h = &hub_, from, sub_id, reason = std::move(refusal)] {
            h->at(from).on_subscribe_refused(sub_id, reason);
        });
        return;
    }
    if (!r.active) {
        r.active = true;
        hub_.on_activity(worker_, topic, true);
    }
    // Counted before resolving: every message ordered after the answer reaches `from`.
    hub_.broker().resolve(worker_, topic, since, [h = &hub_, from, sub_id](subscribe_result res) {
        h->post(from, [h, from, sub_id, res = std::move(res)]() mutable {
            h->at(from).on_subscribe_answer(sub_id, std::move(res));
        });
    });
}

void shard::on_remote_unsubscribe(unsigned from, const std::string& topic,
                                  const std::string& client) {
    // Before the route goes: the leave reaches the subscribers that are left.
    if (!client.empty()) presence_leave(topic, client);
    auto it = routes_.find(topic);
    if (it == routes_.end()) return;
    auto& r = it->second;
    if (r.per_worker[from] > 0) {
        --r.per_worker[from];
        --r.total;
    }
    if (r.total == 0) {
        if (r.quota) r.quota->fetch_sub(1);
        const bool was_active = r.active;
        routes_.erase(it);
        ++routes_gen_;
        if (was_active) hub_.on_activity(worker_, topic, false);
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
    s.last_offset = (r.recovered && s.since()) ? s.since()->offset : r.top;
    // Live now: the pre-answer state goes (the early messages are offered from here).
    const auto pre = std::move(s.pre);
    s.owner->on_subscribed(s, r);
    for (const auto& m : r.replay) offer(s, m);
    if (pre)
        for (const auto& m : pre->early) offer(s, m);
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
    if (!m->trace.empty())
        wire::log_trace(m->trace, "deliver: worker {} topic '{}' offset {}:{} subscribers {}",
                        worker_, m->topic, m->epoch, m->offset,
                        it == topics_.end() ? 0 : it->second.subs.size());
    if (it == topics_.end()) return;
    // Subscribers never unsubscribe from inside on_message (they schedule a close), so the
    // list is stable during this loop.
    //
    // A fan-out to thousands of subscribers is bound by cache misses: each delivery touches its
    // subscription and then, through a virtual call, its session, neither of which the previous
    // deliveries brought in, and the chain of dependent loads leaves the CPU too little to
    // overlap. So the loop asks for them ahead, each stage reading only what the previous one
    // fetched: subscriptions k_ahead_sub places ahead, their owners' first line k_ahead_owner
    // ahead, the rest of what a delivery reads in the session k_ahead_session ahead.
    const auto& subs = it->second.subs;
    const std::size_t n = subs.size();
    // offer()'s common case, inline with the message's fields read once (the owner's call could
    // change them as far as the compiler knows): a live subscriber in the message's epoch.
    const bool plain = !m->reset;
    const std::uint64_t key = m->epoch_key;
    const std::uint64_t offset = m->offset;
    for (std::size_t i = 0; i < n; ++i) {
        if (i + k_ahead_sub < n) prefetch_object(subs[i + k_ahead_sub], sizeof(subscription));
        if (i + k_ahead_owner < n) subs[i + k_ahead_owner]->owner->prefetch();
        if (i + k_ahead_session < n) subs[i + k_ahead_session]->owner->prefetch_delivery();
        subscription* s = subs[i];
        if (!s->active) {
            s->pending().early.push_back(m);
            continue;
        }
        if (plain && s->epoch_key == key) {
            if (offset <= s->last_offset) continue;  // already delivered, as in offer()
            s->last_offset = offset;
            s->owner->on_message(*s, m);
            continue;
        }
        offer(*s, m);
    }
}

namespace {
// Keeps the n largest of `v` by `key`, highest first; v is small (2n at most between trims).
template <class Key>
void keep_top(std::vector<topic_load>& v, std::size_t n, Key key) {
    const auto cmp = [&](const topic_load& a, const topic_load& b) { return key(a) > key(b); };
    if (v.size() > n) {
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), v.end(), cmp);
        v.resize(n);
    }
    std::sort(v.begin(), v.end(), cmp);
}
const auto by_rate_key = [](const topic_load& t) { return t.rate; };
const auto by_subs_key = [](const topic_load& t) { return t.subscribers; };
}  // namespace

void busiest_topics::merge(busiest_topics o, std::size_t n) {
    for (auto& t : o.by_rate) by_rate.push_back(std::move(t));
    for (auto& t : o.by_subscribers) by_subscribers.push_back(std::move(t));
    keep_top(by_rate, n, by_rate_key);
    keep_top(by_subscribers, n, by_subs_key);
    scanned += o.scanned;
    topics += o.topics;
}

busiest_topics shard::busiest(std::size_t n, std::size_t max_scan, time_point now) {
    busiest_topics out;
    out.topics = routes_.size();
    if (routes_.empty() || n == 0) return out;
    // Candidates are trimmed whenever they reach 2n, so a scan holds O(n) of them.
    const auto consider = [&](const std::string& topic, route& r) {
        const double secs = std::chrono::duration<double>(now - r.seen_at).count();
        const double rate = secs > 0 ? static_cast<double>(r.messages - r.seen) / secs : 0.0;
        r.seen = r.messages;
        r.seen_at = now;
        if (rate > 0) out.by_rate.push_back({topic, rate, r.total});
        out.by_subscribers.push_back({topic, rate, r.total});
        if (out.by_rate.size() >= 2 * n) keep_top(out.by_rate, n, by_rate_key);
        if (out.by_subscribers.size() >= 2 * n) keep_top(out.by_subscribers, n, by_subs_key);
    };
    const std::size_t buckets = routes_.bucket_count();
    std::size_t b = busiest_bucket_ % buckets;
    for (std::size_t visited = 0; visited < buckets && out.scanned < max_scan; ++visited) {
        for (auto it = routes_.begin(b); it != routes_.end(b); ++it) {
            consider(it->first, it->second);
            ++out.scanned;
        }
        b = (b + 1) % buckets;
    }
    busiest_bucket_ = b;
    keep_top(out.by_rate, n, by_rate_key);
    keep_top(out.by_subscribers, n, by_subs_key);
    return out;
}

std::size_t shard::dispatch(const message_ptr& m, route* found) {
    if (!m->trace.empty())
        wire::log_trace(m->trace, "owner: worker {} topic '{}' offset {}:{} subscribers {}",
                        worker_, m->topic, m->epoch, m->offset, found ? found->total : 0);
    if (!found) return 0;
    auto& r = *found;
    ++r.messages;
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
    hub_.send_posts(worker_);
}

// ---------------------------------------------------------------------------------------------
// Presence

std::string shard::new_client_id() {
    return hub_.instance_tag() + "-" + std::to_string(worker_) + "-" +
           std::to_string(++next_client_);
}

void shard::presence_join(const std::string& topic, const presence_client& c) {
    auto& t = presence_[topic];
    if (!t.add(c)) return;
    hub_.notify(worker_, {presence_change_kind::join, topic, c});
    hub_.presence().join(worker_, topic, c, t);
}

void shard::presence_leave(const std::string& topic, const std::string& client) {
    auto it = presence_.find(topic);
    if (it == presence_.end()) return;
    presence_client c;
    if (!it->second.remove(client, c)) return;
    hub_.notify(worker_, {presence_change_kind::leave, topic, c});
    hub_.presence().leave(worker_, topic, c, it->second);
    if (it->second.empty()) presence_.erase(it);
}

const presence_table* shard::presence_of(const std::string& topic) const {
    auto it = presence_.find(topic);
    return it == presence_.end() ? nullptr : &it->second;
}

void shard::query_presence(const std::string& topic, bool counts_only, presence_handler done) {
    const unsigned owner = hub_.owner_of(topic);
    hub_.post(owner, [h = &hub_, owner, from = worker_, topic, counts_only,
                      done = std::move(done)]() mutable {
        auto& o = h->at(owner);
        h->presence().query(owner, topic, o.presence_of(topic), counts_only,
                            [h, from, done = std::move(done)](presence_result r) mutable {
                                h->post(from, [r = std::move(r), done = std::move(done)]() mutable {
                                    done(std::move(r));
                                });
                            });
    });
}

void shard::dispatch_presence(const presence_event_ptr& e) {
    auto it = routes_.find(e->topic);
    if (it == routes_.end()) return;
    const auto& r = it->second;
    for (unsigned w = 0; w < r.per_worker.size(); ++w) {
        if (r.per_worker[w] == 0) continue;
        if (w == worker_)
            deliver_presence(e);
        else
            hub_.post(w, [h = &hub_, w, e] { h->at(w).deliver_presence(e); });
    }
}

void shard::deliver_presence(const presence_event_ptr& e) {
    auto it = topics_.find(e->topic);
    if (it == topics_.end()) return;
    // As in deliver(): subscribers never unsubscribe from inside the callback.
    for (subscription* s : it->second.subs) {
        if (!s->join_leave || !s->active) continue;
        const presence_client* entry = s->who();
        if (entry && entry->client == e->client) continue;
        s->owner->on_presence(*s, e);
    }
}

}  // namespace herald::hub
