#include "herald/wire/sse_codec.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

using namespace herald;

namespace {
std::string sse_data(std::string_view payload) {
    std::string out;
    sse::append_data(out, payload);
    return out;
}

// The lines of an event, as an EventSource would split them (CR, LF and CRLF all end a line).
std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r' || s[i] == '\n') {
            if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
            out.push_back(cur);
            cur.clear();
        } else {
            cur += s[i];
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}
}  // namespace

TEST(SseData, SingleLine) {
    EXPECT_EQ(sse_data("hello"), "data: hello\n");
    EXPECT_EQ(sse_data(""), "data: \n");
}

TEST(SseData, EveryLineEndingSplits) {
    EXPECT_EQ(sse_data("a\nb"), "data: a\ndata: b\n");
    EXPECT_EQ(sse_data("a\rb"), "data: a\ndata: b\n");
    EXPECT_EQ(sse_data("a\r\nb"), "data: a\ndata: b\n");
    EXPECT_EQ(sse_data("a\n\rb"), "data: a\ndata: \ndata: b\n");
    EXPECT_EQ(sse_data("a\r\rb"), "data: a\ndata: \ndata: b\n");
    EXPECT_EQ(sse_data("a\n"), "data: a\ndata: \n");
    EXPECT_EQ(sse_data("\n"), "data: \ndata: \n");
    EXPECT_EQ(sse_data("a\r"), "data: a\ndata: \n");
}

TEST(SseData, NulBecomesReplacementCharacter) {
    EXPECT_EQ(sse_data(std::string("a\0b", 3)),
              "data: a\xEF\xBF\xBD"
              "b\n");
    EXPECT_EQ(sse_data(std::string("\0", 1)), "data: \xEF\xBF\xBD\n");
}

TEST(SseData, AppendsToExisting) {
    std::string out = "id: 1\n";
    sse::append_data(out, "x");
    EXPECT_EQ(out, "id: 1\ndata: x\n");
}

TEST(SseBody, WithAndWithoutEvent) {
    EXPECT_EQ(sse::encode_body("", "hello"), "data: hello\n\n");
    EXPECT_EQ(sse::encode_body("tick", "hello"), "event: tick\ndata: hello\n\n");
    EXPECT_EQ(sse::encode_body("tick", "a\r\nb"), "event: tick\ndata: a\ndata: b\n\n");
}

TEST(SseBody, InjectionStaysInOneEvent) {
    const std::string evil = "x\n\nevent: evil\ndata: y\r\rid: 666\r\n\r\nretry: 1";
    auto body = sse::encode_body("", evil);
    // Exactly one blank line, at the very end: one event.
    ASSERT_GE(body.size(), 2u);
    EXPECT_EQ(body.substr(body.size() - 2), "\n\n");
    EXPECT_EQ(body.find("\n\n"), body.size() - 2);
    EXPECT_EQ(body.find('\r'), std::string::npos);
    auto ls = lines(body);
    ASSERT_FALSE(ls.empty());
    EXPECT_EQ(ls.back(), "");
    for (std::size_t i = 0; i + 1 < ls.size(); ++i)
        EXPECT_EQ(ls[i].rfind("data: ", 0), 0u) << "line " << i << ": " << ls[i];
}

TEST(SseId, Line) {
    EXPECT_EQ(sse::encode_id_line("ab12:7"), "id: ab12:7\n");
    EXPECT_EQ(sse::encode_id_line("a:1,b:2"), "id: a:1,b:2\n");
}
