// herald's request parser (request_head): what the handlers read (method, target, version,
// keep-alive, fields, body) and the errors, checked against Beast's request_parser on the same
// input (whole, and fed one byte at a time), plus malformed and oversized input.
#include "../../fuzz/request_parser_diff.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace herald;
namespace http = boost::beast::http;
using test::parse_limits;
using test::with_beast;
using test::with_herald;

namespace {

using limits = parse_limits;

void expect_same(std::string_view in, limits l = {}) {
    for (std::size_t step : {in.size() + 1, std::size_t{1}, std::size_t{7}}) {
        SCOPED_TRACE("step " + std::to_string(step) + ": " + std::string(in.substr(0, 60)));
        const auto b = with_beast(in, step, l);
        const auto h = with_herald(in, step, l);
        EXPECT_EQ(h.ec, b.ec) << h.ec.message() << " vs " << b.ec.message();
        EXPECT_EQ(h.method, b.method);
        EXPECT_EQ(h.target, b.target);
        EXPECT_EQ(h.version, b.version);
        EXPECT_EQ(h.keep_alive, b.keep_alive);
        EXPECT_EQ(h.body, b.body);
        EXPECT_EQ(h.fields, b.fields);
    }
}

net::request_head parse(std::string_view in, limits l = {}) {
    net::request_parser p;
    EXPECT_FALSE(test::feed(p, in, in.size(), l));
    return p.release();
}

}  // namespace

TEST(RequestParser, SameAsBeastOnWellFormedRequests) {
    expect_same(
        "POST /publish/t1 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\nhello");
    expect_same(
        "GET /ws?topics=a,b HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n");
    expect_same("GET / HTTP/1.0\r\n\r\n");
    expect_same("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_same("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect_same("GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n");
    // Two Connection fields: the first decides, as Beast's message::keep_alive() reads it.
    expect_same("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    expect_same("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n");
    expect_same("PURGE /x HTTP/1.1\r\nX-A:   padded value   \r\nx-empty:\r\n\r\n");
    expect_same("OPTIONS * HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n");
    expect_same(
        "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n");
    expect_same("POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    std::string many = "GET /many HTTP/1.1\r\n";
    for (int i = 0; i < 40; ++i)
        many += "X-Field-" + std::to_string(i) + ": value " + std::to_string(i) + "\r\n";
    expect_same(many + "\r\n");
}

TEST(RequestParser, SameErrorsAsBeastOnMalformedRequests) {
    for (std::string_view in : {
             "GET\r\n\r\n", "GET / HTTP/2.0\r\n\r\n", "GET / HTTX/1.1\r\n\r\n",
             " GET / HTTP/1.1\r\n\r\n", "G\x01T / HTTP/1.1\r\n\r\n",
             "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
             "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
             "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
             "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
             "GET / HTTP/1.1\r\nHost: h\r\n",  // unfinished: need_more
         })
        expect_same(in);
}

TEST(RequestParser, SameLimitsAsBeast) {
    const limits small{1024, 16};
    std::string big_head = "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
    expect_same(big_head, small);
    EXPECT_EQ(with_herald(big_head, big_head.size() + 1, small).ec, http::error::header_limit);
    const std::string big_body =
        "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b');
    expect_same(big_body, small);
    EXPECT_EQ(with_herald(big_body, big_body.size() + 1, small).ec, http::error::body_limit);
    const std::string chunked =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n";
    expect_same(chunked, small);
    EXPECT_EQ(with_herald(chunked, chunked.size() + 1, small).ec, http::error::body_limit);
    const std::string at_limit =
        "POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + std::string(16, 'c');
    EXPECT_FALSE(with_herald(at_limit, 3, small).ec);
}

TEST(RequestParser, AFieldLongerThanBeastsFieldsHoldIsKeptWithinTheHeaderLimit) {
    // Beast's basic_fields throw std::length_error past 65,533 bytes per value; herald's head
    // has no such bound below http.max_header_bytes (at most 1 MiB).
    const std::string value(70'000, 'v');
    const auto req = parse("GET / HTTP/1.1\r\nCookie: " + value + "\r\n\r\n", {1 << 20, 0});
    EXPECT_EQ(req.header("cookie"), value);
}

TEST(RequestParser, LookupsAreCaseInsensitiveAndFirstWins) {
    const auto req = parse(
        "POST /publish/a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "content-type: application/json\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n"
        "Idempotency-Key: k1\r\nIdempotency-Key: k2\r\nContent-Length: 2\r\n\r\n{}");
    EXPECT_EQ(req.method(), http::verb::post);
    EXPECT_EQ(req.method_string(), "POST");
    EXPECT_EQ(req.target(), "/publish/a%20b?x=1");
    EXPECT_EQ(req.version(), 11u);
    EXPECT_TRUE(req.keep_alive());
    EXPECT_EQ(req.header("Content-Type"), "application/json");
    EXPECT_EQ(req.header("CONTENT-TYPE"), "application/json");
    EXPECT_EQ(req.header("idempotency-key"), "k1");
    EXPECT_EQ(req.header("Authorization"), "");
    EXPECT_EQ(req.header("Content-Typ"), "");
    std::vector<std::string_view> xff;
    req.each("X-Forwarded-For", [&xff](std::string_view v) { xff.push_back(v); });
    EXPECT_EQ(xff, (std::vector<std::string_view>{"10.0.0.1", "10.0.0.2, 10.0.0.3"}));
    EXPECT_EQ(req.body(), "{}");
    // Names that differ in a non-letter are not folded together ('@' and '`' differ by 0x20).
    EXPECT_FALSE(net::request_head::same_name("a@", "a`"));
    EXPECT_TRUE(net::request_head::same_name("X-A", "x-a"));
}

TEST(RequestParser, UnknownMethodKeepsItsName) {
    const auto req = parse("BREW /pot HTTP/1.1\r\n\r\n");
    EXPECT_EQ(req.method(), http::verb::unknown);
    EXPECT_EQ(req.method_string(), "BREW");
    EXPECT_EQ(req.target(), "/pot");
}

TEST(RequestParser, TheHeadMovesWithItsFields) {
    std::string in = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 20; ++i) {
        const auto n = std::to_string(i);
        in.append("F").append(n).append(": ").append(n).append("\r\n");
    }
    auto a = parse(in + "\r\n");
    const auto b = std::move(a);
    ASSERT_EQ(b.field_count(), 20u);
    EXPECT_EQ(b.header("f19"), "19");
    EXPECT_EQ(b.field_name(3), "F3");
}
