#include "herald/wire/envelope.hpp"

#include "herald/common/text.hpp"

#include <nlohmann/json.hpp>

namespace herald::wire {

std::string json_quote(std::string_view s) {
    // Callers pass UTF-8; invalid bytes would pass through unchanged, so sanitise them first.
    if (!is_valid_utf8(s))
        return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string out;
    append_json_string(out, s);
    return out;
}

std::string error_body(std::string_view code, std::string_view message) {
    std::string b = "{\"error\":{\"code\":";
    b += json_quote(code);
    b += ",\"message\":";
    b += json_quote(message);
    b += "}}";
    return b;
}

std::string data_member(payload_kind kind, std::string_view payload) {
    switch (kind) {
        case payload_kind::json: return cat({"\"data\":", payload});
        case payload_kind::binary: return cat({"\"data_base64\":\"", base64_encode(payload), "\""});
        case payload_kind::text: break;
    }
    std::string out = "\"data\":";
    append_json_string(out, payload);
    return out;
}

std::string message_envelope(std::string_view topic, std::string_view epoch, std::uint64_t offset,
                             std::string_view event, payload_kind kind, std::string_view payload) {
    std::string head;
    head.reserve(64 + topic.size() + event.size() +
                 (kind == payload_kind::binary ? 0 : payload.size()));
    head += "{\"type\":\"message\",\"topic\":\"";
    head += topic;
    head += "\",\"epoch\":\"";
    head += epoch;
    head += "\",\"offset\":";
    head += std::to_string(offset);
    if (!event.empty()) {
        head += ",\"event\":\"";
        head += event;
        head += '"';
    }
    if (kind == payload_kind::binary) {
        head += ",\"binary\":true}";
        return head;
    }
    head += ',';
    head += data_member(kind, payload);
    head += '}';
    return head;
}

std::string reset_body(std::string_view topic, std::string_view epoch, std::uint64_t offset,
                       std::string_view reason) {
    std::string out = cat({"{\"topic\":\"", topic, "\",\"epoch\":\"", epoch,
                           "\",\"offset\":", std::to_string(offset), ",\"reason\":"});
    append_json_string(out, reason);
    out += '}';
    return out;
}

std::string reset_frame_json(std::string_view body) {
    return cat({"{\"type\":\"reset\",", body.substr(1)});
}

void append_list_entry(std::string& out, std::uint64_t offset, std::string_view event,
                       std::string_view data_member) {
    out += "{\"offset\":";
    out += std::to_string(offset);
    if (!event.empty()) {
        out += ",\"event\":\"";
        out += event;
        out += '"';
    }
    out += ',';
    out += data_member;
    out += '}';
}

std::string ws_error(std::string_view id, std::string_view code, std::string_view message) {
    std::string o = "{\"type\":\"error\"";
    if (!id.empty()) o += cat({",\"id\":", id});
    o += cat({",\"code\":", json_quote(code), ",\"message\":", json_quote(message), "}"});
    return o;
}

}  // namespace herald::wire
