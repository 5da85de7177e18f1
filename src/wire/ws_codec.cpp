#include "herald/wire/ws_codec.hpp"

#include "herald/common/text.hpp"

#include <openssl/sha.h>

#include <cstring>

namespace herald::ws {

void append_frame(std::string& out, opcode op, std::string_view payload) {
    append_frame_header(out, static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op)),
                        payload.size());
    out.append(payload);
}

void write_frame_header(char* h, std::uint8_t first_byte, std::size_t n) noexcept {
    h[0] = static_cast<char>(first_byte);
    if (n < 126) {
        h[1] = static_cast<char>(n);
    } else if (n <= 0xFFFF) {
        h[1] = 126;
        h[2] = static_cast<char>((n >> 8) & 0xFF);
        h[3] = static_cast<char>(n & 0xFF);
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; ++i)
            h[2 + i] = static_cast<char>((static_cast<std::uint64_t>(n) >> (56 - 8 * i)) & 0xFF);
    }
}

void append_frame_header(std::string& out, std::uint8_t first_byte, std::size_t n) {
    char h[10];
    write_frame_header(h, first_byte, n);
    out.append(h, frame_header_size(n));
}

std::string make_frame(opcode op, std::string_view payload) {
    std::string out;
    out.reserve(payload.size() + 10);
    append_frame(out, op, payload);
    return out;
}

std::string make_close_frame(std::uint16_t code, std::string_view reason) {
    std::string p;
    p += static_cast<char>(code >> 8);
    p += static_cast<char>(code & 0xFF);
    p.append(reason.substr(0, 123));
    return make_frame(opcode::close, p);
}

std::string accept_key(std::string_view client_key) {
    static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    std::string s(client_key);
    s += guid;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
    return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

parse_result parse_client_frame(std::string_view buf, std::uint64_t max_payload, frame& f,
                                bool deflate) noexcept {
    if (buf.size() < 2) return parse_result::incomplete;
    const auto b0 = static_cast<std::uint8_t>(buf[0]);
    const auto b1 = static_cast<std::uint8_t>(buf[1]);
    const std::uint8_t op = b0 & 0x0F;
    // RSV2-3: no extension uses them; RSV1 only on a data message's first frame (RFC 7692 6).
    f.rsv1 = b0 & 0x40;
    if ((b0 & 0x30) || (f.rsv1 && (!deflate || op == 0x0 || op >= 0x8)))
        return parse_result::protocol_error;
    const bool control = op & 0x8;
    if (!(op <= 0x2 || (op >= 0x8 && op <= 0xA))) return parse_result::protocol_error;
    if (!(b1 & 0x80)) return parse_result::protocol_error;  // client frames must be masked
    f.fin = b0 & 0x80;
    f.op = static_cast<opcode>(op);
    if (control && !f.fin) return parse_result::protocol_error;
    std::uint64_t len = b1 & 0x7F;
    std::size_t pos = 2;
    if (len == 126) {
        if (buf.size() < 4) return parse_result::incomplete;
        len = (static_cast<std::uint8_t>(buf[2]) << 8) | static_cast<std::uint8_t>(buf[3]);
        if (len < 126) return parse_result::protocol_error;  // not minimal
        pos = 4;
    } else if (len == 127) {
        if (buf.size() < 10) return parse_result::incomplete;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<std::uint8_t>(buf[2 + i]);
        if (len >> 63) return parse_result::protocol_error;
        if (len <= 0xFFFF) return parse_result::protocol_error;
        pos = 10;
    }
    if (control && len > 125) return parse_result::protocol_error;
    if (!control && len > max_payload) return parse_result::too_big;
    if (buf.size() < pos + 4) return parse_result::incomplete;
    std::memcpy(f.mask, buf.data() + pos, 4);
    f.header_bytes = pos + 4;
    f.payload_bytes = len;
    return parse_result::complete;
}

void unmask(char* data, std::size_t n, const std::uint8_t mask[4], std::size_t phase) noexcept {
    std::uint8_t m[4];
    for (int i = 0; i < 4; ++i) m[i] = mask[(phase + i) & 3];
    std::size_t i = 0;
    std::uint32_t m32;
    std::memcpy(&m32, m, 4);
    const std::uint64_t m64 = (static_cast<std::uint64_t>(m32) << 32) | m32;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, data + i, 8);
        w ^= m64;
        std::memcpy(data + i, &w, 8);
    }
    for (; i < n; ++i) data[i] = static_cast<char>(data[i] ^ m[i & 3]);
}

close_info parse_close_payload(std::string_view p) noexcept {
    close_info ci;
    if (p.empty()) return ci;
    if (p.size() == 1) {
        ci.valid = false;
        return ci;
    }
    ci.code = static_cast<std::uint16_t>((static_cast<std::uint8_t>(p[0]) << 8) |
                                         static_cast<std::uint8_t>(p[1]));
    const auto c = ci.code;
    bool ok = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
    ci.valid = ok && is_valid_utf8(p.substr(2));
    return ci;
}

}  // namespace herald::ws
