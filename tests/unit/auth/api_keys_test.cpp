#include "herald/auth/api_keys.hpp"

#include <gtest/gtest.h>

#include <map>
#include <vector>
#include <string>

using namespace herald::auth;

TEST(ApiKeys, CheckAndMatch) {
    api_key_set ks;
    EXPECT_TRUE(ks.empty());
    EXPECT_FALSE(ks.check("anything-at-all-really"));
    ASSERT_FALSE(ks.add("pk_live_0123456789abcdef"));
    ASSERT_FALSE(ks.add("pk_live_fedcba9876543210XYZ"));
    EXPECT_EQ(ks.size(), 2u);
    EXPECT_TRUE(ks.check("pk_live_0123456789abcdef"));
    EXPECT_TRUE(ks.check("pk_live_fedcba9876543210XYZ"));
    EXPECT_EQ(ks.match("pk_live_0123456789abcdef"), 0u);
    EXPECT_EQ(ks.match("pk_live_fedcba9876543210XYZ"), 1u);
    for (const std::string& bad : std::vector<std::string>{
             "", "pk_live_0123456789abcde", "pk_live_0123456789abcdef0", "PK_LIVE_0123456789ABCDEF",
             "pk_live_0123456789abcdef ", std::string("pk_live_0123456789abcdef\0", 25)}) {
        EXPECT_FALSE(ks.check(bad)) << bad;
        EXPECT_FALSE(ks.match(bad));
    }
    EXPECT_FALSE(ks.check(std::string(1 << 20, 'a')));
}

TEST(ApiKeys, RefusesWeakOrOddKeys) {
    api_key_set ks;
    EXPECT_TRUE(ks.add(""));
    EXPECT_TRUE(ks.add("short"));
    EXPECT_TRUE(ks.add("fifteen-bytes!!"));
    EXPECT_FALSE(ks.add("sixteen-bytes!!!"));
    EXPECT_TRUE(ks.add("has a space in it for sure"));
    EXPECT_TRUE(ks.add("has,a,comma,in,it,for,sure"));
    EXPECT_TRUE(ks.add("non-ascii-\xc3\xa9-key-here"));
    EXPECT_TRUE(ks.add(std::string(5000, 'a')));
    EXPECT_EQ(ks.size(), 1u);
}

TEST(ApiKeys, FromEnvironment) {
    std::map<std::string, std::string> env = {
        {"KEYS", " key-one-0123456789, key-two-0123456789\nkey-three-0123456789 "},
        {"EMPTY", "  "},
        {"BAD", "key-one-0123456789,short"}};
    auto lookup = [&](const char* n) -> std::optional<std::string> {
        auto it = env.find(n);
        if (it == env.end()) return std::nullopt;
        return it->second;
    };
    api_key_set ks;
    EXPECT_FALSE(ks.add_from_env("KEYS", lookup));
    EXPECT_EQ(ks.size(), 3u);
    EXPECT_TRUE(ks.check("key-two-0123456789"));
    EXPECT_TRUE(ks.check("key-three-0123456789"));
    auto unset = ks.add_from_env("NOPE", lookup);
    ASSERT_TRUE(unset);
    EXPECT_NE(unset->find("NOPE"), std::string::npos);
    EXPECT_TRUE(ks.add_from_env("EMPTY", lookup));
    auto bad = ks.add_from_env("BAD", lookup);
    ASSERT_TRUE(bad);
    EXPECT_NE(bad->find("key 2"), std::string::npos) << *bad;
}

TEST(ParseBearer, Table) {
    struct row {
        const char* header;
        std::optional<std::string_view> want;
    };
    for (const auto& [h, want] : std::vector<row>{
             {"Bearer abc.def.ghi", "abc.def.ghi"},
             {"bearer abc", "abc"},
             {"BEARER abc", "abc"},
             {"Bearer   abc  ", "abc"},
             {"  Bearer abc", "abc"},
             {"Bearer a-b_c~d+e/f==", "a-b_c~d+e/f=="},
             {"Bearer", std::nullopt},
             {"Bearer ", std::nullopt},
             {"Bearerabc", std::nullopt},
             {"Basic dXNlcjpwYXNz", std::nullopt},
             {"Bearer a b", std::nullopt},
             {"Bearer a=b", std::nullopt},
             {"Bearer =abc", std::nullopt},
             {"Bearer abc,def", std::nullopt},
             {"Bearer\tabc", std::nullopt},
             {"", std::nullopt},
         }) {
        EXPECT_EQ(parse_bearer(h), want) << h;
    }
    EXPECT_FALSE(parse_bearer(std::string("Bearer ab\0c", 11)));
}

TEST(CookieValue, Table) {
    EXPECT_EQ(cookie_value("token=abc", "token"), "abc");
    EXPECT_EQ(cookie_value("a=1; token=abc; b=2", "token"), "abc");
    EXPECT_EQ(cookie_value("a=1;token=\"abc\"", "token"), "abc");
    EXPECT_EQ(cookie_value("mytoken=x; token=y", "token"), "y");
    EXPECT_EQ(cookie_value("token=", "token"), "");
    EXPECT_FALSE(cookie_value("a=1; b=2", "token"));
    EXPECT_FALSE(cookie_value("", "token"));
    EXPECT_FALSE(cookie_value("token", "token"));
    EXPECT_FALSE(cookie_value("token=abc", ""));
    EXPECT_EQ(cookie_value(";;; token=v ;", "token"), "v");
}
