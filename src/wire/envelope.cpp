#include "herald/wire/envelope.hpp"

#include "herald/common/text.hpp"

#include <nlohmann/json.hpp>

#include <charconv>

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
    std::string out;
    append_data_member(out, kind, payload);
    return out;
}

void append_data_member(std::string& out, payload_kind kind, std::string_view payload) {
    switch (kind) {
        case payload_kind::json:
            out += "\"data\":";
            out += payload;
            return;
        case payload_kind::binary:
            out += "\"data_base64\":\"";
            out += base64_encode(payload);
            out += '"';
            return;
        case payload_kind::text: break;
    }
    out += "\"data\":";
    append_json_string(out, payload);
}

std::string message_envelope(std::string_view topic, std::string_view epoch, std::uint64_t offset,
                             std::string_view event, payload_kind kind, std::string_view payload) {
    std::string head;
    head.reserve(64 + topic.size() + event.size() +
                 (kind == payload_kind::binary ? 0 : payload.size()));
    append_message_envelope(head, topic, epoch, offset, event, kind, payload);
    return head;
}

void append_message_envelope(std::string& head, std::string_view topic, std::string_view epoch,
                             std::uint64_t offset, std::string_view event, payload_kind kind,
                             std::string_view payload) {
    head += "{\"type\":\"message\",\"topic\":\"";
    head += topic;
    head += "\",\"epoch\":\"";
    head += epoch;
    head += "\",\"offset\":";
    char num[24];
    head.append(num, std::to_chars(num, num + sizeof num, offset).ptr);
    if (!event.empty()) {
        head += ",\"event\":\"";
        head += event;
        head += '"';
    }
    if (kind == payload_kind::binary) {
        head += ",\"binary\":true}";
        return;
    }
    head += ',';
    append_data_member(head, kind, payload);
    head += '}';
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
