#include "herald/auth/policy.hpp"

#include <gtest/gtest.h>

using namespace herald::auth;

TEST(AccessPolicy, NamespacesAndTokens) {
    access_policy p({{"ticker:*", true}, {"private:*", false}, {"news", true}}, false);
    EXPECT_TRUE(p.anonymous_can_subscribe("ticker:btc"));
    EXPECT_TRUE(p.anonymous_can_subscribe("news"));
    EXPECT_FALSE(p.anonymous_can_subscribe("private:alice"));
    EXPECT_FALSE(p.anonymous_can_subscribe("chat:room-1"));  // no rule: the default (none)

    token_claims t;
    t.sub = "alice";
    t.topics = {"private:alice", "chat:room-*"};
    t.publish = {"chat:room-1"};
    EXPECT_TRUE(p.can_subscribe(&t, "private:alice"));
    EXPECT_FALSE(p.can_subscribe(&t, "private:bob"));
    EXPECT_TRUE(p.can_subscribe(&t, "chat:room-9"));
    EXPECT_TRUE(p.can_subscribe(&t, "ticker:eth"));  // what anonymous may, a token holder may
    EXPECT_FALSE(p.can_subscribe(nullptr, "chat:room-9"));
    EXPECT_TRUE(p.can_subscribe(nullptr, "ticker:eth"));

    EXPECT_TRUE(p.can_publish(&t, "chat:room-1"));
    EXPECT_FALSE(p.can_publish(&t, "chat:room-2"));
    EXPECT_FALSE(p.can_publish(nullptr, "chat:room-1"));

    // The first matching rule wins.
    access_policy order({{"private:public-*", true}, {"private:*", false}}, true);
    EXPECT_TRUE(order.anonymous_can_subscribe("private:public-feed"));
    EXPECT_FALSE(order.anonymous_can_subscribe("private:x"));
    EXPECT_TRUE(order.anonymous_can_subscribe("other"));  // default: subscribe
}
