#pragma once
// Messages a stream session holds back instead of queuing them at once, for the topics a
// delivery.namespaces rule matches. One rule for WebSocket and SSE:
//
// - slow_consumer drop_oldest / conflate: once the connection's output passes hold_mark() (half
//   of limits.max_queued_bytes), the topic's messages wait here as references to the shared
//   messages, bounded by the rule's `keep` per topic and hold_mark() bytes per connection (the
//   oldest dropped, the client told with a reset carrying the skipped range; conflate keeps the
//   newest per key), and leave in offset order once output falls to half the mark.
// - delivery_interval: a topic's messages wait until the next tick of the interval's cadence (at
//   most one interval), then leave together (one gathered write); with conflate only the newest
//   per key goes.
//
// A subscription holds nothing (no allocation) while it holds no message. Runs on the owning
// worker only.
#include "connection.hpp"
#include "herald/config/config.hpp"
#include "herald/hub/message.hpp"

#include <deque>
#include <memory>
#include <string_view>
#include <vector>

namespace herald::net {

// The delivery.namespaces rule for `topic` (first match), or null when it changes nothing
// (slow_consumer disconnect without delivery_interval).
[[nodiscard]] const config::delivery_rule* delivery_rule_for(const config::settings& cfg,
                                                             std::string_view topic) noexcept;

class holding_connection;

// A subscription's part: its rule, and what it holds (only while it holds something).
struct held_slot {
    held_slot() = default;
    held_slot(const held_slot&) = delete;
    held_slot& operator=(const held_slot&) = delete;
    ~held_slot();

    struct state {
        std::deque<hub::message_ptr> msgs;  // offset order
        std::size_t bytes = 0;              // charged to the connection (held_total())
        std::uint64_t skipped_from = 0;     // dropped since the last drain (0: none)
        std::uint64_t skipped_to = 0;
        time_point due{};  // delivery_interval: nothing leaves before this
        holding_connection* conn = nullptr;
    };
    // Two pointers per subscription; the rest only while it holds something.
    const config::delivery_rule* rule = nullptr;
    std::unique_ptr<state> held;
};

class holding_connection : public connection {
public:
    using connection::connection;

protected:
    // Holds `m` for `s` when its rule says so now (an interval, a backlog, or output past the
    // mark); false: the caller queues it at once. `size`: its bytes on this connection's wire.
    // Inline for the common case, a topic no rule matches (checked per delivery).
    [[nodiscard]] bool hold_if_wanted(held_slot& s, const hub::message_ptr& m, std::size_t size) {
        return s.rule && hold_by_rule(s, m, size);
    }
    // The stream moved on (a reset): what `s` held belongs to the old position.
    void drop_held(held_slot& s) noexcept;
    // A reload replaced the settings: `s` (a subscription to `topic`) follows `topic`'s rule in
    // the new ones from its next message. What it holds stays held, under the new rule; with no
    // rule left it leaves at once (the send queue's bound applies) and the slot holds no more.
    void rebind(held_slot& s, std::string_view topic);
    // Bytes of every held message and slot (part of session_held_bytes()).
    [[nodiscard]] std::size_t held_total() const noexcept { return hs_ ? hs_->bytes : 0; }
    [[nodiscard]] std::size_t hold_mark() const noexcept {
        return w_.cfg.limits.max_queued_bytes / 2;
    }
    // Sends what may leave now; the session calls it from on_output_room() (or lets this do).
    void drain_held();
    void on_output_room() override { drain_held(); }
    // The connection closes: nothing more is sent, the interval timer stops.
    void stop_holding() noexcept;

    // The session's part: queue one held message, or the reset for a dropped range `from..to`
    // (the client continues after `to`).
    virtual void send_held(held_slot& s, const hub::message_ptr& m) = 0;
    virtual void send_skipped(held_slot& s, std::uint64_t from, std::uint64_t to) = 0;
    // What a held message is charged: its bytes on this transport (shared with history and other
    // subscribers, so this over-counts) plus its slot.
    [[nodiscard]] virtual std::size_t wire_size(const hub::message& m) const noexcept = 0;

private:
    friend struct held_slot;
    [[nodiscard]] bool hold_by_rule(held_slot& s, const hub::message_ptr& m, std::size_t size);
    void hold(held_slot& s, const hub::message_ptr& m, time_point now);
    [[nodiscard]] std::size_t cost(const hub::message& m) const noexcept;
    // Releases `s`'s state (its bytes) and forgets it.
    void release(held_slot& s) noexcept;
    void ask_room();
    void arm_timer(time_point due);

    // Made when a slot first holds, kept until the connection goes: a connection that never
    // holds pays one pointer.
    struct hold_state {
        std::vector<held_slot*> slots;  // with a state, in the order they started holding
        std::size_t bytes = 0;          // charged to the connection (held_total())
        // delivery_interval only: made on first use.
        std::unique_ptr<asio::steady_timer> timer;
        time_point timer_due = time_point::max();
    };
    std::unique_ptr<hold_state> hs_;
    bool room_asked_ = false;
    bool stopped_ = false;
};

}  // namespace herald::net
