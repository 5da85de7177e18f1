#include "herald/wire/position.hpp"

#include "herald/common/text.hpp"

namespace herald::wire {

bool is_valid_epoch(std::string_view e) noexcept {
    if (e.empty() || e.size() > 16) return false;
    for (char c : e) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!ok) return false;
    }
    return true;
}

std::optional<stream_pos> parse_position(std::string_view text) noexcept {
    auto colon = text.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto epoch = text.substr(0, colon);
    if (!is_valid_epoch(epoch)) return std::nullopt;
    auto offset = parse_u64(text.substr(colon + 1));
    if (!offset) return std::nullopt;
    try {
        return stream_pos{std::string(epoch), *offset};
    } catch (...) {
        return std::nullopt;
    }
}

std::string format_position(const stream_pos& p) {
    return p.epoch + ":" + std::to_string(p.offset);
}

std::optional<std::vector<stream_pos>> parse_event_id(std::string_view text,
                                                      std::size_t topics) noexcept {
    try {
        std::vector<stream_pos> out;
        std::size_t start = 0;
        while (true) {
            auto comma = text.find(',', start);
            auto part = text.substr(
                start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
            auto p = parse_position(part);
            if (!p) return std::nullopt;
            out.push_back(std::move(*p));
            if (out.size() > topics) return std::nullopt;
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
        if (out.size() != topics) return std::nullopt;
        return out;
    } catch (...) {
        return std::nullopt;
    }
}

}  // namespace herald::wire
