#include "herald/auth/token_bucket.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <string>
#include <thread>
#include <vector>

using namespace herald::auth;
using namespace std::chrono_literals;

namespace {
const rate_clock::time_point t0{std::chrono::seconds(1000)};

std::string key(std::string_view prefix, int i) {
    std::string s(prefix);
    s += std::to_string(i);
    return s;
}
}  // namespace

TEST(TokenBucket, BurstThenRate) {
    token_bucket b(10, 5, t0);  // 10/s, burst 5, starts full
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.try_take(t0)) << i;
    EXPECT_FALSE(b.try_take(t0));
    EXPECT_FALSE(b.try_take(t0 + 50ms));
    EXPECT_TRUE(b.try_take(t0 + 100ms));  // one token per 100 ms
    EXPECT_FALSE(b.try_take(t0 + 100ms));
    EXPECT_TRUE(b.try_take(t0 + 200ms));
}

TEST(TokenBucket, RefillIsCappedAtBurst) {
    token_bucket b(10, 5, t0);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.try_take(t0));
    const auto later = t0 + 1h;
    EXPECT_DOUBLE_EQ(b.tokens(later), 5.0);
    EXPECT_TRUE(b.full(later));
    int taken = 0;
    while (b.try_take(later)) ++taken;
    EXPECT_EQ(taken, 5);
}

TEST(TokenBucket, SustainedRateOverTime) {
    token_bucket b(100, 1, t0);
    int taken = 0;
    for (int ms = 0; ms < 10'000; ++ms)  // a client trying every millisecond for 10 s
        taken += b.try_take(t0 + std::chrono::milliseconds(ms)) ? 1 : 0;
    EXPECT_NEAR(taken, 1000, 2);
}

TEST(TokenBucket, RetryAfter) {
    token_bucket b(10, 2, t0);
    EXPECT_EQ(b.retry_after(t0), rate_clock::duration::zero());
    ASSERT_TRUE(b.try_take(t0));
    ASSERT_TRUE(b.try_take(t0));
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(b.retry_after(t0)), 100ms);
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(b.retry_after(t0 + 40ms)),
              60ms);
    EXPECT_EQ(b.retry_after(t0 + 100ms), rate_clock::duration::zero());
    EXPECT_EQ(retry_after_seconds(b.retry_after(t0)), 1);

    token_bucket slow(0.5, 1, t0);
    ASSERT_TRUE(slow.try_take(t0));
    EXPECT_EQ(retry_after_seconds(slow.retry_after(t0)), 2);
    EXPECT_EQ(retry_after_seconds(slow.retry_after(t0 + 1500ms)), 1);
    EXPECT_EQ(retry_after_seconds(0s), 1);
    EXPECT_EQ(retry_after_seconds(2001ms), 3);

    token_bucket never(0, 1, t0);  // no refill
    ASSERT_TRUE(never.try_take(t0));
    EXPECT_FALSE(never.try_take(t0 + 1h));
    EXPECT_EQ(never.retry_after(t0), std::chrono::hours(24));
    EXPECT_EQ(b.retry_after(t0, 100), std::chrono::hours(24));  // more than the burst
}

TEST(TokenBucket, ClockGoingBackMintsNothing) {
    token_bucket b(10, 1, t0);
    ASSERT_TRUE(b.try_take(t0));
    EXPECT_FALSE(b.try_take(t0 - 1h));
    EXPECT_FALSE(b.try_take(t0 + 50ms));
    EXPECT_TRUE(b.try_take(t0 + 100ms));
}

TEST(TokenBucket, BadParametersAreClamped) {
    token_bucket b(-5, 0, t0);
    EXPECT_EQ(b.rate(), 0);
    EXPECT_EQ(b.burst(), 1);
    token_bucket n(std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity(), t0);
    EXPECT_EQ(n.rate(), 0);
    EXPECT_EQ(n.burst(), 1);
}

TEST(RateLimiter, KeysAreIndependent) {
    rate_limiter rl({.rate = 1, .burst = 2, .max_entries = 100});
    EXPECT_TRUE(rl.try_take("10.0.0.1", t0));
    EXPECT_TRUE(rl.try_take("10.0.0.1", t0));
    EXPECT_FALSE(rl.try_take("10.0.0.1", t0));
    EXPECT_GT(rl.retry_after("10.0.0.1", t0), rate_clock::duration::zero());
    // Another address is served while the first is limited.
    EXPECT_TRUE(rl.try_take("10.0.0.2", t0));
    EXPECT_EQ(rl.retry_after("10.0.0.2", t0), rate_clock::duration::zero());
    EXPECT_EQ(rl.retry_after("never-seen", t0), rate_clock::duration::zero());
    EXPECT_TRUE(rl.try_take("10.0.0.1", t0 + 1s));
    EXPECT_EQ(rl.size(), 2u);
}

TEST(RateLimiter, CapEvictsLeastRecentlyUsed) {
    rate_limiter rl({.rate = 1, .burst = 1, .max_entries = 1000});
    ASSERT_TRUE(rl.try_take("victim", t0));
    EXPECT_FALSE(rl.try_take("victim", t0));
    // An attacker cycles through 5000 addresses; the victim stays in use meanwhile.
    for (int i = 0; i < 5000; ++i) {
        (void)rl.try_take(key("attacker-", i), t0);
        if (i % 100 == 0) {
            EXPECT_FALSE(rl.try_take("victim", t0)) << i;
        }
        ASSERT_LE(rl.size(), 1000u);
    }
    EXPECT_EQ(rl.size(), 1000u);
    EXPECT_EQ(rl.evictions(), 4001u);         // 5001 distinct keys into 1000 slots
    EXPECT_FALSE(rl.try_take("victim", t0));  // still limited: it was recently used
    // The oldest attacker addresses were evicted and start again with a full bucket.
    EXPECT_TRUE(rl.try_take("attacker-0", t0));
}

TEST(RateLimiter, DefaultCapHoldsAgainstAHundredThousandPlusKeys) {
    rate_limiter rl({.rate = 5, .burst = 10});
    EXPECT_EQ(rl.config().max_entries, 100'000u);
    for (int i = 0; i < 150'000; ++i) (void)rl.try_take(key("k", i), t0);
    EXPECT_EQ(rl.size(), 100'000u);
    EXPECT_EQ(rl.evictions(), 50'000u);
    // Very long keys are cut to 256 bytes, so one entry stays small: these two share a bucket.
    rate_limiter one({.rate = 0, .burst = 1});
    EXPECT_TRUE(one.try_take(std::string(1 << 20, 'x'), t0));
    EXPECT_FALSE(one.try_take(std::string(300, 'x'), t0));
    EXPECT_EQ(one.size(), 1u);
}

TEST(RateLimiter, SweepDropsRefilledEntries) {
    rate_limiter rl({.rate = 10, .burst = 1, .max_entries = 100});
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(rl.try_take(key("k", i), t0));
    EXPECT_EQ(rl.sweep(t0), 0u);  // all empty buckets: nothing to drop
    ASSERT_TRUE(rl.try_take("late", t0 + 150ms));
    EXPECT_EQ(rl.sweep(t0 + 150ms), 50u);  // the 50 early ones refilled; "late" has not
    EXPECT_EQ(rl.size(), 1u);
    EXPECT_EQ(rl.sweep(t0 + 1s, 0), 0u);  // max_scan bounds the work
    EXPECT_EQ(rl.sweep(t0 + 1s), 1u);
    EXPECT_EQ(rl.size(), 0u);
}

TEST(SharedRateLimiter, ManyThreads) {
    shared_rate_limiter rl({.rate = 0.001, .burst = 100, .max_entries = 10});
    std::atomic<int> granted{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (rl.try_take("one", t0)) ++granted;
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(granted.load(), 100);
    EXPECT_EQ(rl.size(), 1u);
    EXPECT_GT(rl.retry_after("one", t0), rate_clock::duration::zero());
}

TEST(ConnectionCounter, PerKeyCapAndRelease) {
    connection_counter c(2);
    EXPECT_TRUE(c.try_acquire("1.2.3.4"));
    EXPECT_TRUE(c.try_acquire("1.2.3.4"));
    EXPECT_FALSE(c.try_acquire("1.2.3.4"));
    EXPECT_TRUE(c.try_acquire("5.6.7.8"));
    EXPECT_EQ(c.count("1.2.3.4"), 2u);
    EXPECT_EQ(c.keys(), 2u);
    c.release("1.2.3.4");
    EXPECT_TRUE(c.try_acquire("1.2.3.4"));
    c.release("1.2.3.4");
    c.release("1.2.3.4");
    c.release("5.6.7.8");
    EXPECT_EQ(c.keys(), 0u);  // entries exist only while connections are open
    c.release("never");       // harmless
    EXPECT_EQ(c.count("never"), 0u);
    connection_counter none(0);
    EXPECT_FALSE(none.try_acquire("x"));
}
