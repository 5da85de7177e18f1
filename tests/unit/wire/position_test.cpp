#include "herald/wire/position.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace herald;
using namespace herald::wire;

TEST(Epoch, Validity) {
    EXPECT_TRUE(is_valid_epoch("k3v9x0aa"));
    EXPECT_TRUE(is_valid_epoch("A"));
    EXPECT_TRUE(is_valid_epoch(std::string(16, 'z')));
    EXPECT_FALSE(is_valid_epoch(std::string(17, 'z')));
    EXPECT_FALSE(is_valid_epoch(""));
    EXPECT_FALSE(is_valid_epoch("ab-c"));
    EXPECT_FALSE(is_valid_epoch("ab c"));
    EXPECT_FALSE(is_valid_epoch("ab:c"));
    EXPECT_FALSE(is_valid_epoch("\xC3\xA9"));
}

TEST(Position, RoundTrip) {
    auto p = parse_position("k3v9x0aa:42");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->epoch, "k3v9x0aa");
    EXPECT_EQ(p->offset, 42u);
    EXPECT_EQ(format_position(*p), "k3v9x0aa:42");
    auto max = parse_position("e:18446744073709551615");
    ASSERT_TRUE(max);
    EXPECT_EQ(max->offset, 18446744073709551615ull);
    EXPECT_EQ(format_position({"abc", 0}), "abc:0");
    EXPECT_EQ(parse_position("abc:0")->offset, 0u);
}

TEST(Position, Malformed) {
    for (auto bad : {"", ":", "abc", "abc:", ":5", "abc:-1", "abc:+1", "abc: 1", "abc:1 ", "abc:1x",
                     "abc:1:2", "ab-c:1", "abc:18446744073709551616", "abc:99999999999999999999999",
                     "aaaaaaaaaaaaaaaaa:1", "abc:0x10"}) {
        EXPECT_FALSE(parse_position(bad)) << "'" << bad << "'";
    }
}

TEST(EventId, OneTopic) {
    auto v = parse_event_id("k3v9x0aa:7", 1);
    ASSERT_TRUE(v);
    ASSERT_EQ(v->size(), 1u);
    EXPECT_EQ((*v)[0].epoch, "k3v9x0aa");
    EXPECT_EQ((*v)[0].offset, 7u);
}

TEST(EventId, SeveralTopicsInOrder) {
    auto v = parse_event_id("aaa:1,bbb:0,ccc:18446744073709551615", 3);
    ASSERT_TRUE(v);
    ASSERT_EQ(v->size(), 3u);
    EXPECT_EQ((*v)[0].epoch, "aaa");
    EXPECT_EQ((*v)[0].offset, 1u);
    EXPECT_EQ((*v)[1].epoch, "bbb");
    EXPECT_EQ((*v)[1].offset, 0u);
    EXPECT_EQ((*v)[2].epoch, "ccc");
    EXPECT_EQ((*v)[2].offset, 18446744073709551615ull);
}

TEST(EventId, WrongCount) {
    EXPECT_FALSE(parse_event_id("a:1,b:2", 1));
    EXPECT_FALSE(parse_event_id("a:1,b:2", 3));
    EXPECT_FALSE(parse_event_id("a:1", 2));
    EXPECT_FALSE(parse_event_id("a:1", 0));
    EXPECT_FALSE(parse_event_id("", 0));
    EXPECT_FALSE(parse_event_id("", 1));
}

TEST(EventId, MalformedParts) {
    for (auto bad :
         {",a:1", "a:1,", "a:1,,b:2", "a:1, b:2", "a:1,b:", "a:1,:2", "a:1,b", "a:1,b!:2",
          "a:1,b:-2", "a:1,b:18446744073709551616", "a:1;b:2", "a:1\n,b:2"}) {
        EXPECT_FALSE(parse_event_id(bad, 2)) << "'" << bad << "'";
    }
}

TEST(EventId, ManyTopicsDoNotExhaustAnything) {
    // A hostile id with far more parts than topics stops at the first extra part.
    std::string id;
    for (int i = 0; i < 100'000; ++i) {
        id += i ? ",a:" : "a:";
        id += std::to_string(i);
    }
    EXPECT_FALSE(parse_event_id(id, 64));
    auto v = parse_event_id(id, 100'000);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->back().offset, 99'999u);
}

TEST(EventId, RandomBytesNeverCrash) {
    std::mt19937 rng(12345);
    const std::string alphabet("abz09:,:,-+ \x00\xff\n", 15);
    int accepted = 0;
    for (int i = 0; i < 10'000; ++i) {
        std::string s(rng() % 40, '\0');
        for (auto& c : s)
            c = (i % 2) ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()];
        const std::size_t topics = rng() % 4;
        auto v = parse_event_id(s, topics);
        if (v) {
            ++accepted;
            EXPECT_EQ(v->size(), topics);
            std::string back;
            for (std::size_t k = 0; k < v->size(); ++k) {
                EXPECT_TRUE(is_valid_epoch((*v)[k].epoch));
                {
                    back += k ? "," : "";
                    back += format_position((*v)[k]);
                }
            }
            // Only canonical-or-leading-zero forms are accepted: re-parsing the formatted id works.
            EXPECT_TRUE(parse_event_id(back, topics)) << back;
        }
        (void)parse_position(s);
    }
    EXPECT_LT(accepted, 10'000);
}
