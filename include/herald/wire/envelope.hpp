#pragma once
// The JSON envelopes of server frames and answers (docs/protocol.md): built here and nowhere else,
// so a field's name and form are one rule. Topic, epoch and event charsets (wire/topic.hpp,
// wire/position.hpp) need no escaping; everything else goes through json_quote.
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::wire {

enum class payload_kind : std::uint8_t { text, json, binary };

// JSON-escapes `s` into a quoted string; bytes that are not UTF-8 become U+FFFD.
[[nodiscard]] std::string json_quote(std::string_view s);

// {"error":{"code":"...","message":"..."}}: the body of every HTTP error.
[[nodiscard]] std::string error_body(std::string_view code, std::string_view message);

// `"data":<payload>` (json, or text as a JSON string) or `"data_base64":"..."` (binary).
[[nodiscard]] std::string data_member(payload_kind kind, std::string_view payload);
void append_data_member(std::string& out, payload_kind kind, std::string_view payload);

// The WebSocket text frame's JSON for a message. For binary payloads it is the header
// ({...,"binary":true}) that precedes the binary frame, and holds no data.
[[nodiscard]] std::string message_envelope(std::string_view topic, std::string_view epoch,
                                           std::uint64_t offset, std::string_view event,
                                           payload_kind kind, std::string_view payload);
// The same, appended to `out` (a message's frames are built in place: make_message()).
void append_message_envelope(std::string& out, std::string_view topic, std::string_view epoch,
                             std::uint64_t offset, std::string_view event, payload_kind kind,
                             std::string_view payload);

// A reset's body: {"topic","epoch","offset","reason"} (SSE `event: reset` data); the WebSocket
// frame is the same object with "type":"reset" first (reset_frame_json).
[[nodiscard]] std::string reset_body(std::string_view topic, std::string_view epoch,
                                     std::uint64_t offset, std::string_view reason);
[[nodiscard]] std::string reset_frame_json(std::string_view body);

// One element of a JSON list of messages (history and poll answers):
// {"offset":N[,"event":"e"],<data member>}.
void append_list_entry(std::string& out, std::uint64_t offset, std::string_view event,
                       std::string_view data_member);

// A WebSocket error reply: {"type":"error"[,"id":<id>],"code":"...","message":"..."}; `id` is
// the client's id already in JSON form.
[[nodiscard]] std::string ws_error(std::string_view id, std::string_view code,
                                   std::string_view message);

}  // namespace herald::wire
