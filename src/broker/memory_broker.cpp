#include "memory_broker.hpp"

#include "herald/common/block_cache.hpp"
#include "herald/wire/topic.hpp"
#include "herald/wire/trace.hpp"

#include <memory>
#include <random>
#include <type_traits>

namespace herald::broker {

memory_broker::memory_broker(hub::hub& h, const config::settings& cfg)
    : hub_(h), cfg_(cfg), bytes_(h.workers()) {
    std::random_device rd;
    const std::size_t per_worker = cfg.history.max_bytes / h.workers();
    for (unsigned i = 0; i < h.workers(); ++i) {
        std::uint64_t seed =
            (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ (i * 0x9E3779B97F4A7C15ULL);
        stores_.push_back(std::make_unique<history_store>(per_worker, seed));
    }
}

publish_result memory_broker::publish_on_owner(unsigned owner, hub::publish_request& req) {
    auto& store = *stores_[owner];
    const auto now = clock::now();
    auto& s = store.open(req.topic, policy_for(cfg_, req.topic), now);
    store.prefetch(s);
    publish_result res;
    res.epoch = s.epoch;
    const auto window = cfg_.publish.idempotency_window;
    if (!req.idempotency_key.empty() && window.count() > 0) {
        if (auto first = store.seen_key(s, req.idempotency_key, now, window)) {
            res.status = publish_status::duplicate;
            res.topic = std::move(req.topic);
            res.offset = *first;
            return res;
        }
    }
    const std::uint64_t offset = ++s.top;
    res.offset = offset;
    auto& shard = hub_.at(owner);
    if (s.route_gen != shard.routes_generation()) {
        s.route = shard.find_route(req.topic);
        s.route_gen = shard.routes_generation();
    }
    const bool subscribed = s.route != nullptr;
    if (!store.keeps(s) && !subscribed) {
        // Nobody would read the message (no history, no subscriber): it is not built. What
        // dispatch() and append() would have done to nobody is done here.
        if (!req.trace.empty())
            wire::log_trace(req.trace, "owner: worker {} topic '{}' offset {}:{} subscribers {}",
                            owner, req.topic, s.epoch, offset, 0);
        if (!req.idempotency_key.empty() && window.count() > 0)
            store.remember_key(s, std::move(req.idempotency_key), offset, now);
        store.append_none(s, now);
        bytes_[owner].store(store.bytes(), std::memory_order_relaxed);
        res.topic = std::move(req.topic);  // req is spent: the caller only answers from res
        return res;
    }
    // Without a subscriber the message is only kept for history: its wire forms wait for a
    // replay (resolve(), below), which most such messages never see.
    auto m = hub::make_message(req.topic, s.epoch, offset, req.kind, std::move(req.payload),
                               std::move(req.event), now, req.trace, subscribed);
    if (!req.idempotency_key.empty() && window.count() > 0)
        store.remember_key(s, std::move(req.idempotency_key), offset, now);
    res.subscribers = shard.dispatch(m, s.route);
    store.append(s, std::move(m));
    bytes_[owner].store(store.bytes(), std::memory_order_relaxed);
    res.topic = std::move(req.topic);
    return res;
}

namespace {
// A publish's request and completion, which travel to the owner and back as one block: each hop
// moves a pointer, not the request's strings and the completion's captures (several moves per
// hop through a posted task). A task dropped uncalled (shutdown) frees the block and what the
// completion captured. Blocks are recycled per thread (common/block_cache.hpp: a worker takes
// one per publish and, the answer given, returns it on the same thread; 128 blocks cover a
// worker's publishes in flight in the publish-only bench, 35 KiB at most), so a publish does not
// pay malloc for it.
struct publish_job {
    hub::publish_request req;
    publish_handler done;

    static void* operator new(std::size_t n) {
        if (void* p = cache::take()) return p;
        return ::operator new(n);
    }
    static void operator delete(void* p) noexcept {
        if (!cache::give(p)) ::operator delete(p);
    }

private:
    using cache = block_cache<publish_job, 1, 128>;
};
}  // namespace

void memory_broker::publish(unsigned from, hub::publish_request&& req, publish_handler&& done) {
    auto j = std::unique_ptr<publish_job>(new publish_job{std::move(req), std::move(done)});
    const unsigned owner = hub_.owner_of(j->req.topic);
    if (owner == from) {
        // The caller's worker owns the topic: the answer is given where the publish is applied,
        // without a second post. The publish itself is still posted, so that it runs after the
        // hub work this worker queued before it (a subscription the same client asked for first).
        hub_.post(owner,
                  [this, owner, j = std::move(j)] { j->done(publish_on_owner(owner, j->req)); });
        return;
    }
    hub_.post(owner, [this, from, owner, j = std::move(j)]() mutable {
        hub_.post(from, [res = publish_on_owner(owner, j->req), j = std::move(j)]() mutable {
            j->done(std::move(res));
        });
    });
}

void memory_broker::resolve(unsigned owner, const std::string& topic,
                            const std::optional<hub::stream_pos>& since, subscribe_handler done) {
    auto& store = *stores_[owner];
    auto& s = store.open(topic, policy_for(cfg_, topic), clock::now());
    hub::subscribe_result r;
    r.epoch = s.epoch;
    r.top = s.top;
    if (since) {
        r.resume_requested = true;
        auto rec = store.since(s, *since, cfg_.history.max_recovery, r.replay);
        r.recovered = rec == recovery::ok;
        if (!r.recovered) {
            r.reason = to_string(rec);
            r.replay.clear();
        }
        // Here, on the owner, before the replay is posted to the subscriber's worker.
        for (const auto& m : r.replay) m->build_wire_forms();
    }
    done(std::move(r));
}

void memory_broker::history(unsigned from, const std::string& topic,
                            std::optional<hub::stream_pos> since, std::size_t limit,
                            history_handler done) {
    const unsigned owner = hub_.owner_of(topic);
    hub_.post(owner, [this, from, owner, topic, since = std::move(since), limit,
                      done = std::move(done)]() mutable {
        history_result r;
        // Opening the stream fixes its epoch, so a client may start from `epoch:0` (an idle
        // stream expires as usual).
        auto& s = stores_[owner]->open(topic, policy_for(cfg_, topic), clock::now());
        r.found = true;
        r.epoch = s.epoch;
        r.top = s.top;
        if (since && !since->epoch.empty() && since->epoch != s.epoch) {
            r.epoch_mismatch = true;
        } else {
            const auto after = since ? std::optional(since->offset) : std::nullopt;
            history_store::copy(s, history_window(history_store::first(s), s.top, after, limit),
                                r.messages);
        }
        hub_.post(from,
                  [r = std::move(r), done = std::move(done)]() mutable { done(std::move(r)); });
    });
}

void memory_broker::on_tick(unsigned worker, time_point now) {
    auto& shard = hub_.at(worker);
    stores_[worker]->expire(now, cfg_.publish.idempotency_window,
                            [&shard](const std::string& t) { return shard.has_subscribers(t); });
    bytes_[worker].store(stores_[worker]->bytes(), std::memory_order_relaxed);
}

void memory_broker::broadcast_disconnect(unsigned from, std::string /*user*/,
                                         broadcast_handler done) {
    hub_.post(from, [done = std::move(done)] { done(broadcast_result{}); });
}

std::size_t memory_broker::history_bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& b : bytes_) total += b.load(std::memory_order_relaxed);
    return total;
}

}  // namespace herald::broker
