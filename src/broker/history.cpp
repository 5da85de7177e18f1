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

void history_ring::push_back(hub::message_ptr m, std::uint64_t offset, std::size_t footprint) {
    if (size_ == cap_) {
        const std::size_t cap = cap_ ? 2 * cap_ : 4;
        auto slots = std::make_unique<slot_storage[]>(cap);
        for (std::size_t i = 0; i < size_; ++i) {
            entry* from = slot(i);
            ::new (static_cast<void*>(slots[i].bytes)) entry(std::move(*from));
            from->~entry();
        }
        slots_ = std::move(slots);
        cap_ = cap;
        head_ = 0;
    }
    if (size_ == 0) first_ = offset;
    ::new (static_cast<void*>(slots_[(head_ + size_) & (cap_ - 1)].bytes))
        entry{std::move(m), footprint};
    ++size_;
}

history_ring::entry history_ring::pop_front() noexcept {
    entry* e = slot(0);
    entry out = std::move(*e);
    e->~entry();
    head_ = (head_ + 1) & (cap_ - 1);
    --size_;
    ++first_;
    return out;
}

void history_ring::release_if_empty() noexcept {
    if (size_ != 0) return;
    slots_.reset();
    cap_ = 0;
    head_ = 0;
}

void history_ring::prefetch_ends() const noexcept {
    if (cap_ == 0) return;
    __builtin_prefetch(slots_[(head_ + size_) & (cap_ - 1)].bytes, 1);
    if (size_ != 0) __builtin_prefetch(slot(0));
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
    s.ring.release_if_empty();
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
    const std::uint64_t offset = m->offset;
    fifo_.emplace_back(s.id, offset);
    s.ring.push_back(std::move(m), offset, fp);
    s.bytes += fp;
    bytes_ += fp;
    ++live_messages_;
    while (s.ring.size() > s.policy.size) pop_front(s);
    while (bytes_ > max_bytes_) evict_oldest();
    if (fifo_.size() > 2 * live_messages_ + 1024) compact_fifo();
}

void history_store::pop_front(stream& s) {
    auto e = s.ring.pop_front();
    s.bytes -= e.footprint;
    bytes_ -= e.footprint;
    --live_messages_;
    retire(std::move(e));
}

namespace {
// Asks for the cache lines of [p, p + size) (for writing: a release writes the reference count).
inline void prefetch_range(const void* p, std::size_t size) noexcept {
    const auto a = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63};
    const auto end = reinterpret_cast<std::uintptr_t>(p) + size;
    for (auto line = a; line < end; line += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(line), 1);
}
}  // namespace

void history_store::retire(history_ring::entry e) {
    // A large message is released at once: its lines are not the cost, and the retired messages
    // stay uncounted by bytes() (at most k_retire_delay x k_retire_max_bytes per worker).
    if (e.footprint > k_retire_max_bytes || !e.message) return;
    // The message and its shared_ptr control block (allocate_shared: one block, the count just
    // before the message); its payload's block is asked for halfway, once the message's own
    // lines (which hold the payload's pointer) are in.
    const auto* m = e.message.get();
    prefetch_range(reinterpret_cast<const char*>(m) - 16, sizeof(hub::message) + 16);
    auto& slot = retiring_[retire_at_];
    retire_at_ = (retire_at_ + 1) % k_retire_delay;
    if (const auto& mid = retiring_[(retire_at_ + k_retire_delay / 2) % k_retire_delay])
        prefetch_range(mid->payload.data() - 16,
                       std::min<std::size_t>(mid->payload.size(), 48) + 16);
    slot = std::move(e.message);  // releases the one retired k_retire_delay evictions ago
}

void history_store::evict_oldest() {
    while (!fifo_.empty()) {
        auto [sid, off] = fifo_.front();
        fifo_.pop_front();
        auto it = by_id_.find(sid);
        if (it == by_id_.end()) continue;
        stream& s = *it->second;
        if (s.ring.empty() || s.ring.first_offset() != off) continue;  // already gone
        pop_front(s);
        // The next eviction by bytes, a publish or so later, likely takes the next entry's
        // message: its stream's ring front is asked for now.
        if (!fifo_.empty()) {
            auto next = by_id_.find(fifo_.front().first);
            if (next != by_id_.end()) next->second->ring.prefetch_ends();
        }
        return;
    }
}

void history_store::compact_fifo() {
    std::deque<std::pair<std::uint64_t, std::uint64_t>> kept;
    for (const auto& [sid, off] : fifo_) {
        auto it = by_id_.find(sid);
        if (it == by_id_.end()) continue;
        const auto& ring = it->second->ring;
        if (!ring.empty() && ring.first_offset() <= off) kept.emplace_back(sid, off);
    }
    fifo_.swap(kept);
}

std::uint64_t history_store::first(const stream& s) noexcept {
    return s.ring.empty() ? s.top + 1 : s.ring.first_offset();
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
        s.ring.release_if_empty();
        if (s.keys && s.keys->expire(now, key_window)) s.keys.reset();
        // A stream nobody holds and nothing is kept for loses its epoch: a later subscriber
        // resuming from it is told plainly that it cannot.
        if (s.ring.empty() && !s.keys && now - s.last_activity >= s.policy.ttl &&
            !has_subscribers(s.topic)) {
            by_id_.erase(s.id);
            streams_.erase(it++);  // erasing leaves the other iterators valid
            continue;
        }
        ++it;
    }
    if (fifo_.size() > 2 * live_messages_ + 1024) compact_fifo();
}

}  // namespace herald::broker
