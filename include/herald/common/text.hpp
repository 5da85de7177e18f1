#pragma once
// Small text utilities shared by the codecs and parsers.
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, max U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;

// Appends `s` (valid UTF-8) as a quoted JSON string: runs of plain bytes are copied whole, only
// '"', '\\' and control characters are escaped.
void append_json_string(std::string& out, std::string_view s);

// Joins pieces into one string (and avoids GCC 12's false -Wrestrict on
// `"literal" + std::string` at -O3).
[[nodiscard]] std::string cat(std::initializer_list<std::string_view> parts);

// `s` without the spaces and tabs around it (HTTP's optional whitespace, RFC 9110 5.6.3).
[[nodiscard]] inline std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Standard base64 with padding (RFC 4648 §4).
[[nodiscard]] std::string base64_encode(std::string_view in);
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view in);
// base64url without padding (RFC 4648 §5, as JWS uses it: RFC 7515 §2). decode is strict: no '=',
// no whitespace, and the unused low bits of the last character must be zero, so every input has
// one encoding.
[[nodiscard]] std::string base64url_encode(std::string_view in);
[[nodiscard]] std::optional<std::string> base64url_decode(std::string_view in);

// Parses a decimal uint64 with no sign, spaces or leading '+'; rejects overflow.
[[nodiscard]] std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept;

// "host:port" or "[v6]:port" (the syntax of listen and redis.shards): a non-empty host and a
// decimal port 0..65535 (callers that need a server refuse 0). nullopt when malformed.
struct host_port {
    std::string host;
    std::uint16_t port = 0;
};
[[nodiscard]] std::optional<host_port> parse_host_port(std::string_view text);

}  // namespace herald
