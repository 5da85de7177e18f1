#include "holdback.hpp"

#include "herald/wire/topic.hpp"

#include <algorithm>

namespace herald::net {

namespace {
// A state's own memory: the struct, the deque's map and its first block (libstdc++: 512 B).
constexpr std::size_t k_state_cost = sizeof(held_slot::state) + 512 + 8 * sizeof(void*);
// The rule of a slot that still holds messages when a reload removed its rule: they leave
// unbounded, at once (disconnect, no interval); release() then clears it.
const config::delivery_rule k_release_rule{};
}  // namespace

const config::delivery_rule* delivery_rule_for(const config::settings& cfg,
                                               std::string_view topic) noexcept {
    for (const auto& r : cfg.delivery.namespaces) {
        if (!wire::pattern_match(r.pattern, topic)) continue;
        const bool changes =
            r.slow_consumer != config::slow_policy::disconnect || r.delivery_interval.count() > 0;
        return changes ? &r : nullptr;
    }
    return nullptr;
}

held_slot::~held_slot() {
    if (held) held->conn->release(*this);
}

std::size_t holding_connection::cost(const hub::message& m) const noexcept {
    return wire_size(m) + sizeof(hub::message_ptr);
}

bool holding_connection::hold_by_rule(held_slot& s, const hub::message_ptr& m, std::size_t size) {
    if (stopped_) return false;
    if (!s.held && s.rule->delivery_interval.count() == 0 && output_bytes() + size <= hold_mark())
        return false;
    hold(s, m, clock::now());
    return true;
}

void holding_connection::hold(held_slot& s, const hub::message_ptr& m, time_point now) {
    const auto& rule = *s.rule;
    if (!hs_) hs_ = std::make_unique<hold_state>();
    std::size_t& total = hs_->bytes;
    if (!s.held) {
        s.held = std::make_unique<held_slot::state>();
        s.held->bytes = k_state_cost;
        s.held->conn = this;
        total += k_state_cost;
        hs_->slots.push_back(&s);
        if (rule.delivery_interval.count() > 0) {
            // The next tick of the interval's cadence (multiples of it on the steady clock): at
            // most one interval away, and the same instant for every connection of the worker,
            // so their batches leave in one loop turn.
            const auto iv = std::chrono::duration_cast<clock::duration>(rule.delivery_interval);
            s.held->due = time_point((now.time_since_epoch() / iv + 1) * iv);
            arm_timer(s.held->due);
        }
    }
    auto& h = *s.held;
    w_.counters.messages_held.add();
    if (rule.slow_consumer == config::slow_policy::conflate) {
        // Only the newest message per key waits; the list stays in offset order.
        const auto& key = m->conflation_key(rule.key);
        for (auto it = h.msgs.begin(); it != h.msgs.end(); ++it) {
            if ((*it)->conflation_key(rule.key) != key) continue;
            const std::size_t c = cost(**it);
            h.bytes -= c;
            total -= c;
            h.msgs.erase(it);
            w_.counters.messages_conflated.add();
            break;
        }
    }
    h.msgs.push_back(m);
    const std::size_t c = cost(*m);
    h.bytes += c;
    total += c;
    if (rule.slow_consumer != config::slow_policy::disconnect) {
        // Bounded: `keep` messages per topic and hold_mark() bytes per connection (at least the
        // newest message of each topic stays). Past either, the oldest go, and the client is told.
        while (h.msgs.size() > 1 && (h.msgs.size() > rule.keep || total > hold_mark())) {
            const auto& old = h.msgs.front();
            if (h.skipped_to == 0) h.skipped_from = old->offset;
            h.skipped_to = old->offset;
            const std::size_t oc = cost(*old);
            h.bytes -= oc;
            total -= oc;
            h.msgs.pop_front();
            w_.counters.messages_dropped.add();
        }
    } else if (total > hold_mark()) {
        // An interval's burst past the mark leaves now; the send queue's bound (disconnect)
        // applies to it as to any message.
        h.due = std::min(h.due, now);
    }
    if (h.due <= now) ask_room();
}

void holding_connection::drain_held() {
    room_asked_ = false;
    if (stopped_ || closed() || !hs_) return;
    auto& slots = hs_->slots;
    std::size_t& total = hs_->bytes;
    const time_point now = clock::now();
    time_point next = time_point::max();
    bool left = false;
    for (std::size_t i = 0; i < slots.size();) {
        held_slot& s = *slots[i];
        auto& h = *s.held;
        if (h.due > now) {
            next = std::min(next, h.due);
            ++i;
            continue;
        }
        if (h.due != time_point{}) {
            // An interval ended: what it gathered leaves now, in one gathered write.
            w_.counters.interval_flushes.add();
            h.due = time_point{};
        }
        if (h.skipped_to != 0) {
            send_skipped(s, h.skipped_from, h.skipped_to);
            h.skipped_from = h.skipped_to = 0;
        }
        // disconnect (an interval only): everything goes, and the send queue's bound decides.
        const bool bounded = s.rule->slow_consumer != config::slow_policy::disconnect;
        while (!h.msgs.empty() && (!bounded || output_bytes() <= hold_mark())) {
            const hub::message_ptr m = std::move(h.msgs.front());
            h.msgs.pop_front();
            const std::size_t c = cost(*m);
            h.bytes -= c;
            total -= c;
            send_held(s, m);
        }
        if (stopped_) return;  // a send ended the connection; its slots are gone
        if (h.msgs.empty()) {
            release(s);  // caught up: an idle subscription holds nothing
            continue;
        }
        left = true;
        ++i;
    }
    if (left) ask_room();
    if (next != time_point::max()) arm_timer(next);
}

void holding_connection::drop_held(held_slot& s) noexcept {
    if (s.held) release(s);
}

void holding_connection::rebind(held_slot& s, std::string_view topic) {
    s.rule = delivery_rule_for(w_.cfg, topic);
    if (!s.held) return;
    if (!s.rule) s.rule = &k_release_rule;
    // An interval the new rule does not have no longer holds what was gathered.
    if (s.rule->delivery_interval.count() == 0) s.held->due = time_point{};
    ask_room();
}

void holding_connection::release(held_slot& s) noexcept {
    hs_->bytes -= s.held->bytes;
    s.held.reset();
    if (s.rule == &k_release_rule) s.rule = nullptr;
    auto& slots = hs_->slots;
    const auto it = std::find(slots.begin(), slots.end(), &s);
    if (it != slots.end()) slots.erase(it);
}

void holding_connection::stop_holding() noexcept {
    stopped_ = true;
    if (!hs_) return;
    if (hs_->timer) hs_->timer->cancel();
    for (auto* s : hs_->slots) s->held.reset();
    hs_->slots.clear();
    hs_->bytes = 0;
}

void holding_connection::ask_room() {
    if (room_asked_) return;
    room_asked_ = true;
    want_room(hold_mark() / 2);
}

void holding_connection::arm_timer(time_point due) {
    auto& h = *hs_;
    if (due >= h.timer_due) return;
    if (!h.timer) h.timer = std::make_unique<asio::steady_timer>(w_.ioc);
    h.timer_due = due;
    // Re-arming cancels the earlier wait (it completes with operation_aborted and does nothing).
    h.timer->expires_at(due);
    h.timer->async_wait([self = shared_from_this(), this](error_code ec) {
        if (ec || stopped_) return;
        hs_->timer_due = time_point::max();
        drain_held();
    });
}

}  // namespace herald::net
