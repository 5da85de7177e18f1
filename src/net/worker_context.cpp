// worker_context: the per-worker runtime. It owns the intrusive list of the worker's connections
// and drives them (flush pass, sweep, drain, revoke) through connection's private hooks, which is
// why it is connection's friend: the list links and flush flags are per-connection state that
// only the list's owner touches, on this worker's thread.
#include "herald/net/worker_context.hpp"

#include "connection.hpp"

#include "herald/hub/hub.hpp"

#include <algorithm>
#include <random>

namespace herald::net {

worker_context::worker_context(unsigned worker, asio::io_context& context,
                               const config::settings& settings, hub::shard& worker_shard,
                               broker::broker& the_broker,
                               metrics::worker_counters& worker_counters, process_state& process,
                               http_api& router, auth::context* security,
                               std::shared_ptr<const tls::context> certificate)
    : live_(settings),
      id(worker),
      ioc(context),
      cfg(live_),
      shard(worker_shard),
      broker(the_broker),
      counters(worker_counters),
      state(process),
      api(router),
      auth(security),
      tls_(std::move(certificate)),
      scratch_(64 * 1024, '\0'),
      pack_(64 * 1024, '\0') {
    gather_.reserve(k_max_gather);
}

void worker_context::set_settings(const config::settings& fresh) {
    // The replaced settings live until every connection has re-resolved what it took from them
    // (subscriptions point at their delivery rule), then go: nothing is kept across reloads.
    const config::settings replaced = std::exchange(live_, fresh);
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();  // as in tick(): the list may change under a hook
        c->on_settings_changed();
        c = next;
    }
}

void chunk_hold::free_local(local_ref* r) noexcept {
    delete r;
}

chunk_hold worker_context::hold_first(const std::shared_ptr<const hub::message>& m) {
    if (m.get() != local_of_) {
        local_of_ = m.get();
        local_.reset();
        return chunk_hold(m);
    }
    if (!local_.is_local()) local_ = chunk_hold::local(m);
    return local_;
}

void worker_context::want_flush(std::shared_ptr<connection> c) {
    pending_flush_.push_back(std::move(c));  // moved: each copy of a count is a locked instruction
    if (flush_posted_) return;
    flush_posted_ = true;
    // A busy worker (its last pass wrote to many connections) lets at least as long pass
    // between two flush passes as the last one took, capped: what arrives meanwhile joins the
    // same writes, so a burst costs one sendmsg per connection instead of one per loop turn,
    // and the worker spends at most about half its time in flush passes. Any other worker
    // flushes at the end of this loop turn.
    if (last_pass_writers_ >= k_cork_min_connections) {
        const auto due = last_pass_end_ + std::min(last_pass_length_, cork_cap(last_pass_writers_));
        if (clock::now() < due) {
            // The timer is owned by its handler, so the io_context can destroy it at shutdown.
            auto t = std::make_shared<asio::steady_timer>(ioc, due);
            t->async_wait([this, t](error_code ec) {
                if (!ec) flush_pass();
            });
            counters.corked_flushes.add();
            return;
        }
    }
    asio::post(ioc, [this] { flush_pass(); });
}

void worker_context::flush_pass() {
    const auto start = clock::now();
    flush_posted_ = false;
    auto batch = std::move(pending_flush_);
    pending_flush_.clear();
    last_pass_writers_ = batch.size();
    // As in shard::deliver: the next connections' lines, and the one after this one's send
    // queue, are asked for ahead (each write takes microseconds, so one or two ahead is enough).
    const std::size_t n = batch.size();
    for (std::size_t i = 0; i < n; ++i) {
        if (i + 2 < n) batch[i + 2]->prefetch_enqueue();
        if (i + 1 < n) batch[i + 1]->prefetch_queue();
        auto& c = batch[i];
        c->flush_wanted_ = false;
        if (c->closed_) continue;
        if (c->slow_)
            c->on_slow_consumer();
        else
            c->flush();
    }
    batch.clear();
    if (pending_flush_.empty()) pending_flush_.swap(batch);  // keep the capacity
    last_pass_end_ = clock::now();
    last_pass_length_ = last_pass_end_ - start;
}

void worker_context::attach(connection& c) noexcept {
    c.next_ = head_;
    c.prev_ = nullptr;
    if (head_) head_->prev_ = &c;
    head_ = &c;
    c.attached_ = true;
    count_.fetch_add(1, std::memory_order_relaxed);
}

void worker_context::detach(connection& c) noexcept {
    if (!c.attached_) return;
    if (c.prev_)
        c.prev_->next_ = c.next_;
    else
        head_ = c.next_;
    if (c.next_) c.next_->prev_ = c.prev_;
    c.prev_ = c.next_ = nullptr;
    c.attached_ = false;
    count_.fetch_sub(1, std::memory_order_relaxed);
}

void worker_context::tick(time_point now) {
    std::size_t queued = 0;
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        queued += c->output_bytes();
        if (now >= c->close_deadline_ || (c->lingering_ && c->linger_done())) {
            c->close_now();
        } else {
            c->on_tick(now);
            c->trim_idle(now);
        }
        c = next;
    }
    if (!drain_due_.empty()) drain_due(now);
    counters.queued_bytes.add(static_cast<std::int64_t>(queued) - counters.queued_bytes.get());
}

void worker_context::record_subscribe(const hub::subscription& s, const hub::subscribe_result& r,
                                      metrics::transport t, bool* reconnect_counted) noexcept {
    counters.subscribe_duration.observe(clock::now() - s.asked);
    if (!r.resume_requested) return;
    (r.recovered ? counters.resumes_recovered : counters.resumes_failed).add();
    using metrics::resume_outcome;
    // "gap too large": the position is older than what history holds (see broker/history.cpp).
    counters.resumed(r.recovered                   ? resume_outcome::recovered
                     : r.reason == "gap too large" ? resume_outcome::too_old
                                                   : resume_outcome::reset);
    if (reconnect_counted && !*reconnect_counted) {
        *reconnect_counted = true;
        counters.reconnections[static_cast<std::size_t>(t)].add();
    }
}

std::size_t worker_context::revoke(std::string_view user) {
    std::size_t n = 0;
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        if (c->revoke(user)) ++n;
        c = next;
    }
    return n;
}

void worker_context::drain() {
    // Past drain_timeout the process exits anyway: a longer spread is cut to it.
    const auto spread = std::min(cfg.shutdown.drain_spread, cfg.shutdown.drain_timeout);
    const auto now = clock::now();
    // Each stream gets a uniformly random moment in the window: N workers' streams together
    // leave at an even rate, whatever their number, with no coordination between workers.
    std::minstd_rand rng(static_cast<unsigned>(now.time_since_epoch().count()) + id);
    std::uniform_int_distribution<clock::rep> at(
        0, std::chrono::duration_cast<clock::duration>(spread).count());
    // The reconnect hint is drawn apart from the moment: a client's reconnect then lands anywhere
    // in [its close, its close + spread], so even clients closed together (a proxy cutting many
    // at once) come back spread out.
    std::uniform_int_distribution<milliseconds::rep> hint(0, spread.count());
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        const bool stream =
            c->transport_ == metrics::transport::ws || c->transport_ == metrics::transport::sse;
        if (spread.count() > 0 && stream)
            drain_due_.push_back({now + clock::duration(at(rng)), milliseconds(hint(rng)), keep});
        else
            c->on_drain(std::nullopt);  // plain HTTP and long-polls: answered now, hold nothing
        c = next;
    }
    std::sort(drain_due_.begin(), drain_due_.end(),
              [](const auto& a, const auto& b) { return a.at > b.at; });
}

void worker_context::drain_due(time_point now) {
    while (!drain_due_.empty() && drain_due_.back().at <= now) {
        const auto& turn = drain_due_.back();
        if (auto c = turn.c.lock(); c && !c->closed_) c->on_drain(turn.reconnect_after);
        drain_due_.pop_back();
    }
}

void worker_context::reload_tls(std::shared_ptr<const tls::context> fresh) noexcept {
    tls_ = std::move(fresh);
}

}  // namespace herald::net
