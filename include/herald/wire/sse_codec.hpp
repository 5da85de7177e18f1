#pragma once
// Server-Sent Events encoding (text/event-stream).
#include <string>
#include <string_view>

namespace herald::sse {

// Appends one "data: <line>\n" per line of `payload`. CR, LF and CRLF all end a line and NUL
// becomes U+FFFD, so no payload byte can start another field or event.
void append_data(std::string& out, std::string_view payload);

// "[event: <event>\n]data: ...\n\n" — the part of an event that is the same for every stream.
[[nodiscard]] std::string encode_body(std::string_view event, std::string_view payload);
void append_body(std::string& out, std::string_view event, std::string_view payload);

// "id: <id>\n"; `id` must hold no CR, LF or NUL (callers build it from checked parts).
[[nodiscard]] std::string encode_id_line(std::string_view id);

}  // namespace herald::sse
