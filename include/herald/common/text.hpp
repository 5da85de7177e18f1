#pragma once
// Small text utilities shared by the codecs and parsers.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, max U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;

// Appends `s` (valid UTF-8) as a quoted JSON string: runs of plain bytes are copied whole, only
// '"', '\\' and control characters are escaped.
void append_json_string(std::string& out, std::string_view s);

// Standard base64 with padding.
[[nodiscard]] std::string base64_encode(std::string_view in);
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view in);

// Parses a decimal uint64 with no sign, spaces or leading '+'; rejects overflow.
[[nodiscard]] std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept;

}  // namespace herald
