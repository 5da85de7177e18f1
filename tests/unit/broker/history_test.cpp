#include "broker/history.hpp"

#include "herald/broker/broker.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

using namespace herald;
using namespace herald::broker;
using namespace std::chrono_literals;

namespace {

// prefix + n, built by appending (GCC 12 warns falsely on `"lit" + std::to_string(n)`).
[[maybe_unused]] std::string tagged(std::string prefix, std::uint64_t n) {
    prefix += std::to_string(n);
    return prefix;
}

const time_point t0 = time_point{} + 1000h;

// What the owner worker does for a publish: next offset, message, append.
hub::message_ptr publish(history_store& store, history_store::stream& s, std::string payload,
                         time_point at = t0) {
    const auto offset = ++s.top;
    auto m = hub::make_message(s.topic, s.epoch, offset, hub::payload_kind::text,
                               std::move(payload), "", at);
    store.append(s, m);
    return m;
}

std::vector<std::uint64_t> offsets(const decltype(history_store::stream::ring)& ring) {
    std::vector<std::uint64_t> out;
    for (const auto& m : ring) out.push_back(m->offset);
    return out;
}

std::vector<std::uint64_t> offsets(const std::vector<hub::message_ptr>& v) {
    std::vector<std::uint64_t> out;
    for (const auto& m : v) out.push_back(m->offset);
    return out;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> out;
    for (auto i = from; i <= to; ++i) out.push_back(i);
    return out;
}

std::size_t ring_bytes(const history_store::stream& s) {
    std::size_t n = 0;
    for (const auto& m : s.ring) n += m->footprint();
    return n;
}

const auto no_subscribers = [](const std::string&) { return false; };
const auto all_subscribed = [](const std::string&) { return true; };

// Footprint of a message like the ones publish() makes (same topic/epoch sizes, 1-digit offset).
std::size_t footprint_of(std::size_t topic_len, std::size_t payload_len) {
    return hub::make_message(std::string(topic_len, 't'), "00000000", 1, hub::payload_kind::text,
                             std::string(payload_len, 'p'), "", t0)
        ->footprint();
}

}  // namespace

TEST(History, OpenCreatesStreamWithFreshEpoch) {
    history_store store(1 << 20, 42);
    EXPECT_EQ(store.find("a"), nullptr);
    auto& a = store.open("a", {10, 60s}, t0);
    EXPECT_EQ(a.topic, "a");
    EXPECT_EQ(a.top, 0u);
    EXPECT_EQ(a.epoch.size(), 8u);
    for (char c : a.epoch) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)));
    EXPECT_EQ(store.find("a"), &a);
    // Opening again returns the same stream and epoch.
    auto& again = store.open("a", {10, 60s}, t0);
    EXPECT_EQ(&again, &a);
    auto& b = store.open("b", {10, 60s}, t0);
    EXPECT_NE(b.epoch, a.epoch);
    EXPECT_EQ(store.streams(), 2u);
}

TEST(History, RingBoundedByPolicySize) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {3, 60s}, t0);
    for (int i = 0; i < 5; ++i) (void)publish(store, s, tagged("m", i));
    EXPECT_EQ(offsets(s.ring), (std::vector<std::uint64_t>{3, 4, 5}));
    EXPECT_EQ(s.top, 5u);
    EXPECT_EQ(s.bytes, ring_bytes(s));
    EXPECT_EQ(store.bytes(), ring_bytes(s));
}

TEST(History, SizeZeroKeepsNothing) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {0, 60s}, t0);
    (void)publish(store, s, "a");
    (void)publish(store, s, "b");
    EXPECT_TRUE(s.ring.empty());
    EXPECT_EQ(store.bytes(), 0u);
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(s, {s.epoch, 2}, 100, out), recovery::ok);  // nothing missed
    EXPECT_EQ(store.since(s, {s.epoch, 1}, 100, out), recovery::gap_too_large);
    EXPECT_TRUE(out.empty());
}

// A reload changes a topic's policy: the stream takes it when next opened, and its next publish
// trims the ring to the new size; size 0 then empties it, so the ring still ends at top.
TEST(History, ReopenTakesANewPolicy) {
    history_store store(1 << 20, 1);
    auto* s = &store.open("t", {5, 60s}, t0);
    for (int i = 0; i < 5; ++i) (void)publish(store, *s, tagged("m", i));
    s = &store.open("t", {2, 60s}, t0);
    EXPECT_EQ(s->policy.size, 2u);
    (void)publish(store, *s, "x");
    EXPECT_EQ(offsets(s->ring), (std::vector<std::uint64_t>{5, 6}));
    s = &store.open("t", {0, 60s}, t0);
    (void)publish(store, *s, "y");
    EXPECT_TRUE(s->ring.empty());
    EXPECT_EQ(store.bytes(), 0u);
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(*s, {s->epoch, 6}, 100, out), recovery::gap_too_large);
}

// Reload: set_live_history's rules replace the configured ones for every broker, until reset.
TEST(History, LiveRulesReplaceTheConfiguredOnes) {
    config::settings configured;
    configured.history.namespaces = {{"h:*", 3, 60s}};
    config::settings live = configured;
    live.history.namespaces = {{"h:*", 7, 10s}};
    EXPECT_EQ(policy_for(configured, "h:1").size, 3u);
    set_live_history(&live);
    EXPECT_EQ(policy_for(configured, "h:1").size, 7u);
    EXPECT_EQ(policy_for(configured, "h:1").ttl, 10s);
    set_live_history(nullptr);
    EXPECT_EQ(policy_for(configured, "h:1").size, 3u);
}

TEST(History, MaxBytesZeroKeepsNothing) {
    history_store store(0, 1);
    auto& s = store.open("t", {10, 60s}, t0);
    (void)publish(store, s, "a");
    EXPECT_TRUE(s.ring.empty());
    EXPECT_EQ(store.bytes(), 0u);
}

TEST(History, EvictionByTotalBytesTakesOldestAcrossTopics) {
    const std::size_t fp = footprint_of(2, 10);
    history_store store(3 * fp, 1);
    auto& a = store.open("ta", {100, 60s}, t0);
    auto& b = store.open("tb", {100, 60s}, t0);
    ASSERT_EQ(a.epoch.size(), 8u);
    (void)publish(store, a, std::string(10, 'x'));  // a1
    (void)publish(store, b, std::string(10, 'x'));  // b1
    (void)publish(store, a, std::string(10, 'x'));  // a2
    ASSERT_EQ(store.bytes(), 3 * fp);
    (void)publish(store, b, std::string(10, 'x'));  // b2: a1 must go
    EXPECT_EQ(offsets(a.ring), (std::vector<std::uint64_t>{2}));
    EXPECT_EQ(offsets(b.ring), (std::vector<std::uint64_t>{1, 2}));
    (void)publish(store, a, std::string(10, 'x'));  // a3: b1 must go
    EXPECT_EQ(offsets(a.ring), (std::vector<std::uint64_t>{2, 3}));
    EXPECT_EQ(offsets(b.ring), (std::vector<std::uint64_t>{2}));
    EXPECT_EQ(store.bytes(), ring_bytes(a) + ring_bytes(b));
    EXPECT_LE(store.bytes(), 3 * fp);
    EXPECT_EQ(a.bytes, ring_bytes(a));
    EXPECT_EQ(b.bytes, ring_bytes(b));
}

TEST(History, EvictionSkipsMessagesAlreadyDroppedByRingSize) {
    const std::size_t fp = footprint_of(2, 10);
    history_store store(4 * fp, 1);
    auto& a = store.open("ta", {1, 60s}, t0);  // a keeps only its newest
    auto& b = store.open("tb", {100, 60s}, t0);
    for (int i = 0; i < 3; ++i) (void)publish(store, a, std::string(10, 'x'));  // a3 kept
    for (int i = 0; i < 3; ++i) (void)publish(store, b, std::string(10, 'x'));  // b1..b3
    ASSERT_EQ(store.bytes(), 4 * fp);
    (void)publish(store, b, std::string(10, 'x'));  // b4: the oldest live one is a3
    EXPECT_TRUE(a.ring.empty());
    EXPECT_EQ(offsets(b.ring), range(1, 4));
    EXPECT_EQ(store.bytes(), ring_bytes(b));
}

TEST(History, MessageLargerThanAllHistoryIsNotKept) {
    const std::size_t fp = footprint_of(1, 10);
    history_store store(3 * fp, 1);
    auto& s = store.open("t", {100, 60s}, t0);
    (void)publish(store, s, std::string(10, 'x'));
    (void)publish(store, s, std::string(10 * fp, 'x'));
    EXPECT_EQ(store.bytes(), ring_bytes(s));
    EXPECT_LE(store.bytes(), 3 * fp);
}

// Recovery is all or nothing: whatever since() answers ok must be exactly the messages after the
// position, even when one of them was too large to keep in history.
TEST(History, SinceNeverReturnsAPartialReplayWhenAMessageWasNotKept) {
    const std::size_t fp = footprint_of(1, 10);
    history_store store(3 * fp, 1);
    auto& s = store.open("t", {100, 60s}, t0);
    (void)publish(store, s, std::string(10, 'x'));       // 1: kept
    (void)publish(store, s, std::string(10 * fp, 'x'));  // 2: too large to keep
    (void)publish(store, s, std::string(10, 'x'));       // 3: kept
    for (std::uint64_t from : {0u, 1u, 2u}) {
        std::vector<hub::message_ptr> out;
        auto r = store.since(s, {s.epoch, from}, 100, out);
        if (r == recovery::ok) {
            EXPECT_EQ(offsets(out), range(from + 1, 3)) << "since " << from;
        } else {
            EXPECT_EQ(r, recovery::gap_too_large) << "since " << from;
            EXPECT_TRUE(out.empty());
        }
    }
}

TEST(History, SinceReturnsExactlyTheMissedMessages) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {10, 60s}, t0);
    for (int i = 0; i < 8; ++i) (void)publish(store, s, tagged("m", i + 1));
    std::vector<hub::message_ptr> out;
    ASSERT_EQ(store.since(s, {s.epoch, 5}, 100, out), recovery::ok);
    ASSERT_EQ(offsets(out), (std::vector<std::uint64_t>{6, 7, 8}));
    EXPECT_EQ(out[0]->payload, "m6");
    out.clear();
    ASSERT_EQ(store.since(s, {s.epoch, 0}, 100, out), recovery::ok);
    EXPECT_EQ(offsets(out), range(1, 8));
    out.clear();
    EXPECT_EQ(store.since(s, {s.epoch, 8}, 100, out), recovery::ok);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(store.since(s, {s.epoch, 5}, 3, out), recovery::ok);  // exactly max_messages
    EXPECT_EQ(out.size(), 3u);
}

TEST(History, SinceFailuresFillNothing) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {5, 60s}, t0);
    for (int i = 0; i < 8; ++i) (void)publish(store, s, "m");  // ring holds 4..8
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(s, {"otherep", 7}, 100, out), recovery::epoch_changed);
    EXPECT_EQ(store.since(s, {s.epoch, 9}, 100, out), recovery::bad_offset);
    EXPECT_EQ(store.since(s, {s.epoch, 2}, 100, out), recovery::gap_too_large);  // 3 is gone
    EXPECT_EQ(store.since(s, {s.epoch, 4}, 3, out), recovery::gap_too_large);    // 4 > max
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(store.since(s, {s.epoch, 3}, 100, out), recovery::ok);  // 4..8 all held
    EXPECT_EQ(offsets(out), range(4, 8));
}

TEST(History, SinceAfterEvictionByBytesIsGapTooLarge) {
    const std::size_t fp = footprint_of(1, 10);
    history_store store(2 * fp, 1);
    auto& s = store.open("t", {100, 60s}, t0);
    for (int i = 0; i < 4; ++i) (void)publish(store, s, std::string(10, 'x'));
    EXPECT_EQ(offsets(s.ring), (std::vector<std::uint64_t>{3, 4}));
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(s, {s.epoch, 1}, 100, out), recovery::gap_too_large);
    EXPECT_EQ(store.since(s, {s.epoch, 2}, 100, out), recovery::ok);
    EXPECT_EQ(offsets(out), (std::vector<std::uint64_t>{3, 4}));
}

TEST(History, RecoveryNames) {
    EXPECT_STREQ(to_string(recovery::ok), "ok");
    EXPECT_STREQ(to_string(recovery::epoch_changed), "epoch changed");
    EXPECT_STREQ(to_string(recovery::gap_too_large), "gap too large");
}

TEST(History, TtlExpiryDropsOldMessages) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {100, 10s}, t0);
    (void)publish(store, s, "old", t0);
    (void)publish(store, s, "new", t0 + 5s);
    store.expire(t0 + 9s, 60s, no_subscribers);
    EXPECT_EQ(s.ring.size(), 2u);
    store.expire(t0 + 10s, 60s, no_subscribers);
    EXPECT_EQ(offsets(s.ring), (std::vector<std::uint64_t>{2}));
    EXPECT_EQ(store.bytes(), ring_bytes(s));
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(s, {s.epoch, 0}, 100, out), recovery::gap_too_large);
}

TEST(History, EmptyIdleStreamIsDeletedAndGetsANewEpoch) {
    history_store store(1 << 20, 7);
    const auto ttl = 10s;
    auto& s = store.open("t", {100, ttl}, t0);
    (void)publish(store, s, "x", t0);
    const std::string old_epoch = s.epoch;
    store.expire(t0 + ttl - 1ms, 60s, no_subscribers);
    ASSERT_NE(store.find("t"), nullptr);
    store.expire(t0 + ttl, 60s, no_subscribers);
    EXPECT_EQ(store.find("t"), nullptr);
    EXPECT_EQ(store.streams(), 0u);
    EXPECT_EQ(store.bytes(), 0u);
    auto& fresh = store.open("t", {100, ttl}, t0 + ttl);
    EXPECT_NE(fresh.epoch, old_epoch);
    EXPECT_EQ(fresh.top, 0u);
    std::vector<hub::message_ptr> out;
    EXPECT_EQ(store.since(fresh, {old_epoch, 1}, 100, out), recovery::epoch_changed);
}

TEST(History, StreamWithSubscribersIsKept) {
    history_store store(1 << 20, 7);
    auto& s = store.open("t", {100, 10s}, t0);
    (void)publish(store, s, "x", t0);
    const std::string epoch = s.epoch;
    store.expire(t0 + 1h, 60s, all_subscribed);
    auto* kept = store.find("t");
    ASSERT_NE(kept, nullptr);
    EXPECT_EQ(kept->epoch, epoch);
    EXPECT_EQ(kept->top, 1u);
    EXPECT_TRUE(kept->ring.empty());  // messages still expire
}

TEST(History, StreamWithIdempotencyKeysIsKeptUntilTheyExpire) {
    history_store store(1 << 20, 7);
    auto& s = store.open("t", {100, 10s}, t0);
    auto m = publish(store, s, "x", t0);
    store.remember_key(s, "k", m->offset, t0);
    store.expire(t0 + 20s, 60s, no_subscribers);
    ASSERT_NE(store.find("t"), nullptr);
    store.expire(t0 + 60s, 60s, no_subscribers);
    EXPECT_EQ(store.find("t"), nullptr);
}

TEST(History, OpenRefreshesActivity) {
    history_store store(1 << 20, 7);
    (void)store.open("t", {100, 10s}, t0);
    (void)store.open("t", {100, 10s}, t0 + 8s);
    store.expire(t0 + 12s, 60s, no_subscribers);
    EXPECT_NE(store.find("t"), nullptr);
    store.expire(t0 + 18s, 60s, no_subscribers);
    EXPECT_EQ(store.find("t"), nullptr);
}

TEST(History, IdempotencyWindow) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {100, 60s}, t0);
    EXPECT_FALSE(store.seen_key(s, "k1", t0, 5min));
    EXPECT_EQ(s.keys, nullptr);  // a topic without keys holds no key table
    store.remember_key(s, "k1", 1, t0);
    store.remember_key(s, "k2", 2, t0 + 1min);
    EXPECT_EQ(store.seen_key(s, "k1", t0 + 4min, 5min), 1u);
    EXPECT_EQ(store.seen_key(s, "k2", t0 + 4min, 5min), 2u);
    EXPECT_FALSE(store.seen_key(s, "k3", t0 + 4min, 5min));
    // At the window's end k1 is forgotten, k2 is not.
    EXPECT_FALSE(store.seen_key(s, "k1", t0 + 5min, 5min));
    EXPECT_EQ(store.seen_key(s, "k2", t0 + 5min, 5min), 2u);
    // A forgotten key may be used again.
    store.remember_key(s, "k1", 9, t0 + 5min);
    EXPECT_EQ(store.seen_key(s, "k1", t0 + 6min, 5min), 9u);
    // Keys are per stream.
    auto& other = store.open("u", {100, 60s}, t0);
    EXPECT_FALSE(store.seen_key(other, "k2", t0 + 5min, 5min));
    // Once its last key expires the table is freed.
    EXPECT_FALSE(store.seen_key(s, "k1", t0 + 11min, 5min));
    EXPECT_EQ(s.keys, nullptr);
}

TEST(History, FifoCompactionKeepsAccounting) {
    history_store store(1ull << 30, 1);
    auto& s = store.open("t", {10, 60s}, t0);
    for (int i = 0; i < 100'000; ++i) (void)publish(store, s, tagged("payload ", i));
    EXPECT_EQ(s.ring.size(), 10u);
    EXPECT_EQ(offsets(s.ring), range(99'991, 100'000));
    EXPECT_EQ(s.bytes, ring_bytes(s));
    EXPECT_EQ(store.bytes(), ring_bytes(s));
}

TEST(History, AccountingAcrossTopicsWithByteEvictionAndTtl) {
    const std::size_t fp = footprint_of(2, 10);
    history_store store(50 * fp, 3);
    std::vector<history_store::stream*> ss;
    for (int i = 0; i < 5; ++i) ss.push_back(&store.open(tagged("t", i), {7, 10s}, t0));
    for (int i = 0; i < 20'000; ++i) {
        auto& s = *ss[(i * 7 + i / 3) % 5];
        (void)publish(store, s, std::string(10 + i % 20, 'x'), t0 + std::chrono::milliseconds(i));
    }
    std::size_t total = 0;
    for (auto* s : ss) {
        EXPECT_LE(s->ring.size(), 7u);
        EXPECT_EQ(s->bytes, ring_bytes(*s));
        total += ring_bytes(*s);
        // Rings stay consecutive and end at the top.
        if (!s->ring.empty()) {
            EXPECT_EQ(s->ring.back()->offset, s->top);
            EXPECT_EQ(s->ring.back()->offset - s->ring.front()->offset + 1, s->ring.size());
        }
    }
    EXPECT_EQ(store.bytes(), total);
    EXPECT_LE(store.bytes(), 50 * fp);
    store.expire(t0 + 1h, 0s, no_subscribers);
    EXPECT_EQ(store.bytes(), 0u);
    EXPECT_EQ(store.streams(), 0u);
}

// The ring's array grows while its oldest entry sits anywhere in it (wrapped around); entries
// keep their order, footprints and the oldest offset, and an emptied ring frees its array.
TEST(HistoryRing, GrowsAndWrapsKeepingOrder) {
    history_ring ring;
    std::uint64_t next = 1;
    auto push = [&] {
        auto m = hub::make_message("t", "00000000", next, hub::payload_kind::text,
                                   tagged("p", next), "", t0);
        ring.push_back(std::move(m), next, 1000 + next);
        ++next;
    };
    std::uint64_t popped = 0;
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 3 + round % 4; ++i) push();
        for (int i = 0; i < 2; ++i) {
            auto e = ring.pop_front();
            ++popped;
            EXPECT_EQ(e.message->offset, popped);
            EXPECT_EQ(e.message->payload, tagged("p", popped));
            EXPECT_EQ(e.footprint, 1000 + popped);
        }
        ASSERT_FALSE(ring.empty());
        EXPECT_EQ(ring.first_offset(), popped + 1);
        EXPECT_EQ(ring.front()->offset, popped + 1);
        EXPECT_EQ(ring.back()->offset, next - 1);
        EXPECT_EQ(ring.size(), next - 1 - popped);
        std::uint64_t expect = popped + 1;
        for (const auto& m : ring) EXPECT_EQ(m->offset, expect++);
    }
    ring.release_if_empty();  // not empty: keeps everything
    EXPECT_EQ(ring.front()->offset, popped + 1);
    while (!ring.empty()) (void)ring.pop_front();
    ring.release_if_empty();
    push();
    EXPECT_EQ(ring.first_offset(), next - 1);
    EXPECT_EQ(ring.size(), 1u);
}

// The one window rule both brokers use for GET /history.
TEST(HistoryWindow, WithoutAfterTheNewestLimitHeld) {
    auto w = history_window(51, 150, std::nullopt, 100);
    EXPECT_EQ(w.from, 51u);
    EXPECT_EQ(w.to, 150u);
    w = history_window(51, 150, std::nullopt, 5);
    EXPECT_EQ(w.from, 146u);
    EXPECT_EQ(w.to, 150u);
    w = history_window(59'163, 79'162, std::nullopt, 20'000);
    EXPECT_EQ(w.from, 59'163u);
    EXPECT_EQ(w.to, 79'162u);
    EXPECT_EQ(w.size(), 20'000u);
}

TEST(HistoryWindow, WithAfterTheOldestLimitHeldAfterIt) {
    auto w = history_window(51, 150, 0, 5);  // since=0: from the oldest held
    EXPECT_EQ(w.from, 51u);
    EXPECT_EQ(w.to, 55u);
    w = history_window(51, 150, 120, 5);
    EXPECT_EQ(w.from, 121u);
    EXPECT_EQ(w.to, 125u);
    w = history_window(51, 150, 148, 100);
    EXPECT_EQ(w.from, 149u);
    EXPECT_EQ(w.to, 150u);
    EXPECT_TRUE(history_window(51, 150, 150, 100).empty());
    EXPECT_TRUE(history_window(51, 150, 9'999, 100).empty());  // ahead of the stream
}

TEST(HistoryWindow, EmptyStreamOrLimitZero) {
    EXPECT_TRUE(history_window(1, 0, std::nullopt, 100).empty());  // never published
    EXPECT_TRUE(history_window(8, 7, 3, 100).empty());             // all expired
    EXPECT_TRUE(history_window(1, 10, std::nullopt, 0).empty());
    EXPECT_EQ(history_window(1, 10, std::nullopt, 0).size(), 0u);
}

TEST(HistoryWindow, MemoryStoreFollowsIt) {
    history_store store(1 << 20, 1);
    auto& s = store.open("t", {100, 1h}, t0);
    for (int i = 0; i < 150; ++i) publish(store, s, "x");
    EXPECT_EQ(history_store::first(s), 51u);
    std::vector<hub::message_ptr> out;
    history_store::copy(s, history_window(history_store::first(s), s.top, 0, 5), out);
    EXPECT_EQ(offsets(out), (std::vector<std::uint64_t>{51, 52, 53, 54, 55}));
}

TEST(CheckRecovery, Rules) {
    const hub::stream_pos at_40{"e", 40};
    EXPECT_EQ(check_recovery("e", 31, 50, at_40, 300), recovery::ok);
    EXPECT_EQ(check_recovery("f", 31, 50, at_40, 300), recovery::epoch_changed);
    EXPECT_EQ(check_recovery("e", 31, 39, at_40, 300), recovery::bad_offset);
    EXPECT_EQ(check_recovery("e", 41, 40, at_40, 300), recovery::ok);  // up to date, none held
    EXPECT_EQ(check_recovery("e", 41, 50, at_40, 300), recovery::ok);  // first missed is held
    EXPECT_EQ(check_recovery("e", 42, 50, at_40, 300), recovery::gap_too_large);
    EXPECT_EQ(check_recovery("e", 31, 50, at_40, 9), recovery::gap_too_large);
    EXPECT_EQ(check_recovery("e", 31, 50, at_40, 10), recovery::ok);
}
