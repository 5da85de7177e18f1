#include "herald/common/text.hpp"

namespace herald {

std::optional<host_port> parse_host_port(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    auto host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const auto port = parse_u64(text.substr(colon + 1));
    if (!port || *port > 65535) return std::nullopt;
    return host_port{std::string(host), static_cast<std::uint16_t>(*port)};
}

}  // namespace herald
