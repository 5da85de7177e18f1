#include "herald/wire/topic.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace herald::wire;

TEST(Topic, ValidCharset) {
    EXPECT_TRUE(is_valid_topic("news"));
    EXPECT_TRUE(is_valid_topic("a"));
    EXPECT_TRUE(is_valid_topic("chat:room-1"));
    EXPECT_TRUE(is_valid_topic("user@example.com"));
    EXPECT_TRUE(is_valid_topic("A_Z.0-9:@=~"));
}

TEST(Topic, InvalidCharset) {
    EXPECT_FALSE(is_valid_topic(""));
    for (const std::string& bad :
         std::vector<std::string>{"a b", "a/b", "a*", "a?b", "a#b", "a%20", "a,b", "a\"b", "a\nb",
                                  "caf\xC3\xA9", std::string("a\0b", 3), "a+b", "a&b"}) {
        EXPECT_FALSE(is_valid_topic(bad)) << bad;
    }
    // Every byte outside the documented set is rejected.
    const std::string allowed =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@=~-";
    for (int c = 0; c < 256; ++c) {
        std::string t = "x";
        t += static_cast<char>(c);
        const bool want = allowed.find(static_cast<char>(c)) != std::string::npos;
        EXPECT_EQ(is_valid_topic(t), want) << "byte " << c;
    }
}

TEST(Topic, LengthLimit) {
    EXPECT_EQ(k_max_topic_bytes, 255u);
    EXPECT_TRUE(is_valid_topic(std::string(255, 'a')));
    EXPECT_FALSE(is_valid_topic(std::string(256, 'a')));
    EXPECT_TRUE(is_valid_pattern(std::string(254, 'a') + "*"));
    EXPECT_FALSE(is_valid_pattern(std::string(255, 'a') + "*"));
}

TEST(Pattern, Validity) {
    EXPECT_TRUE(is_valid_pattern("chat:*"));
    EXPECT_TRUE(is_valid_pattern("*"));
    EXPECT_TRUE(is_valid_pattern("a*b*c"));
    EXPECT_TRUE(is_valid_pattern("room-1"));
    EXPECT_FALSE(is_valid_pattern(""));
    EXPECT_FALSE(is_valid_pattern("chat *"));
    EXPECT_FALSE(is_valid_pattern("chat/?"));
}

TEST(Pattern, Matches) {
    EXPECT_TRUE(pattern_match("chat:*", "chat:1"));
    EXPECT_TRUE(pattern_match("chat:*", "chat:"));
    EXPECT_FALSE(pattern_match("chat:*", "chat"));
    EXPECT_FALSE(pattern_match("chat:*", "xchat:1"));
    EXPECT_TRUE(pattern_match("*", "anything"));
    EXPECT_TRUE(pattern_match("*", ""));
    EXPECT_TRUE(pattern_match("a*b*c", "abc"));
    EXPECT_TRUE(pattern_match("a*b*c", "a--b--c"));
    EXPECT_TRUE(pattern_match("a*b*c", "abcbc"));
    EXPECT_FALSE(pattern_match("a*b*c", "acb"));
    EXPECT_FALSE(pattern_match("a*b*c", "abcx"));
    EXPECT_TRUE(pattern_match("*:end", "x:y:end"));
    EXPECT_TRUE(pattern_match("room-1", "room-1"));
    EXPECT_FALSE(pattern_match("room-1", "room-10"));
    EXPECT_FALSE(pattern_match("room-1", "room-"));
    EXPECT_TRUE(pattern_match("**", "x"));
    EXPECT_FALSE(pattern_match("a", ""));
}

TEST(Pattern, AnyMatch) {
    std::vector<std::string> ps{"chat:*", "room-1"};
    EXPECT_TRUE(any_match(ps, "chat:x"));
    EXPECT_TRUE(any_match(ps, "room-1"));
    EXPECT_FALSE(any_match(ps, "room-2"));
    EXPECT_FALSE(any_match({}, "x"));
}

TEST(Pattern, PathologicalInputTerminatesFast) {
    const std::string topic(255, 'a');
    const std::string pattern = "a*a*a*a*a*a*a*a*a*a*a*a*b";
    // Exponential backtracking would not finish; the single-star glob is O(n*m).
    bool any = false;
    for (int i = 0; i < 200; ++i) any |= pattern_match(pattern, topic);
    EXPECT_FALSE(any);
    EXPECT_TRUE(pattern_match(pattern, topic + "b"));
    EXPECT_FALSE(pattern_match("a*a*a*a*b", std::string(100'000, 'a')));
}

TEST(EventName, Validity) {
    EXPECT_TRUE(is_valid_event_name("tick"));
    EXPECT_TRUE(is_valid_event_name("a.b:c-d_e"));
    EXPECT_TRUE(is_valid_event_name(std::string(64, 'e')));
    EXPECT_FALSE(is_valid_event_name(std::string(65, 'e')));
    EXPECT_FALSE(is_valid_event_name(""));
    EXPECT_FALSE(is_valid_event_name("a b"));
    EXPECT_FALSE(is_valid_event_name("a\nb"));
    EXPECT_FALSE(is_valid_event_name("a\rb"));
    EXPECT_FALSE(is_valid_event_name("a@b"));  // topics allow '@', events do not
    EXPECT_FALSE(is_valid_event_name("x=y"));
}

// The header promises FNV-1a: offset basis 14695981039346656037 (0xcbf29ce484222325), prime
// 1099511628211; these are the published FNV-1a 64 test vectors.
TEST(TopicHash, IsFnv1a64) {
    EXPECT_EQ(topic_hash(""), 0xcbf29ce484222325ULL);
    EXPECT_EQ(topic_hash("a"), 0xaf63dc4c8601ec8cULL);
    EXPECT_EQ(topic_hash("foobar"), 0x85944171f73967e8ULL);
}

TEST(TopicHash, Deterministic) {
    EXPECT_EQ(topic_hash("news"), topic_hash(std::string("news")));
    EXPECT_NE(topic_hash("a"), topic_hash("b"));
}
