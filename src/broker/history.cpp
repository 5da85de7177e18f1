#include "history.hpp"

#include "herald/broker/broker.hpp"

#include "herald/wire/topic.hpp"

#include <atomic>

#include <algorithm>

namespace herald::broker {

namespace {
std::atomic<const config::settings*> g_live_history{nullptr};
}  // namespace

void set_live_history(const config::settings* live) noexcept {
    g_live_history.store(live, std::memory_order_release);
}

history_policy policy_for(const config::settings& configured, std::string_view topic) {
    const auto* live = g_live_history.load(std::memory_order_acquire);
    const auto& cfg = live ? *live : configured;
    for (const auto& rule : cfg.history.namespaces)
        if (wire::pattern_match(rule.pattern, topic)) return {rule.size, rule.ttl};
    return {cfg.history.size, cfg.history.ttl};
}

const char* to_string(recovery r) noexcept {
    switch (r) {
        case recovery::ok: return "ok";
        case recovery::epoch_changed: return "epoch changed";
        case recovery::gap_too_large: return "gap too large";
        case recovery::bad_offset: return "offset ahead of stream";
    }
    return "unknown";
}

offset_range history_window(std::uint64_t first, std::uint64_t top,
                            std::optional<std::uint64_t> after, std::size_t limit) noexcept {
    if (limit == 0 || first > top) return {};
    offset_range r{first, top};
    if (after) {
        if (*after >= top) return {};
        r.from = std::max(first, *after + 1);
        if (top - r.from >= limit) r.to = r.from + limit - 1;
    } else if (top - first >= limit) {
        r.from = top - limit + 1;
    }
    return r;
}

recovery check_recovery(std::string_view epoch, std::uint64_t first, std::uint64_t top,
                        const hub::stream_pos& pos, std::size_t max_messages) noexcept {
    if (pos.epoch != epoch) return recovery::epoch_changed;
    if (pos.offset > top) return recovery::bad_offset;
    const std::uint64_t missing = top - pos.offset;
    if (missing == 0) return recovery::ok;
    if (missing > max_messages || pos.offset + 1 < first) return recovery::gap_too_large;
    return recovery::ok;
}

history_store::history_store(std::size_t max_bytes, std::uint64_t seed)
    : max_bytes_(max_bytes), rng_(seed) {}

std::string history_store::new_epoch() {
    static constexpr char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string e(8, '0');
    for (auto& c : e) c = alphabet[rng_() % 36];
    return e;
}

history_store::stream* history_store::find(const std::string& topic) {
    auto it = streams_.find(topic);
    return it == streams_.end() ? nullptr : it->second.get();
}

history_store::stream& history_store::open(const std::string& topic, const history_policy& policy,
                                           time_point now) {
    auto& slot = streams_[topic];
    if (!slot) {
        slot = std::make_unique<stream>();
        slot->topic = topic;
        slot->epoch = new_epoch();
        slot->id = ++next_stream_id_;
        by_id_.emplace(slot->id, slot.get());
    }
    slot->policy = policy;  // a reload may have changed it
    slot->last_activity = now;
    return *slot;
}

void history_store::append_none(stream& s, time_point now) {
    s.last_activity = now;
    // History must stay a run ending at top: what a reload left from a larger size goes.
    while (!s.ring.empty()) pop_front(s);
}

void history_store::append(stream& s, hub::message_ptr m) {
    if (!keeps(s)) {
        append_none(s, m->created);
        return;
    }
    s.last_activity = m->created;
    const std::size_t fp = m->footprint();
    if (fp > max_bytes_) {
        // Larger than all history may hold. History must stay a run of consecutive offsets, so
        // everything older goes too: a resume from before this message then fails plainly.
        while (!s.ring.empty()) pop_front(s);
        return;
    }
    fifo_.emplace_back(s.id, m->offset);
    s.ring.push_back(std::move(m));
    s.bytes += fp;
    bytes_ += fp;
    ++live_messages_;
    while (s.ring.size() > s.policy.size) pop_front(s);
    while (bytes_ > max_bytes_) evict_oldest();
    if (fifo_.size() > 2 * live_messages_ + 1024) compact_fifo();
}

void history_store::pop_front(stream& s) {
    const std::size_t fp = s.ring.front()->footprint();
    s.ring.pop_front();
    s.bytes -= fp;
    bytes_ -= fp;
    --live_messages_;
}

void history_store::evict_oldest() {
    while (!fifo_.empty()) {
        auto [sid, off] = fifo_.front();
        fifo_.pop_front();
        auto it = by_id_.find(sid);
        if (it == by_id_.end()) continue;
        stream& s = *it->second;
        if (s.ring.empty() || s.ring.front()->offset != off) continue;  // already gone
        pop_front(s);
        return;
    }
}

void history_store::compact_fifo() {
    std::deque<std::pair<std::uint64_t, std::uint64_t>> kept;
    for (const auto& [sid, off] : fifo_) {
        auto it = by_id_.find(sid);
        if (it == by_id_.end()) continue;
        const auto& ring = it->second->ring;
        if (!ring.empty() && ring.front()->offset <= off) kept.emplace_back(sid, off);
    }
    fifo_.swap(kept);
}

std::uint64_t history_store::first(const stream& s) noexcept {
    return s.ring.empty() ? s.top + 1 : s.ring.front()->offset;
}

void history_store::copy(const stream& s, offset_range r, std::vector<hub::message_ptr>& out) {
    if (r.empty()) return;
    // Offsets in a ring are consecutive, so the wanted ones sit at known indexes.
    const auto base = first(s);
    for (auto o = r.from; o <= r.to; ++o) out.push_back(s.ring[static_cast<std::size_t>(o - base)]);
}

recovery history_store::since(const stream& s, const hub::stream_pos& pos, std::size_t max_messages,
                              std::vector<hub::message_ptr>& out) const {
    const auto rec = check_recovery(s.epoch, first(s), s.top, pos, max_messages);
    if (rec == recovery::ok) copy(s, {pos.offset + 1, s.top}, out);
    return rec;
}

void history_store::idempotency_keys::pop_oldest() {
    offsets.erase(order.front().second);
    order.pop_front();
}

bool history_store::idempotency_keys::expire(time_point now, std::chrono::milliseconds window) {
    while (!order.empty() && now - order.front().first >= window) pop_oldest();
    return order.empty();
}

std::optional<std::uint64_t> history_store::seen_key(stream& s, const std::string& key,
                                                     time_point now,
                                                     std::chrono::milliseconds window) {
    if (!s.keys) return std::nullopt;
    if (s.keys->expire(now, window)) {
        s.keys.reset();
        return std::nullopt;
    }
    auto it = s.keys->offsets.find(key);
    if (it == s.keys->offsets.end()) return std::nullopt;
    return it->second;
}

void history_store::remember_key(stream& s, std::string key, std::uint64_t offset, time_point now) {
    static constexpr std::size_t k_max_keys_per_topic = 100'000;
    if (!s.keys) s.keys = std::make_unique<idempotency_keys>();
    auto& k = *s.keys;
    if (k.order.size() >= k_max_keys_per_topic) k.pop_oldest();
    k.offsets.emplace(key, offset);
    k.order.emplace_back(now, std::move(key));
}

void history_store::expire(time_point now, std::chrono::milliseconds key_window,
                           const std::function<bool(const std::string&)>& has_subscribers) {
    for (auto it = streams_.begin(); it != streams_.end();) {
        stream& s = *it->second;
        while (!s.ring.empty() && now - s.ring.front()->created >= s.policy.ttl) pop_front(s);
        if (s.keys && s.keys->expire(now, key_window)) s.keys.reset();
        // A stream nobody holds and nothing is kept for loses its epoch: a later subscriber
        // resuming from it is told plainly that it cannot.
        if (s.ring.empty() && !s.keys && now - s.last_activity >= s.policy.ttl &&
            !has_subscribers(s.topic)) {
            by_id_.erase(s.id);
            it = streams_.erase(it);
            continue;
        }
        ++it;
    }
    if (fifo_.size() > 2 * live_messages_ + 1024) compact_fifo();
}

}  // namespace herald::broker
