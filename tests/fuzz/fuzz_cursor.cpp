// Positions, Last-Event-ID values and URL targets.
#include "herald/wire/position.hpp"
#include "herald/net/http_util.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (auto p = herald::wire::parse_position(in)) {
        // What parses formats back to itself.
        auto again = herald::wire::parse_position(herald::wire::format_position(*p));
        if (!again || again->epoch != p->epoch || again->offset != p->offset) __builtin_trap();
    }
    (void)herald::wire::parse_event_id(in, 1 + data[0] % 70);
    (void)herald::net::parse_target(in);
    (void)herald::net::percent_decode(in, true);
    return 0;
}
