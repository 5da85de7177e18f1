#include "herald/wire/ws_deflate.hpp"

#include "herald/wire/ws_codec.hpp"

#include <gtest/gtest.h>

#include <zlib.h>

#include <string>

using namespace herald::ws;

namespace {

// An independent raw inflate (zlib's one-shot API with the RFC 7692 tail added back).
std::string inflate_ref(const std::string& z) {
    z_stream s{};
    EXPECT_EQ(inflateInit2(&s, -15), Z_OK);
    std::string in = z;
    in.append("\x00\x00\xff\xff", 4);
    std::string out(1 << 20, '\0');
    s.next_in = reinterpret_cast<Bytef*>(in.data());
    s.avail_in = static_cast<uInt>(in.size());
    s.next_out = reinterpret_cast<Bytef*>(out.data());
    s.avail_out = static_cast<uInt>(out.size());
    inflate(&s, Z_SYNC_FLUSH);
    out.resize(out.size() - s.avail_out);
    inflateEnd(&s);
    return out;
}

std::string deflate_ref(const std::string& in) {
    z_stream s{};
    EXPECT_EQ(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::string out(in.size() + 1024, '\0');
    s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    s.avail_in = static_cast<uInt>(in.size());
    s.next_out = reinterpret_cast<Bytef*>(out.data());
    s.avail_out = static_cast<uInt>(out.size());
    deflate(&s, Z_SYNC_FLUSH);
    const std::size_t n = out.size() - s.avail_out;
    EXPECT_GE(n, 4u);
    out.resize(n >= 4 ? n - 4 : 0);
    deflateEnd(&s);
    return out;
}

}  // namespace

TEST(DeflateOffer, PicksTheFirstAcceptableOffer) {
    EXPECT_FALSE(pick_deflate_offer(""));
    EXPECT_FALSE(pick_deflate_offer("x-webkit-deflate-frame"));
    auto o = pick_deflate_offer("permessage-deflate; client_max_window_bits");
    ASSERT_TRUE(o);
    EXPECT_EQ(o->server_max_window_bits, 15);
    EXPECT_EQ(deflate_response(*o),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    o = pick_deflate_offer(
        "permessage-deflate; server_max_window_bits=\"12\"; "
        "client_max_window_bits=12");
    ASSERT_TRUE(o);
    EXPECT_EQ(o->server_max_window_bits, 12);
    EXPECT_NE(deflate_response(*o).find("server_max_window_bits=12"), std::string::npos);
    // Unknown, repeated, valueless or out-of-range parameters make an offer unacceptable.
    EXPECT_FALSE(pick_deflate_offer("permessage-deflate; foo"));
    EXPECT_FALSE(pick_deflate_offer("permessage-deflate; server_max_window_bits"));
    EXPECT_FALSE(pick_deflate_offer("permessage-deflate; server_max_window_bits=7"));
    EXPECT_FALSE(pick_deflate_offer("permessage-deflate; client_max_window_bits=016"));
    EXPECT_FALSE(pick_deflate_offer("permessage-deflate; server_no_context_takeover=1"));
    EXPECT_FALSE(pick_deflate_offer(
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover"));
    o = pick_deflate_offer("permessage-deflate; foo, permessage-deflate; server_max_window_bits=9");
    ASSERT_TRUE(o);
    EXPECT_EQ(o->server_max_window_bits, 9);
}

TEST(DeflateFrames, CompressesEachFrameAloneAndKeepsHeaders) {
    std::string text(3000, 'a');
    for (std::size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('b' + i % 13);
    std::string frames = make_frame(opcode::text, text);
    append_frame(frames, opcode::binary, "xy");
    std::uint8_t bits = 0;
    const std::string z = deflate_frames(frames, 6, bits);
    ASSERT_FALSE(z.empty());
    EXPECT_LT(z.size(), frames.size());
    EXPECT_EQ(bits, 12);  // 3000 bytes: no back-reference reaches past 4096
    const auto b0 = static_cast<std::uint8_t>(z[0]);
    EXPECT_EQ(b0, 0x80 | 0x40 | 0x1);  // FIN, RSV1, text
    std::size_t len = static_cast<std::uint8_t>(z[1]);
    std::size_t hn = 2;
    if (len == 126) {
        len = (static_cast<std::uint8_t>(z[2]) << 8) | static_cast<std::uint8_t>(z[3]);
        hn = 4;
    }
    EXPECT_EQ(inflate_ref(z.substr(hn, len)), text);
    // The 2-byte binary frame would not shrink: it stays plain (RSV1 clear).
    EXPECT_EQ(z.substr(hn + len), make_frame(opcode::binary, "xy"));
    // Nothing shrinks: empty (send the plain frames).
    EXPECT_TRUE(deflate_frames(make_frame(opcode::text, "q"), 6, bits).empty());
}

TEST(InflateMessage, RoundTripsAndStopsAtTheCap) {
    const std::string text(100'000, 'z');
    const std::string z = deflate_ref(text);
    std::string out;
    EXPECT_EQ(inflate_message(z, 100'000, out), inflate_status::ok);
    EXPECT_EQ(out, text);
    // One byte over the cap: refused, and `out` never grew past the cap (+1).
    EXPECT_EQ(inflate_message(z, 99'999, out), inflate_status::too_big);
    EXPECT_LE(out.capacity(), 200'000u);
    EXPECT_EQ(inflate_message("\xff\xff\xff garbage", 1000, out), inflate_status::corrupt);
    // Reused for the next message: no state carried over.
    EXPECT_EQ(inflate_message(deflate_ref("{}"), 1000, out), inflate_status::ok);
    EXPECT_EQ(out, "{}");
}

TEST(ParseClientFrame, Rsv1OnlyWithDeflateAndOnAMessagesFirstFrame) {
    const std::string masked_text("\xC1\x80\0\0\0\0", 6);
    frame f;
    EXPECT_EQ(parse_client_frame(masked_text, 100, f), parse_result::protocol_error);
    EXPECT_EQ(parse_client_frame(masked_text, 100, f, true), parse_result::complete);
    EXPECT_TRUE(f.rsv1);
    const std::string cont("\xC0\x80\0\0\0\0", 6);
    EXPECT_EQ(parse_client_frame(cont, 100, f, true), parse_result::protocol_error);
    const std::string ping("\xC9\x80\0\0\0\0", 6);
    EXPECT_EQ(parse_client_frame(ping, 100, f, true), parse_result::protocol_error);
}
