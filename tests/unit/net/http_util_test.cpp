#include "herald/net/http_util.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace herald;
using namespace herald::net;

TEST(PercentDecode, Basics) {
    EXPECT_EQ(percent_decode("a%20b", false), "a b");
    EXPECT_EQ(percent_decode("a+b", false), "a+b");
    EXPECT_EQ(percent_decode("a+b", true), "a b");
    EXPECT_EQ(percent_decode("%2B", true), "+");
    EXPECT_EQ(percent_decode("%c3%A9", false), "\xC3\xA9");
    EXPECT_EQ(percent_decode("", false), "");
    EXPECT_FALSE(percent_decode("%zz", false));
    EXPECT_FALSE(percent_decode("%4", false));
    EXPECT_FALSE(percent_decode("abc%", false));
    EXPECT_FALSE(percent_decode("%00", false));
    EXPECT_FALSE(percent_decode(std::string("a\0b", 3), false));
}

TEST(ParseTarget, PathOnly) {
    auto u = parse_target("/publish/news");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->path, "/publish/news");
    EXPECT_TRUE(u->query.empty());
}

TEST(ParseTarget, PathIsPercentDecodedButPlusIsKept) {
    auto u = parse_target("/publish/chat%3Aroom+1");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->path, "/publish/chat:room+1");
}

TEST(ParseTarget, QueryDecodingAndRepeatedKeysInOrder) {
    auto u = parse_target(
        "/sse?topic=a&topic=b%3Ac&x=hello+world&topic=z&flag&=v&&last_event_id=e1%3A5");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->path, "/sse");
    EXPECT_EQ(u->all("topic"), (std::vector<std::string>{"a", "b:c", "z"}));
    EXPECT_EQ(u->get("topic"), "a");
    EXPECT_EQ(u->get("x"), "hello world");
    EXPECT_EQ(u->get("flag"), "");
    EXPECT_EQ(u->get(""), "v");
    EXPECT_EQ(u->get("last_event_id"), "e1:5");
    EXPECT_FALSE(u->get("missing"));
    EXPECT_TRUE(u->all("missing").empty());
    ASSERT_EQ(u->query.size(), 7u);
    EXPECT_EQ(u->query[0].first, "topic");
    EXPECT_EQ(u->query[2].first, "x");
    EXPECT_EQ(u->query[6].first, "last_event_id");
}

TEST(ParseTarget, EqualsInValueAndFragment) {
    auto u = parse_target("/h?since=a=b&limit=5#frag");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->get("since"), "a=b");
    EXPECT_EQ(u->get("limit"), "5");
    auto v = parse_target("/x?");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->path, "/x");
    EXPECT_TRUE(v->query.empty());
}

TEST(ParseTarget, Rejects) {
    EXPECT_FALSE(parse_target(""));
    EXPECT_FALSE(parse_target("publish/news"));
    EXPECT_FALSE(parse_target("http://host/x"));
    EXPECT_FALSE(parse_target("*"));
    EXPECT_FALSE(parse_target("/sse?topic=%zz"));
    EXPECT_FALSE(parse_target("/sse?topic=a%"));
    EXPECT_FALSE(parse_target("/sse?topic=a%00b"));
    EXPECT_FALSE(parse_target("/sse?to%00pic=a"));
    EXPECT_FALSE(parse_target("/pub%00lish"));
    EXPECT_FALSE(parse_target("/pub%g1"));
}

TEST(Response, ExactBytes) {
    EXPECT_EQ(make_response(200, "text/plain", "hi", true),
              "HTTP/1.1 200 OK\r\n"
              "Server: herald\r\n"
              "Content-Type: text/plain\r\n"
              "Content-Length: 2\r\n"
              "Connection: keep-alive\r\n"
              "Cache-Control: no-store\r\n"
              "\r\n"
              "hi");
    EXPECT_EQ(make_response(404, "application/json", "", false, "X-A: 1\r\n"),
              "HTTP/1.1 404 Not Found\r\n"
              "Server: herald\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: 0\r\n"
              "Connection: close\r\n"
              "Cache-Control: no-store\r\n"
              "X-A: 1\r\n"
              "\r\n");
}

TEST(Response, StatusTexts) {
    EXPECT_STREQ(status_text(200), "OK");
    EXPECT_STREQ(status_text(400), "Bad Request");
    EXPECT_STREQ(status_text(405), "Method Not Allowed");
    EXPECT_STREQ(status_text(413), "Payload Too Large");
    EXPECT_STREQ(status_text(415), "Unsupported Media Type");
    EXPECT_STREQ(status_text(431), "Request Header Fields Too Large");
    EXPECT_STREQ(status_text(503), "Service Unavailable");
    EXPECT_STREQ(status_text(599), "Unknown");
}

TEST(ErrorBody, MakeErrorIsAJsonResponse) {
    auto r = make_error(413, "payload_too_large", "too big", false);
    EXPECT_EQ(r.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u);
    EXPECT_NE(r.find("Content-Type: application/json\r\n"), std::string::npos);
    auto body = r.substr(r.find("\r\n\r\n") + 4);
    std::string length_header = "Content-Length: ";
    length_header += std::to_string(body.size());
    EXPECT_NE(r.find(length_header + "\r\n"), std::string::npos);
    EXPECT_EQ(nlohmann::json::parse(body)["error"]["code"], "payload_too_large");
}

TEST(ErrorFor, StatusesAndCodes) {
    using metrics::reject;
    struct c {
        reject r;
        int status;
        const char* code;
    };
    for (auto [r, status, code] : {
             c{reject::bad_topic, 400, "bad_topic"},
             c{reject::bad_json, 400, "bad_json"},
             c{reject::bad_request, 400, "bad_request"},
             c{reject::bad_last_event_id, 400, "bad_last_event_id"},
             c{reject::bad_cursor, 400, "bad_cursor"},
             c{reject::too_many_topics, 400, "too_many_topics"},
             c{reject::not_found, 404, "not_found"},
             c{reject::method_not_allowed, 405, "method_not_allowed"},
             c{reject::payload_too_large, 413, "payload_too_large"},
             c{reject::unsupported_media_type, 415, "unsupported_media_type"},
             c{reject::headers_too_large, 431, "headers_too_large"},
             c{reject::header_timeout, 408, "header_timeout"},
             c{reject::over_capacity, 503, "over_capacity"},
             c{reject::draining, 503, "draining"},
             c{reject::forbidden, 403, "forbidden"},
         }) {
        auto e = error_for(r);
        EXPECT_EQ(e.status, status) << code;
        EXPECT_EQ(e.code, code);
        EXPECT_EQ(e.reason, r);
    }
}
