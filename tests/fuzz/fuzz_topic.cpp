// Topic names, patterns and pattern matching (the input is split at the first NUL).
#include "herald/wire/topic.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto nul = in.find('\0');
    auto pattern = in.substr(0, nul);
    auto topic = nul == std::string_view::npos ? in : in.substr(nul + 1);
    (void)herald::wire::is_valid_topic(topic);
    (void)herald::wire::is_valid_event_name(topic);
    if (herald::wire::is_valid_pattern(pattern) && herald::wire::is_valid_topic(topic)) {
        bool m = herald::wire::pattern_match(pattern, topic);
        // A pattern without '*' matches exactly itself.
        if (pattern.find('*') == std::string_view::npos && m != (pattern == topic))
            __builtin_trap();
    }
    return 0;
}
