#pragma once
// Text forms of stream positions: "epoch:offset", and SSE event ids that hold one per topic.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::wire {

// A position in a topic's stream.
struct stream_pos {
    std::string epoch;
    std::uint64_t offset = 0;
};

// 1..16 bytes of [0-9A-Za-z].
[[nodiscard]] bool is_valid_epoch(std::string_view e) noexcept;

// "epoch:offset"; nullopt when malformed.
[[nodiscard]] std::optional<stream_pos> parse_position(std::string_view text) noexcept;
[[nodiscard]] std::string format_position(const stream_pos& p);

// An SSE id for a stream of `topics` topics: one position per topic joined by ','.
[[nodiscard]] std::optional<std::vector<stream_pos>> parse_event_id(std::string_view text,
                                                                    std::size_t topics) noexcept;

}  // namespace herald::wire
