#include "herald/wire/ws_codec.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using namespace herald::ws;

namespace {

struct server_frame {
    bool fin = false;
    bool masked = false;
    std::uint8_t rsv = 0;
    std::uint8_t op = 0;
    std::size_t header = 0;
    std::string payload;
};

// An independent RFC 6455 decoder for server frames; advances `pos`.
server_frame decode(const std::string& buf, std::size_t& pos) {
    server_frame f;
    EXPECT_GE(buf.size(), pos + 2);
    const auto b0 = static_cast<std::uint8_t>(buf[pos]);
    const auto b1 = static_cast<std::uint8_t>(buf[pos + 1]);
    f.fin = b0 & 0x80;
    f.rsv = (b0 >> 4) & 0x7;
    f.op = b0 & 0x0F;
    f.masked = b1 & 0x80;
    std::uint64_t len = b1 & 0x7F;
    std::size_t h = 2;
    if (len == 126) {
        len = (std::uint64_t(std::uint8_t(buf[pos + 2])) << 8) | std::uint8_t(buf[pos + 3]);
        h = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | std::uint8_t(buf[pos + 2 + i]);
        h = 10;
    }
    f.header = h;
    EXPECT_GE(buf.size(), pos + h + len);
    f.payload = buf.substr(pos + h, len);
    pos += h + len;
    return f;
}

const std::uint8_t k_mask[4] = {0x37, 0xFA, 0x21, 0x3D};

// A client frame: masked unless told otherwise, with the chosen length encoding.
enum class len_form { minimal, force16, force64 };
std::string client_frame(std::uint8_t b0, const std::string& payload, bool masked = true,
                         len_form form = len_form::minimal, std::uint64_t claimed = ~0ull) {
    const std::uint64_t n = claimed == ~0ull ? payload.size() : claimed;
    std::string out;
    out += static_cast<char>(b0);
    const char m = masked ? char(0x80) : char(0);
    if (form == len_form::minimal && n < 126) {
        out += static_cast<char>(m | char(n));
    } else if (form == len_form::force16 || (form == len_form::minimal && n <= 0xFFFF)) {
        out += static_cast<char>(m | 126);
        out += static_cast<char>((n >> 8) & 0xFF);
        out += static_cast<char>(n & 0xFF);
    } else {
        out += static_cast<char>(m | 127);
        for (int i = 7; i >= 0; --i) out += static_cast<char>((n >> (8 * i)) & 0xFF);
    }
    if (masked) out.append(reinterpret_cast<const char*>(k_mask), 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
        out += static_cast<char>(payload[i] ^ (masked ? k_mask[i % 4] : 0));
    return out;
}

parse_result parse(const std::string& buf, std::uint64_t max = 1 << 20) {
    frame f;
    return parse_client_frame(buf, max, f);
}

}  // namespace

TEST(WsEncode, LengthForms) {
    for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 70000u}) {
        std::string payload(n, 'p');
        auto f = make_frame(opcode::text, payload);
        const std::size_t want_header = n < 126 ? 2 : n <= 65535 ? 4 : 10;
        ASSERT_EQ(f.size(), want_header + n) << n;
        EXPECT_EQ(std::uint8_t(f[0]), 0x81) << n;
        const auto b1 = std::uint8_t(f[1]);
        EXPECT_EQ(b1 & 0x80, 0) << "server frames are never masked";
        EXPECT_EQ(b1, n < 126 ? n : n <= 65535 ? 126 : 127) << n;
        std::size_t pos = 0;
        auto d = decode(f, pos);
        EXPECT_EQ(d.header, want_header);
        EXPECT_EQ(d.payload, payload);
        EXPECT_EQ(pos, f.size());
    }
}

TEST(WsEncode, ExactBytes) {
    EXPECT_EQ(make_frame(opcode::text, "hi"), std::string("\x81\x02hi"));
    EXPECT_EQ(make_frame(opcode::binary, ""), std::string("\x82\x00", 2));
    EXPECT_EQ(make_frame(opcode::ping, "x"), std::string("\x89\x01x"));
    auto f = make_frame(opcode::text, std::string(256, 'a'));
    EXPECT_EQ(f.substr(0, 4), std::string("\x81\x7e\x01\x00", 4));
    auto g = make_frame(opcode::text, std::string(65536, 'a'));
    EXPECT_EQ(g.substr(0, 10), std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
}

TEST(WsEncode, AppendKeepsEarlierFrames) {
    std::string out = "prefix";
    append_frame(out, opcode::text, "a");
    append_frame(out, opcode::binary, std::string(200, 'b'));
    EXPECT_EQ(out.substr(0, 6), "prefix");
    std::size_t pos = 6;
    auto a = decode(out, pos);
    auto b = decode(out, pos);
    EXPECT_EQ(a.op, 0x1);
    EXPECT_EQ(a.payload, "a");
    EXPECT_EQ(b.op, 0x2);
    EXPECT_EQ(b.payload, std::string(200, 'b'));
    EXPECT_EQ(pos, out.size());
}

TEST(WsEncode, CloseFrame) {
    EXPECT_EQ(make_close_frame(1000, "bye"), std::string("\x88\x05\x03\xe8"
                                                         "bye",
                                                         7));
    EXPECT_EQ(make_close_frame(1008, "slow consumer"), std::string("\x88\x0f\x03\xf0"
                                                                   "slow consumer",
                                                                   17));
    // A control frame's payload is at most 125 bytes: the reason is cut to 123.
    auto f = make_close_frame(1001, std::string(300, 'r'));
    ASSERT_EQ(f.size(), 2u + 125u);
    EXPECT_EQ(std::uint8_t(f[1]), 125);
    auto ci = parse_close_payload(f.substr(2));
    EXPECT_EQ(ci.code, 1001);
    EXPECT_TRUE(ci.valid);
}

TEST(WsHandshake, AcceptKeyRfc6455Example) {
    EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsParse, MaskedFrameIsComplete) {
    auto buf = client_frame(0x81, "Hello");
    frame f;
    ASSERT_EQ(parse_client_frame(buf, 1 << 20, f), parse_result::complete);
    EXPECT_TRUE(f.fin);
    EXPECT_EQ(f.op, opcode::text);
    EXPECT_EQ(f.header_bytes, 6u);
    EXPECT_EQ(f.payload_bytes, 5u);
    EXPECT_EQ(std::memcmp(f.mask, k_mask, 4), 0);
    std::string payload = buf.substr(f.header_bytes, f.payload_bytes);
    unmask(payload.data(), payload.size(), f.mask);
    EXPECT_EQ(payload, "Hello");
}

TEST(WsParse, LengthFormsAndHeaderSizes) {
    struct c {
        std::size_t n;
        std::size_t header;
    };
    for (auto [n, header] : {c{0, 6}, c{125, 6}, c{126, 8}, c{65535, 8}, c{65536, 14}}) {
        auto buf = client_frame(0x82, std::string(n, 'z'));
        frame f;
        ASSERT_EQ(parse_client_frame(buf, 1 << 20, f), parse_result::complete) << n;
        EXPECT_EQ(f.header_bytes, header) << n;
        EXPECT_EQ(f.payload_bytes, n);
        EXPECT_EQ(f.op, opcode::binary);
    }
}

TEST(WsParse, NonFinalDataAndContinuationAreAccepted) {
    frame f;
    ASSERT_EQ(parse_client_frame(client_frame(0x01, "part"), 100, f), parse_result::complete);
    EXPECT_FALSE(f.fin);
    EXPECT_EQ(f.op, opcode::text);
    ASSERT_EQ(parse_client_frame(client_frame(0x80, "rest"), 100, f), parse_result::complete);
    EXPECT_TRUE(f.fin);
    EXPECT_EQ(f.op, opcode::cont);
}

TEST(WsParse, ControlFramesAccepted) {
    for (std::uint8_t op : {0x8, 0x9, 0xA}) {
        frame f;
        EXPECT_EQ(parse_client_frame(client_frame(0x80 | op, std::string(125, 'c')), 1, f),
                  parse_result::complete)
            << int(op);
        EXPECT_EQ(static_cast<int>(f.op), op);
    }
}

TEST(WsParse, UnmaskedIsProtocolError) {
    EXPECT_EQ(parse(client_frame(0x81, "Hello", false)), parse_result::protocol_error);
}

TEST(WsParse, ReservedBitsAreProtocolError) {
    for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70})
        EXPECT_EQ(parse(client_frame(0x81 | rsv, "x")), parse_result::protocol_error) << int(rsv);
}

TEST(WsParse, UnknownOpcodesAreProtocolError) {
    for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF})
        EXPECT_EQ(parse(client_frame(0x80 | op, "x")), parse_result::protocol_error) << int(op);
}

TEST(WsParse, FragmentedControlIsProtocolError) {
    for (std::uint8_t op : {0x8, 0x9, 0xA})
        EXPECT_EQ(parse(client_frame(op, "x")), parse_result::protocol_error) << int(op);
}

TEST(WsParse, ControlOver125IsProtocolError) {
    EXPECT_EQ(parse(client_frame(0x89, std::string(126, 'p'))), parse_result::protocol_error);
    EXPECT_EQ(parse(client_frame(0x88, std::string(70000, 'p'))), parse_result::protocol_error);
}

TEST(WsParse, NonMinimalLengthIsProtocolError) {
    EXPECT_EQ(parse(client_frame(0x81, std::string(125, 'a'), true, len_form::force16)),
              parse_result::protocol_error);
    EXPECT_EQ(parse(client_frame(0x81, std::string(0, 'a'), true, len_form::force16)),
              parse_result::protocol_error);
    EXPECT_EQ(parse(client_frame(0x81, std::string(65535, 'a'), true, len_form::force64)),
              parse_result::protocol_error);
    EXPECT_EQ(parse(client_frame(0x81, std::string(10, 'a'), true, len_form::force64)),
              parse_result::protocol_error);
    // Minimal forms at the boundaries are fine.
    EXPECT_EQ(parse(client_frame(0x81, std::string(126, 'a'), true, len_form::force16)),
              parse_result::complete);
    EXPECT_EQ(parse(client_frame(0x81, std::string(65536, 'a'), true, len_form::force64)),
              parse_result::complete);
}

TEST(WsParse, Length64WithTopBitIsProtocolError) {
    auto buf = client_frame(0x82, "", true, len_form::force64, 0x8000000000000000ull);
    EXPECT_EQ(parse(buf, ~0ull), parse_result::protocol_error);
}

TEST(WsParse, TooBigVersusMax) {
    EXPECT_EQ(parse(client_frame(0x82, std::string(200, 'b')), 199), parse_result::too_big);
    EXPECT_EQ(parse(client_frame(0x82, std::string(200, 'b')), 200), parse_result::complete);
    // Known from the header alone: no need to wait for the payload.
    auto huge = client_frame(0x82, "", true, len_form::force64, 1ull << 40);
    EXPECT_EQ(parse(huge.substr(0, 10), 1 << 20), parse_result::too_big);
    // Continuations count against the same limit.
    EXPECT_EQ(parse(client_frame(0x00, std::string(300, 'b')), 100), parse_result::too_big);
}

TEST(WsParse, IncompleteAtEveryPrefix) {
    for (std::size_t n : {5u, 300u, 70000u}) {
        auto buf = client_frame(0x81, std::string(n, 'q'));
        frame full;
        ASSERT_EQ(parse_client_frame(buf, 1 << 20, full), parse_result::complete);
        for (std::size_t k = 0; k < full.header_bytes; ++k) {
            frame f;
            EXPECT_EQ(parse_client_frame(std::string_view(buf).substr(0, k), 1 << 20, f),
                      parse_result::incomplete)
                << "n=" << n << " prefix=" << k;
        }
        // From the header on, the frame header is complete whatever of the payload has come.
        for (std::size_t k : {full.header_bytes, full.header_bytes + 1, buf.size()}) {
            if (k > buf.size()) continue;
            frame f;
            EXPECT_EQ(parse_client_frame(std::string_view(buf).substr(0, k), 1 << 20, f),
                      parse_result::complete);
            EXPECT_EQ(f.payload_bytes, n);
        }
    }
}

TEST(WsUnmask, WithPhaseInPieces) {
    std::string plain;
    for (int i = 0; i < 97; ++i) plain += static_cast<char>('A' + i % 50);
    std::string masked = plain;
    for (std::size_t i = 0; i < masked.size(); ++i) masked[i] = char(masked[i] ^ k_mask[i % 4]);

    std::string whole = masked;
    unmask(whole.data(), whole.size(), k_mask);
    EXPECT_EQ(whole, plain);

    // Any split, unmasked piece by piece with the piece's offset as phase, gives the same bytes.
    for (std::size_t a = 0; a <= masked.size(); a += 7) {
        for (std::size_t b = a; b <= masked.size(); b += 13) {
            std::string s = masked;
            unmask(s.data(), a, k_mask, 0);
            unmask(s.data() + a, b - a, k_mask, a);
            unmask(s.data() + b, s.size() - b, k_mask, b);
            ASSERT_EQ(s, plain) << a << "," << b;
        }
    }
}

TEST(WsUnmask, IsAnInvolution) {
    std::string s = "round trip through the 8-byte fast path and the tail";
    std::string t = s;
    unmask(t.data(), t.size(), k_mask, 3);
    EXPECT_NE(t, s);
    unmask(t.data(), t.size(), k_mask, 3);
    EXPECT_EQ(t, s);
}

TEST(WsClose, Payloads) {
    auto code = [](std::uint16_t c, std::string reason = "") {
        std::string p;
        p += static_cast<char>(c >> 8);
        p += static_cast<char>(c & 0xFF);
        return p + reason;
    };
    auto empty = parse_close_payload("");
    EXPECT_TRUE(empty.valid);
    EXPECT_EQ(empty.code, 0);
    EXPECT_FALSE(parse_close_payload("\x03").valid);
    auto normal = parse_close_payload(code(1000));
    EXPECT_TRUE(normal.valid);
    EXPECT_EQ(normal.code, 1000);
    EXPECT_TRUE(parse_close_payload(code(1000, "bye")).valid);
    EXPECT_TRUE(parse_close_payload(code(1001, "caf\xC3\xA9")).valid);
    for (std::uint16_t ok :
         {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999})
        EXPECT_TRUE(parse_close_payload(code(ok)).valid) << ok;
    for (std::uint16_t bad : {0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535}) {
        auto ci = parse_close_payload(code(bad));
        EXPECT_FALSE(ci.valid) << bad;
        EXPECT_EQ(ci.code, bad);
    }
    EXPECT_FALSE(parse_close_payload(code(1000, "\xFF")).valid);
    EXPECT_FALSE(parse_close_payload(code(1000, "ok\xC3")).valid);
}
