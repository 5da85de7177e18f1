#pragma once
// A published message: encoded once, immutable, shared by every recipient on every worker.
#include "herald/common/net.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/position.hpp"
#include "herald/wire/trace.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace herald::hub {

// The protocol's vocabulary (wire), named in the hub's interfaces.
using wire::payload_kind;
using wire::stream_pos;

// What a publisher asks for; validated before it reaches a broker.
struct publish_request {
    std::string topic;
    payload_kind kind = payload_kind::text;
    std::string payload;
    std::string event;
    std::string idempotency_key;
    wire::trace_id trace;  // from `traceparent`; empty when the publish carried none
};

// permessage-deflate form of a message's WebSocket frames (see message::ws_deflated()).
struct deflated_frames {
    std::string bytes;              // empty: compressing made nothing smaller
    std::uint8_t window_bits = 15;  // the window a client needs to inflate them
};

struct message;
using message_ptr = std::shared_ptr<const message>;

struct message {
    message() = default;
    message(const message&) = delete;
    message& operator=(const message&) = delete;
    ~message() {
        delete deflated_.load(std::memory_order_relaxed);
        delete key_.load(std::memory_order_relaxed);
    }

    std::string topic;
    std::string epoch;
    std::uint64_t epoch_key = 0;  // hash of `epoch`: compared per delivery instead of the string
    std::uint64_t offset = 0;
    payload_kind kind = payload_kind::text;
    std::string event;
    // The payload's bytes: a small one (up to k_inline_payload bytes, most pushes) is copied into
    // the message's own block (one allocation with the message and its shared_ptr count: evicting
    // it from history frees one block, not two); a larger one is moved into payload_store_.
    std::string_view payload;
    time_point created;
    // A reset is not a message: it moves subscribers to `epoch:offset` after a gap nobody can
    // fill (history lost, epoch changed). It travels the same ordered path as messages.
    bool reset = false;
    std::string reset_reason;
    // The publish's W3C trace id (16 bytes, empty when none), logged along the message's way.
    wire::trace_id trace;

    // Wire forms, built once: by make_message(), or, for a message it made for history alone (no
    // subscriber then), by build_wire_forms() on the owner before the message is first replayed.
    std::string ws_frames;        // one text frame, or a header text frame plus a binary frame
    std::string sse_event;        // "id: <epoch>:<offset>\n[event: e\n]data: ...\n\n"
    std::size_t sse_body_at = 0;  // where the part after the id line starts (multi-topic streams)

    [[nodiscard]] std::string_view sse_body() const noexcept {
        return std::string_view(sse_event).substr(sse_body_at);
    }

    // `data` (or `data_base64`) as a JSON fragment, for poll and history answers.
    [[nodiscard]] std::string data_json_member() const;
    // Bytes this message holds, for history accounting (the compressed form, built later and
    // smaller than ws_frames, is not counted). The same before and after build_wire_forms(): the
    // wire forms count at the size make_message() reserves for them.
    [[nodiscard]] std::size_t footprint() const noexcept;

    // Builds ws_frames and sse_event when make_message() left them out; else does nothing. Only
    // the owner worker that made the message calls it, before it hands the message to a delivery
    // (a replay); every other worker reads the forms after that hand-off's post. (Other workers
    // may meanwhile read the other members, e.g. for a history answer: no member they read is
    // written here.)
    void build_wire_forms() const;

    // The compressed frames, built once by the first worker that delivers this message to a
    // subscriber that negotiated compression. Any worker may call it: the first builders race
    // on one compare-exchange and the losers free theirs; later calls are one acquire load.
    [[nodiscard]] const deflated_frames& ws_deflated(int level) const;

    // slow_consumer: conflate: the value of the top-level field `field` of a JSON payload, as
    // JSON text; empty when there is none (such messages share one key per topic). Computed once
    // like ws_deflated(), only for a subscriber that is backlogged (`field` is per topic).
    [[nodiscard]] const std::string& conflation_key(std::string_view field) const;

private:
    friend message_ptr make_message(std::string, std::string, std::uint64_t, payload_kind,
                                    std::string, std::string, time_point, wire::trace_id, bool);
    friend message_ptr make_reset(std::string, std::string, std::uint64_t, std::string, time_point);
    std::string payload_store_;   // a payload not held in the block (see `payload`)
    std::size_t block_tail_ = 0;  // bytes of the block after the message, counted by footprint()
    std::size_t wire_bytes_ = 0;  // counted by footprint() for ws_frames and sse_event
    mutable std::atomic<const deflated_frames*> deflated_{nullptr};
    mutable std::atomic<const std::string*> key_{nullptr};
};

// `wire_forms` false: the WebSocket and SSE forms are left for build_wire_forms() (the owner
// keeps the message for history and nobody is subscribed to its topic yet; most such messages
// are never replayed, and building them was a fifth of a publish's instructions).
[[nodiscard]] message_ptr make_message(std::string topic, std::string epoch, std::uint64_t offset,
                                       payload_kind kind, std::string payload, std::string event,
                                       time_point created, wire::trace_id trace = {},
                                       bool wire_forms = true);

// Appends `[{"offset":..,"data":..},...]`: the message list of history and poll answers. Stops
// before an entry that would take `out` past `max_bytes` (but always takes the first), so that an
// answer fits the connection's output budget; returns how many messages it took.
std::size_t append_messages_json(std::string& out, const std::vector<message_ptr>& messages,
                                 std::size_t max_bytes = static_cast<std::size_t>(-1));

// {"type":"reset",...} for WebSocket, `event: reset` for SSE; see docs/protocol.md.
[[nodiscard]] message_ptr make_reset(std::string topic, std::string epoch, std::uint64_t offset,
                                     std::string reason, time_point created);

}  // namespace herald::hub
