#pragma once
// permessage-deflate (RFC 7692): the negotiation, the server's compressed frames and the bounded
// inflation of a client's message.
//
// Herald always negotiates server_no_context_takeover and client_no_context_takeover: every
// message is compressed on its own, so one compressed frame serves every subscriber, and
// inflating a client's message needs no state kept between messages (no zlib state per
// connection; the streams below are per thread and reset for each message).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald::ws {

// What a client's Sec-WebSocket-Extensions offer allows us to send.
struct deflate_offer {
    // The client's inflater window (server_max_window_bits, 9..15; 15 when not limited): a
    // compressed frame is sent only when it needs no larger window.
    std::uint8_t server_max_window_bits = 15;
    bool server_max_window_bits_given = false;
};

// Picks the first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions header
// (several header lines joined by ','); nullopt when there is none (a malformed or unknown
// parameter makes one offer unacceptable, RFC 7692 5.1).
[[nodiscard]] std::optional<deflate_offer> pick_deflate_offer(std::string_view header);
// The response header's value for an accepted offer.
[[nodiscard]] std::string deflate_response(const deflate_offer& o);

// Compressed form of unmasked server frames (`frames`: one or more final data frames, as
// make_frame() builds them). Each frame's payload is deflated alone; a frame whose compressed
// form is not smaller stays plain. Sets `window_bits` to the window a client needs to inflate
// the result (9..15: no back-reference reaches further than the frame's length). Returns an
// empty string when nothing got smaller. Uses a deflate stream per thread.
[[nodiscard]] std::string deflate_frames(std::string_view frames, int level,
                                         std::uint8_t& window_bits);

enum class inflate_status { ok, too_big, corrupt };
// Inflates one message's compressed payload (RSV1 frames, tail 00 00 ff ff omitted) into `out`,
// which never grows past `max_bytes` (+1): a decompression bomb stops at the cap, unallocated.
// Uses an inflate stream per thread, reset for every message.
[[nodiscard]] inflate_status inflate_message(std::string_view compressed, std::size_t max_bytes,
                                             std::string& out);

}  // namespace herald::ws
