#pragma once
// RFC 6455 framing: server frames are built once and shared; client frames are parsed in place.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::ws {

enum class opcode : std::uint8_t {
    cont = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA
};

namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
}  // namespace close_code

// Bytes of a server frame's header for a payload of `n` bytes: 2, 4 or 10.
[[nodiscard]] constexpr std::size_t frame_header_size(std::size_t n) noexcept {
    return n < 126 ? 2 : n <= 0xFFFF ? 4 : 10;
}
// Writes that header (first byte: FIN, RSV, opcode; then the length) at `at`.
void write_frame_header(char* at, std::uint8_t first_byte, std::size_t n) noexcept;
// Appends an unmasked server frame's header: its first byte (FIN, RSV, opcode) and the length.
void append_frame_header(std::string& out, std::uint8_t first_byte, std::size_t payload_bytes);
// Appends one unmasked, final server frame.
void append_frame(std::string& out, opcode op, std::string_view payload);
[[nodiscard]] std::string make_frame(opcode op, std::string_view payload);
[[nodiscard]] std::string make_close_frame(std::uint16_t code, std::string_view reason);

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
[[nodiscard]] std::string accept_key(std::string_view client_key);

struct frame {
    bool fin = false;
    bool rsv1 = false;  // permessage-deflate: the message this frame starts is compressed
    opcode op = opcode::cont;
    std::size_t header_bytes = 0;
    std::uint64_t payload_bytes = 0;
    std::uint8_t mask[4] = {0, 0, 0, 0};
};

enum class parse_result {
    complete,        // `f` describes a whole frame at the start of the buffer
    incomplete,      // more bytes are needed
    protocol_error,  // close 1002
    too_big,         // close 1009
};

// Parses one client frame header at the start of `buf`. Client frames must be masked, carry no
// reserved bits and no unknown opcodes; control frames must be final and at most 125 bytes.
// With `deflate` (permessage-deflate negotiated), RSV1 may be set on a message's first frame.
[[nodiscard]] parse_result parse_client_frame(std::string_view buf, std::uint64_t max_payload,
                                              frame& f, bool deflate = false) noexcept;

// XORs the mask into `data` in place; `phase` is the offset of data[0] in the frame's payload.
void unmask(char* data, std::size_t n, const std::uint8_t mask[4], std::size_t phase = 0) noexcept;

// A close frame's payload from a client: code (0 when absent) and whether it is acceptable.
struct close_info {
    std::uint16_t code = 0;
    bool valid = true;
};
[[nodiscard]] close_info parse_close_payload(std::string_view payload) noexcept;

}  // namespace herald::ws
