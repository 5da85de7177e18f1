#include "herald/common/text.hpp"
#include "herald/config/config.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace herald::config {
namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Splits "15s" into 15 and "s".
std::optional<std::pair<std::uint64_t, std::string_view>> split_number(std::string_view s) {
    s = trim(s);
    std::size_t i = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == 0) return std::nullopt;
    auto n = parse_u64(s.substr(0, i));
    if (!n) return std::nullopt;
    return std::pair{*n, trim(s.substr(i))};
}

bool mul_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
    return !__builtin_mul_overflow(a, b, &out);
}
}  // namespace

std::optional<milliseconds> parse_duration(std::string_view text) {
    auto parts = split_number(text);
    if (!parts) return std::nullopt;
    auto [n, unit] = *parts;
    std::uint64_t factor;
    if (unit == "ms")
        factor = 1;
    else if (unit.empty() || unit == "s")
        factor = 1000;
    else if (unit == "m")
        factor = 60'000;
    else if (unit == "h")
        factor = 3'600'000;
    else if (unit == "d")
        factor = 86'400'000;
    else
        return std::nullopt;
    std::uint64_t ms;
    if (!mul_ok(n, factor, ms) ||
        ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / 1'000'000))
        return std::nullopt;
    return milliseconds(static_cast<std::int64_t>(ms));
}

std::optional<std::size_t> parse_size(std::string_view text) {
    auto parts = split_number(text);
    if (!parts) return std::nullopt;
    auto [n, unit] = *parts;
    std::uint64_t factor;
    if (unit.empty() || unit == "B")
        factor = 1;
    else if (unit == "KiB")
        factor = 1ull << 10;
    else if (unit == "MiB")
        factor = 1ull << 20;
    else if (unit == "GiB")
        factor = 1ull << 30;
    else if (unit == "KB")
        factor = 1000;
    else if (unit == "MB")
        factor = 1000'000;
    else if (unit == "GB")
        factor = 1000'000'000;
    else
        return std::nullopt;
    std::uint64_t v;
    if (!mul_ok(n, factor, v)) return std::nullopt;
    return static_cast<std::size_t>(v);
}

std::string format_duration(milliseconds d) {
    const auto ms = d.count();
    if (ms == 0) return "0s";
    static constexpr std::pair<long long, const char*> units[] = {
        {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
    for (const auto& [factor, name] : units)
        if (ms % factor == 0) return std::to_string(ms / factor) + name;
    return std::to_string(ms) + "ms";
}

std::string format_size(std::size_t bytes) {
    if (bytes == 0) return "0";
    static constexpr std::pair<std::size_t, const char*> units[] = {
        {1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
    for (const auto& [factor, name] : units)
        if (bytes % factor == 0) return std::to_string(bytes / factor) + name;
    return std::to_string(bytes);
}

}  // namespace herald::config
