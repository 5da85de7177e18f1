#include "herald/hub/message.hpp"

#include "herald/common/text.hpp"
#include "herald/hub/topic.hpp"
#include "herald/net/sse_codec.hpp"
#include "herald/net/ws_codec.hpp"

#include <nlohmann/json.hpp>

namespace herald::hub {
namespace {
std::string json_string(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
}
}  // namespace

std::string message::data_json_member() const {
    switch (kind) {
        case payload_kind::json: return "\"data\":" + payload;
        case payload_kind::binary: return "\"data_base64\":\"" + base64_encode(payload) + "\"";
        case payload_kind::text: break;
    }
    return "\"data\":" + json_string(payload);
}

std::size_t message::footprint() const noexcept {
    return sizeof(message) + topic.size() + epoch.size() + event.size() + payload.size() +
           ws_frames.size() + sse_event.size();
}

message_ptr make_message(std::string topic, std::string epoch, std::uint64_t offset,
                         payload_kind kind, std::string payload, std::string event,
                         time_point created) {
    auto m = std::make_shared<message>();
    m->topic = std::move(topic);
    m->epoch = std::move(epoch);
    m->epoch_key = topic_hash(m->epoch);
    m->offset = offset;
    m->kind = kind;
    m->payload = std::move(payload);
    m->event = std::move(event);
    m->created = created;

    std::string head;
    head.reserve(64 + m->topic.size() + m->event.size());
    head += "{\"type\":\"message\",\"topic\":\"";
    head += m->topic;  // topic charset needs no escaping
    head += "\",\"epoch\":\"";
    head += m->epoch;
    head += "\",\"offset\":";
    head += std::to_string(m->offset);
    if (!m->event.empty()) {
        head += ",\"event\":\"";
        head += m->event;  // event charset needs no escaping
        head += '"';
    }
    if (m->kind == payload_kind::binary) {
        head += ",\"binary\":true}";
        m->ws_frames.reserve(head.size() + m->payload.size() + 24);
        ws::append_frame(m->ws_frames, ws::opcode::text, head);
        ws::append_frame(m->ws_frames, ws::opcode::binary, m->payload);
        m->sse_event =
            sse::encode_body(m->event.empty() ? "binary" : m->event, base64_encode(m->payload));
    } else {
        head += ',';
        head += m->data_json_member();
        head += '}';
        m->ws_frames = ws::make_frame(ws::opcode::text, head);
        m->sse_event = sse::encode_body(m->event, m->payload);
    }
    auto id = sse::encode_id_line(m->epoch + ":" + std::to_string(m->offset));
    m->sse_body_at = id.size();
    m->sse_event.insert(0, id);
    return m;
}

message_ptr make_reset(std::string topic, std::string epoch, std::uint64_t offset,
                       std::string reason, time_point created) {
    auto m = std::make_shared<message>();
    m->topic = std::move(topic);
    m->epoch = std::move(epoch);
    m->epoch_key = topic_hash(m->epoch);
    m->offset = offset;
    m->kind = payload_kind::json;
    m->reset = true;
    m->reset_reason = std::move(reason);
    m->created = created;
    // Topic and epoch charsets need no escaping.
    m->payload = "{\"topic\":\"" + m->topic + "\",\"epoch\":\"" + m->epoch +
                 "\",\"offset\":" + std::to_string(offset) +
                 ",\"reason\":" + json_string(m->reset_reason) + "}";
    m->ws_frames = ws::make_frame(ws::opcode::text, "{\"type\":\"reset\"," + m->payload.substr(1));
    m->sse_event = sse::encode_body("reset", m->payload);
    auto id = sse::encode_id_line(m->epoch + ":" + std::to_string(offset));
    m->sse_body_at = id.size();
    m->sse_event.insert(0, id);
    return m;
}

}  // namespace herald::hub
