#include "herald/hub/message.hpp"

#include "herald/common/block_cache.hpp"
#include "herald/common/text.hpp"
#include "herald/wire/topic.hpp"
#include "herald/wire/envelope.hpp"
#include "herald/wire/payload.hpp"
#include "herald/wire/sse_codec.hpp"
#include "herald/wire/ws_codec.hpp"
#include "herald/wire/ws_deflate.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <type_traits>
#include <new>

namespace herald::hub {

std::string message::data_json_member() const {
    return wire::data_member(kind, payload);
}

std::size_t message::footprint() const noexcept {
    return sizeof(message) + topic.size() + epoch.size() + event.size() + payload_store_.size() +
           block_tail_ + reset_reason.size() + wire_bytes_;
}

namespace {
// Publishes `built` in `slot` unless another thread did first; returns the one that stays.
template <class T>
const T& publish_once(std::atomic<const T*>& slot, std::unique_ptr<T> built) {
    const T* expected = nullptr;
    if (slot.compare_exchange_strong(expected, built.get(), std::memory_order_acq_rel,
                                     std::memory_order_acquire))
        return *built.release();
    return *expected;  // another worker built it first
}
}  // namespace

const deflated_frames& message::ws_deflated(int level) const {
    if (const auto* d = deflated_.load(std::memory_order_acquire)) return *d;
    auto built = std::make_unique<deflated_frames>();
    built->bytes = ws::deflate_frames(ws_frames, level, built->window_bits);
    return publish_once(deflated_, std::move(built));
}

const std::string& message::conflation_key(std::string_view field) const {
    if (const auto* k = key_.load(std::memory_order_acquire)) return *k;
    auto built = std::make_unique<std::string>();
    if (kind == payload_kind::json) *built = wire::json_field_text(payload, field);
    return publish_once(key_, std::move(built));
}

std::size_t append_messages_json(std::string& out, const std::vector<message_ptr>& messages,
                                 std::size_t max_bytes) {
    out += '[';
    std::size_t taken = 0;
    for (; taken < messages.size(); ++taken) {
        const auto& m = *messages[taken];
        const std::size_t before = out.size();
        if (taken) out += ',';
        wire::append_list_entry(out, m.offset, m.event, m.data_json_member());
        if (taken > 0 && out.size() + 1 > max_bytes) {
            out.resize(before);
            break;
        }
    }
    out += ']';
    return taken;
}

namespace {
// The room each wire form of `m` is built in: the unescaped envelope's size, so escaping (rare)
// is all that may grow a form past it.
struct wire_room {
    std::size_t ws_header;  // the text frame's header, for the unescaped JSON's length
    std::size_t ws;
    std::size_t sse;
    [[nodiscard]] std::size_t total() const noexcept { return ws + sse; }
};

wire_room wire_reserve(const message& m) noexcept {
    const bool binary = m.kind == payload_kind::binary;
    const std::size_t data_bytes = binary ? 0 : m.payload.size();
    const std::size_t fixed = m.topic.size() + m.epoch.size() + m.event.size() + 96;
    const std::size_t header = ws::frame_header_size(fixed - 32 + data_bytes);
    return {header, header + fixed + data_bytes + (binary ? m.payload.size() + 10 : 0),
            fixed + (binary ? m.payload.size() * 4 / 3 + 4 : m.payload.size())};
}
}  // namespace

void message::build_wire_forms() const {
    if (!ws_frames.empty()) return;  // built (a built text frame is never empty)
    // Only the owner gets here, and no other worker reads these two members yet (see the
    // header); the message was made non-const by make_message().
    auto& self = const_cast<message&>(*this);
    const wire_room room = wire_reserve(*this);
    const bool binary = kind == payload_kind::binary;

    // Both wire forms are built in place, one allocation each (the 10,000 topics x 1 subscriber
    // benchmark makes one message per delivery). The envelope's length is known only once it is
    // built (escaping), so the text frame's header gets the room the unescaped size needs and is
    // moved in the rare case escaping crossed a length class.
    auto& f = self.ws_frames;
    f.reserve(room.ws);
    f.append(room.ws_header, '\0');
    wire::append_message_envelope(f, topic, epoch, offset, event, kind, payload);
    const std::size_t json = f.size() - room.ws_header;
    const std::size_t header = ws::frame_header_size(json);
    if (header != room.ws_header) f.replace(0, room.ws_header, header, '\0');
    ws::write_frame_header(f.data(), 0x80 | static_cast<std::uint8_t>(ws::opcode::text), json);
    if (binary) ws::append_frame(f, ws::opcode::binary, payload);

    auto& e = self.sse_event;
    e.reserve(room.sse);
    e += "id: ";
    e += epoch;
    e += ':';
    char num[24];
    e.append(num, std::to_chars(num, num + sizeof num, offset).ptr);
    e += '\n';
    self.sse_body_at = e.size();
    if (binary)
        sse::append_body(e, event.empty() ? "binary" : event, base64_encode(payload));
    else
        sse::append_body(e, event, payload);
}

namespace {
// A worker makes a message per publish and, with history, frees one (the evicted one) in the
// same turn. A message's block (its shared_ptr control block, the message, and a small payload
// after it) is therefore recycled per thread (common/block_cache.hpp) per size class (payload
// room rounded up to 64 B, classes up to k_inline_payload; at most 16 blocks each, about 40 KiB
// per thread).
constexpr std::size_t k_inline_payload = 256;
constexpr std::size_t k_tail_step = 64;
constexpr std::size_t k_classes = k_inline_payload / k_tail_step + 1;  // tails 0, 64, .., 256

constexpr std::size_t tail_room(std::size_t payload) noexcept {
    return (payload + k_tail_step - 1) / k_tail_step * k_tail_step;
}

struct message_blocks_tag {};
using message_blocks = block_cache<message_blocks_tag, k_classes, 16>;

// allocate_shared's allocator: one block of the control block (with the message in it) and
// `tail` bytes after it, whose address allocate() reports through `tail_at`.
template <class T>
struct block_allocator {
    using value_type = T;
    std::size_t tail = 0;  // a multiple of k_tail_step
    char** tail_at = nullptr;

    block_allocator(std::size_t t, char** at) noexcept : tail(t), tail_at(at) {}
    template <class U>
    block_allocator(const block_allocator<U>& o) noexcept : tail(o.tail), tail_at(o.tail_at) {}

    [[nodiscard]] bool recycled(std::size_t n) const noexcept {
        return n == 1 && tail <= k_inline_payload && alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    }
    T* allocate(std::size_t n) {
        void* p = nullptr;
        if (recycled(n)) p = message_blocks::take(tail / k_tail_step);
        if (!p) p = ::operator new(n * sizeof(T) + tail);
        if (tail_at) *tail_at = static_cast<char*>(p) + n * sizeof(T);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (recycled(n) && message_blocks::give(p, tail / k_tail_step)) return;
        ::operator delete(p);
    }
    friend bool operator==(const block_allocator& a, const block_allocator& b) noexcept {
        return a.tail == b.tail;
    }
};
}  // namespace

message_ptr make_message(std::string topic, std::string epoch, std::uint64_t offset,
                         payload_kind kind, std::string payload, std::string event,
                         time_point created, wire::trace_id trace, bool wire_forms) {
    const bool inline_payload = payload.size() <= k_inline_payload;
    const std::size_t tail = inline_payload ? tail_room(payload.size()) : 0;
    char* room = nullptr;
    auto m = std::allocate_shared<message>(block_allocator<message>(tail, &room));
    if (inline_payload) {
        if (!payload.empty()) std::memcpy(room, payload.data(), payload.size());
        m->payload = std::string_view(room, payload.size());
        m->block_tail_ = tail;
    } else {
        m->payload_store_ = std::move(payload);
        m->payload = m->payload_store_;
    }
    m->trace = trace;
    m->topic = std::move(topic);
    m->epoch = std::move(epoch);
    m->epoch_key = wire::topic_hash(m->epoch);
    m->offset = offset;
    m->kind = kind;
    m->event = std::move(event);
    m->created = created;

    m->wire_bytes_ = wire_reserve(*m).total();
    if (wire_forms) m->build_wire_forms();
    return m;
}

message_ptr make_reset(std::string topic, std::string epoch, std::uint64_t offset,
                       std::string reason, time_point created) {
    auto m = std::make_shared<message>();
    m->topic = std::move(topic);
    m->epoch = std::move(epoch);
    m->epoch_key = wire::topic_hash(m->epoch);
    m->offset = offset;
    m->kind = payload_kind::json;
    m->reset = true;
    m->reset_reason = std::move(reason);
    m->created = created;
    m->payload_store_ = wire::reset_body(m->topic, m->epoch, offset, m->reset_reason);
    m->payload = m->payload_store_;
    m->ws_frames = ws::make_frame(ws::opcode::text, wire::reset_frame_json(m->payload));
    m->sse_event = sse::encode_body("reset", m->payload);
    auto id = sse::encode_id_line(m->epoch + ":" + std::to_string(offset));
    m->sse_body_at = id.size();
    m->sse_event.insert(0, id);
    m->wire_bytes_ = m->ws_frames.size() + m->sse_event.size();
    return m;
}

}  // namespace herald::hub
