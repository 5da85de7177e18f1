#pragma once
// Why a stream ended: the `reason` of the `disconnect` webhook event (docs/integration.md).
#include <cstdint>

namespace herald::net {

enum class disconnect_reason : std::uint8_t {
    client_closed,   // the client closed (close frame, EOF, reset), or its network did
    slow_consumer,   // its queue passed limits.max_queued_bytes
    token_expired,   // its token's exp passed
    revoked,         // POST /admin/disconnect
    drain,           // the server shut down
    ping_timeout,    // no pong within ws.pong_timeout
    rate_limited,    // kept sending past limits.ws_messages_per_s
    protocol_error,  // a malformed frame, invalid UTF-8, a message too big
};

[[nodiscard]] constexpr const char* to_string(disconnect_reason r) noexcept {
    switch (r) {
        case disconnect_reason::client_closed: return "client_closed";
        case disconnect_reason::slow_consumer: return "slow_consumer";
        case disconnect_reason::token_expired: return "token_expired";
        case disconnect_reason::revoked: return "revoked";
        case disconnect_reason::drain: return "drain";
        case disconnect_reason::ping_timeout: return "ping_timeout";
        case disconnect_reason::rate_limited: return "rate_limited";
        case disconnect_reason::protocol_error: return "protocol_error";
    }
    return "client_closed";
}

}  // namespace herald::net
