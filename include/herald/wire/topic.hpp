#pragma once
// Topic names and topic patterns.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace herald::wire {

inline constexpr std::size_t k_max_topic_bytes = 255;
inline constexpr std::string_view k_topic_rule =
    "topic name must be 1..255 bytes of [A-Za-z0-9_.:@=~-]";

// 1..255 bytes of [A-Za-z0-9_.:@=~-].
[[nodiscard]] bool is_valid_topic(std::string_view t) noexcept;

// A pattern is a topic name in which '*' matches any run of characters ("chat:*").
[[nodiscard]] bool is_valid_pattern(std::string_view p) noexcept;
[[nodiscard]] bool pattern_match(std::string_view pattern, std::string_view topic) noexcept;
[[nodiscard]] bool any_match(const std::vector<std::string>& patterns,
                             std::string_view topic) noexcept;

// Event names for SSE `event:` fields: 1..64 bytes of [A-Za-z0-9_.:-].
[[nodiscard]] bool is_valid_event_name(std::string_view e) noexcept;

// Idempotency keys of publishes (HTTP `Idempotency-Key`, `idempotency_key` in JSON and in the
// WebSocket publish op): 1..128 printable ASCII bytes.
[[nodiscard]] bool is_valid_idempotency_key(std::string_view k) noexcept;

// Stable 64-bit FNV-1a, used to pick a topic's owner worker.
[[nodiscard]] std::uint64_t topic_hash(std::string_view t) noexcept;

}  // namespace herald::wire
