#pragma once
// Text forms of stream positions: "epoch:offset", and SSE event ids that hold one per topic.
#include "herald/hub/message.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {

// 1..16 bytes of [0-9A-Za-z].
[[nodiscard]] bool is_valid_epoch(std::string_view e) noexcept;

// "epoch:offset"; nullopt when malformed.
[[nodiscard]] std::optional<hub::stream_pos> parse_position(std::string_view text) noexcept;
[[nodiscard]] std::string format_position(const hub::stream_pos& p);

// An SSE id for a stream of `topics` topics: one position per topic joined by ','.
[[nodiscard]] std::optional<std::vector<hub::stream_pos>> parse_event_id(
    std::string_view text, std::size_t topics) noexcept;

}  // namespace herald::broker
