// herald's request parser (request_head): what the handlers read (method, target, version,
// keep-alive, fields, body, bytes taken) and the errors, checked against Beast's request_parser
// on the same input (whole, and fed one byte at a time), plus malformed and oversized input;
// request_parser::parse_whole() (the one-pass parser of plain whole requests in front of it)
// the same way, as the session uses the two.
#include "../../fuzz/request_parser_diff.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

using namespace herald;
namespace http = boost::beast::http;
using test::parse_limits;
using test::with_beast;
using test::with_herald;

namespace {

using limits = parse_limits;

// Whether `in` may be fed in pieces here. One byte at a time, a chunked body's last chunk trips
// a BOOST_ASSERT inside Beast's basic_parser (`n >= 5` in parse_chunk_header), which both parsers
// share: builds with assertions on (the sanitizer builds) feed a chunked request whole only;
// Release builds, where the check is compiled out and both parsers give the same error, feed it
// in pieces too.
bool pieces_allowed(std::string_view in) {
#ifdef NDEBUG
    (void)in;
    return true;
#else
    std::string lowered(in);
    for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lowered.find("chunked") == std::string::npos;
#endif
}

void expect_same(std::string_view in, limits l = {}) {
    for (std::size_t step : {in.size() + 1, std::size_t{1}, std::size_t{7}}) {
        if (step <= in.size() && !pieces_allowed(in)) continue;
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
        EXPECT_EQ(h.used, b.used);
        EXPECT_TRUE(test::with_session(in, step, l) == b);
    }
}

// parse_whole() on the whole input: whether it took the request, and that the outcome is
// Beast's either way.
bool fast_and_same(std::string_view in, limits l = {}) {
    bool fast = false;
    const auto s = test::with_session(in, in.size(), l, &fast);
    const auto b = with_beast(in, in.size() + 1, l);
    EXPECT_TRUE(s == b) << "parse_whole " << (fast ? "took" : "declined") << ": "
                        << std::string(in.substr(0, 80)) << " | " << s.ec.message() << " vs "
                        << b.ec.message();
    return fast;
}

const std::string k_publish =
    "POST /publish/t1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: text/plain\r\n"
    "Content-Length: 5\r\n\r\nhello";

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

TEST(RequestParserWhole, TakesPlainWholeRequestsAsBeastDoes) {
    EXPECT_TRUE(fast_and_same(k_publish));
    EXPECT_TRUE(fast_and_same("GET / HTTP/1.0\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("GET /x?y=%20 HTTP/1.1\r\nConnection: close\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("GET / HTTP/1.0\r\nproxy-connection: Keep-Alive\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("BREW /pot HTTP/1.1\r\nX-A:\t padded \t \r\nx-empty:\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("GET /\xc3\xa9 HTTP/1.1\r\nX-Obs: caf\xc3\xa9\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("POST /p HTTP/1.1\r\ncontent-length: 0\r\n\r\n"));
    EXPECT_TRUE(fast_and_same("POST /p HTTP/1.1\r\nCONTENT-LENGTH: 007\r\n\r\n1234567"));
    EXPECT_TRUE(fast_and_same("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    std::string many = "GET /many HTTP/1.1\r\n";
    for (int i = 0; i < 40; ++i)
        many += "X-Field-" + std::to_string(i) + ": value " + std::to_string(i) + "\r\n";
    EXPECT_TRUE(fast_and_same(many + "\r\n"));
}

TEST(RequestParserWhole, DeclinesWhatBeastMustJudge) {
    for (std::string_view in :
         {// chunked, alone or with a Content-Length (either order), any case
          "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
          "POST / HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n",
          "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
          "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
          "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
          // repeated, listed, signed, empty or oversized lengths
          "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
          "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!",
          "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
          "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
          "POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\nhello",
          "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
          "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
          "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
          "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
          // obs-fold, bare LF, bare CR, NUL, DEL
          "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n",
          "GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n",
          "GET / HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\nab", "GET / HTTP/1.1\nHost: h\n\n",
          "GET / HTTP/1.1\r\nHost: h\n\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\n",
          "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
          "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", "GET / HTTP/1.1\r\nHost: h\r\r\n\r\n",
          "GET / HTTP/1.1\r\n\r\r\n", "GET / HTTP/1.1\r\r\n\r\n", "GET /\x7f HTTP/1.1\r\n\r\n",
          // names and the start line
          "GET / HTTP/1.1\r\nX A: v\r\n\r\n", "GET / HTTP/1.1\r\nX-A : v\r\n\r\n",
          "GET / HTTP/1.1\r\n: v\r\n\r\n", "GET / HTTP/1.1\r\n X-A: v\r\n\r\n",
          "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/1.2\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
          "GET / http/1.1\r\n\r\n", "GET / HTTP/1.1 \r\n\r\n", "\r\nGET / HTTP/1.1\r\n\r\n",
          // Connection lists
          "GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
          "GET / HTTP/1.1\r\nConnection: ,\r\n\r\n", "GET / HTTP/1.1\r\nConnection:\r\n\r\n",
          // unfinished head or body
          "GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r",
          "POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nhello", "GET", ""}) {
        SCOPED_TRACE(std::string(in));
        EXPECT_FALSE(fast_and_same(in));
        expect_same(in);
    }
}

TEST(RequestParserWhole, DeclinesPastTheLimitsAndBeastAnswers) {
    const limits small{64, 16};
    const std::string head = "GET / HTTP/1.1\r\nX-A: " + std::string(39, 'a') + "\r\n\r\n";
    ASSERT_EQ(head.size(), 64u);
    EXPECT_TRUE(fast_and_same(head, small));  // exactly at the limit
    const std::string over = "GET / HTTP/1.1\r\nX-A: " + std::string(40, 'a') + "\r\n\r\n";
    EXPECT_FALSE(fast_and_same(over, small));
    const std::string body_at =
        "POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + std::string(16, 'b');
    EXPECT_TRUE(fast_and_same(body_at, small));
    const std::string body_over =
        "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b');
    EXPECT_FALSE(fast_and_same(body_over, small));
    EXPECT_EQ(test::with_session(body_over, body_over.size(), small).ec, http::error::body_limit);
    EXPECT_EQ(test::with_session(over + "x", over.size() + 1, {32, 16}).ec,
              http::error::header_limit);
}

TEST(RequestParserWhole, PipelinedRequestsLeaveTheNextOnesBytes) {
    const std::string second = "GET /two HTTP/1.1\r\nHost: h\r\n\r\n";
    for (const std::string& first :
         {k_publish, std::string("GET /one HTTP/1.1\r\n\r\n"),
          std::string("POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
          std::string("POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")}) {
        const std::string both = first + second;
        bool fast = false;
        const auto s = test::with_session(both, both.size(), {}, &fast);
        EXPECT_TRUE(fast);
        EXPECT_TRUE(s == with_beast(both, both.size() + 1));
        EXPECT_EQ(s.used, first.size());
        // The rest is the second request, whole.
        EXPECT_TRUE(fast_and_same(std::string_view(both).substr(s.used)));
        // A body that runs into the next request's bytes is still this one's.
        const std::string glued = "POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n" + second;
        EXPECT_TRUE(fast_and_same(glued));
        EXPECT_EQ(test::with_session(glued, glued.size()).used, glued.size() - second.size() + 10);
    }
}

TEST(RequestParserWhole, EveryByteAtEveryPlaceOfAPublishIsJudgedAsBeastJudgesIt) {
    // Each byte of the head replaced by each of the 256 values, and each value inserted before
    // it: what parse_whole() takes must be what Beast makes of it; what it declines, Beast's
    // parser answers. (62,976 inputs; parse_whole() takes 28,974 of them.)
    const std::string base =
        "POST /publish/t1?x=%20 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nab";
    const std::size_t head = base.size() - 2;
    std::size_t taken = 0;
    for (std::size_t at = 0; at < head; ++at) {
        for (int c = 0; c < 256; ++c) {
            std::string replaced = base;
            replaced[at] = static_cast<char>(c);
            std::string inserted = base;
            inserted.insert(at, 1, static_cast<char>(c));
            for (const std::string& in : {replaced, inserted}) {
                bool fast = false;
                const auto s = test::with_session(in, in.size(), {}, &fast);
                const auto b = with_beast(in, in.size() + 1);
                ASSERT_TRUE(s == b) << "at " << at << " byte " << c << ": " << s.ec.message()
                                    << " vs " << b.ec.message();
                taken += fast ? 1 : 0;
            }
        }
    }
    EXPECT_GT(taken, head * 200);  // the test reaches parse_whole's accepting paths
}

TEST(RequestParser, KnownFieldsReadAsTheirNamesDo) {
    using known = net::request_head::known;
    const std::pair<known, std::string_view> names[] = {
        {known::connection, "Connection"},       {known::origin, "Origin"},
        {known::authorization, "Authorization"}, {known::cookie, "Cookie"},
        {known::x_herald_csrf, "X-Herald-CSRF"}, {known::x_forwarded_for, "X-Forwarded-For"},
        {known::content_type, "Content-Type"},   {known::idempotency_key, "Idempotency-Key"},
        {known::traceparent, "traceparent"}};
    // Every known name absent, then present twice in other cases (the first line wins), among
    // names of the same lengths; parsed by parse_whole() and by the Beast-based parser.
    std::string with = "GET / HTTP/1.1\r\nOrigim: x\r\nCookie2: y\r\nTraceparenT: 00-tp\r\n";
    for (const auto& [k, name] : names) {
        std::string lower(name);
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        with.append(lower).append(": first-").append(name).append("\r\n");
        with.append(name).append(": second\r\n");
    }
    for (const std::string& in :
         {std::string("GET / HTTP/1.1\r\nOrigim: x\r\n\r\n"), with + "\r\n"}) {
        net::request_head fast;
        ASSERT_EQ(net::request_parser::parse_whole(in, 8192, 0, fast), in.size());
        const auto slow = parse(in);
        for (const auto& [k, name] : names) {
            SCOPED_TRACE(std::string(name));
            EXPECT_EQ(fast.header(k), fast.header(name));
            EXPECT_EQ(slow.header(k), slow.header(name));
            EXPECT_EQ(fast.header(k), slow.header(name));
            std::vector<std::string_view> by_k, by_name;
            fast.each(k, name, [&by_k](std::string_view v) { by_k.push_back(v); });
            slow.each(name, [&by_name](std::string_view v) { by_name.push_back(v); });
            EXPECT_EQ(by_k, by_name);
        }
    }
    const auto req = parse(with + "\r\n");
    EXPECT_EQ(req.header(known::traceparent), "00-tp");  // names match in any case
    EXPECT_TRUE(req.keep_alive());                       // the first Connection line has no "close"
}
