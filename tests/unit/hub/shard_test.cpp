#include "herald/hub/hub.hpp"

#include "hub_fixture.hpp"
#include "herald/wire/topic.hpp"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <memory>
#include <random>
#include <utility>

// The hub and the memory broker, without sockets (hub_fixture.hpp).
using namespace herald;
using namespace std::chrono_literals;

namespace {

// prefix + n, built by appending (GCC 12 warns falsely on `"lit" + std::to_string(n)`).
[[maybe_unused]] std::string tagged(std::string prefix, std::uint64_t n) {
    prefix += std::to_string(n);
    return prefix;
}

struct client final : hub::subscriber {
    hub::subscription sub;
    std::vector<hub::message_ptr> got;
    std::vector<hub::subscribe_result> answers;
    std::vector<std::string> log;  // "answer" and "m<offset>" in the order they happened

    client(std::string topic, std::optional<hub::stream_pos> since = std::nullopt) {
        sub.owner = this;
        sub.topic = std::move(topic);
        sub.resume_from(std::move(since));
    }
    void on_message(hub::subscription& s, const hub::message_ptr& m) override {
        EXPECT_EQ(&s, &sub);
        got.push_back(m);
        log.push_back(tagged("m", m->offset));
    }
    void on_subscribed(hub::subscription& s, const hub::subscribe_result& r) override {
        EXPECT_EQ(&s, &sub);
        answers.push_back(r);
        log.push_back("answer");
    }
    [[nodiscard]] std::vector<std::uint64_t> offsets() const {
        std::vector<std::uint64_t> out;
        for (const auto& m : got) out.push_back(m->offset);
        return out;
    }
};

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> out;
    for (auto i = from; i <= to; ++i) out.push_back(i);
    return out;
}

class HubTest : public test::hub_fixture {
protected:
    void SetUp() override {
        cfg.history.size = 50;
        cfg.history.max_recovery = 300;
    }

    client& add(unsigned worker, const std::string& topic,
                std::optional<hub::stream_pos> since = std::nullopt) {
        clients.push_back(std::make_unique<client>(topic, std::move(since)));
        auto& c = *clients.back();
        worker_of[&c] = worker;
        h->at(worker).subscribe(c.sub);
        return c;
    }

    void drop(client& c) { h->at(worker_of.at(&c)).unsubscribe(c.sub); }

    // Starts a publish from `from`; its result lands in results[index] once run.
    std::size_t publish_async(unsigned from, const std::string& topic, std::string payload,
                              std::string key = {}) {
        const std::size_t index = results.size();
        results.emplace_back();
        hub::publish_request req;
        req.topic = topic;
        req.payload = std::move(payload);
        req.idempotency_key = std::move(key);
        b->publish(from, std::move(req), [this, index, from](broker::publish_result r) {
            ran_on.emplace_back(from, running_worker());
            results[index] = std::move(r);
        });
        return index;
    }

    // The worker whose io_context runs the calling handler (k_workers outside any).
    unsigned running_worker() {
        for (unsigned w = 0; w < k_workers; ++w)
            if (ctx[w].get_executor().running_in_this_thread()) return w;
        return k_workers;
    }

    broker::publish_result publish(unsigned from, const std::string& topic, std::string payload,
                                   std::string key = {}) {
        auto i = publish_async(from, topic, std::move(payload), std::move(key));
        run();
        return results[i];
    }

    broker::history_result history(unsigned from, const std::string& topic,
                                   std::optional<hub::stream_pos> since, std::size_t limit) {
        broker::history_result out;
        bool done = false;
        b->history(from, topic, std::move(since), limit, [&](broker::history_result r) {
            out = std::move(r);
            done = true;
        });
        run();
        EXPECT_TRUE(done);
        return out;
    }

    std::vector<std::unique_ptr<client>> clients;
    std::map<client*, unsigned> worker_of;
    std::vector<broker::publish_result> results;
    // Per finished publish: (the worker it was started from, the worker its handler ran on).
    std::vector<std::pair<unsigned, unsigned>> ran_on;
};

}  // namespace

TEST_F(HubTest, OwnerIsStableHashOfTheTopic) {
    start();
    EXPECT_EQ(h->workers(), k_workers);
    for (auto t : {"a", "news", "chat:1"}) {
        EXPECT_EQ(h->owner_of(t), wire::topic_hash(t) % k_workers);
        EXPECT_LT(h->owner_of(t), k_workers);
    }
}

TEST_F(HubTest, EverySubscriberOnEveryWorkerGetsEachMessageOnceInOrder) {
    start();
    const std::string topic = "news";
    for (unsigned w = 0; w < k_workers; ++w) {
        add(w, topic);
        add(w, topic);
    }
    run();
    std::string epoch;
    for (auto& c : clients) {
        ASSERT_EQ(c->answers.size(), 1u);
        EXPECT_FALSE(c->answers[0].resume_requested);
        EXPECT_EQ(c->answers[0].top, 0u);
        if (epoch.empty()) epoch = c->answers[0].epoch;
        EXPECT_EQ(c->answers[0].epoch, epoch);
    }
    for (unsigned w = 0; w < k_workers; ++w) EXPECT_EQ(h->at(w).local_subscriptions(), 2u);
    EXPECT_TRUE(h->at(h->owner_of(topic)).has_subscribers(topic));

    const int n = 30;
    for (int i = 0; i < n; ++i) publish_async(i % k_workers, topic, tagged("m", i + 1));
    run();
    ASSERT_EQ(results.size(), std::size_t(n));
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(results[i].status, broker::publish_status::ok);
        EXPECT_EQ(results[i].topic, topic);
        EXPECT_EQ(results[i].epoch, epoch);
        EXPECT_EQ(results[i].offset, std::uint64_t(i + 1));
        EXPECT_EQ(results[i].subscribers, 6u);
    }
    // Each done handler ran on the worker that published.
    ASSERT_EQ(ran_on.size(), std::size_t(n));
    for (const auto& [from, on] : ran_on) EXPECT_EQ(on, from) << "a publish started on " << from;

    for (auto& c : clients) {
        ASSERT_EQ(c->offsets(), range(1, n));
        for (int i = 0; i < n; ++i) {
            EXPECT_EQ(c->got[i]->payload, tagged("m", i + 1));
            EXPECT_EQ(c->got[i]->epoch, epoch);
            // Encoded once: every recipient on every worker holds the same message.
            EXPECT_EQ(c->got[i].get(), clients[0]->got[i].get());
        }
    }
}

TEST_F(HubTest, PublishWithoutSubscribers) {
    start();
    auto r1 = publish(1, "lonely", "a");
    auto r2 = publish(2, "lonely", "b");
    EXPECT_EQ(r1.status, broker::publish_status::ok);
    EXPECT_EQ(r1.subscribers, 0u);
    EXPECT_EQ(r1.offset, 1u);
    EXPECT_EQ(r2.offset, 2u);
    EXPECT_EQ(r1.epoch, r2.epoch);
    EXPECT_FALSE(r1.epoch.empty());
}

TEST_F(HubTest, TopicsAreIndependent) {
    start();
    auto& a = add(0, "a");
    auto& bb = add(0, "b");
    run();
    (void)publish(1, "a", "for a");
    (void)publish(1, "b", "for b");
    (void)publish(1, "a", "for a again");
    EXPECT_EQ(a.offsets(), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(bb.offsets(), (std::vector<std::uint64_t>{1}));
    EXPECT_EQ(bb.got[0]->payload, "for b");
}

TEST_F(HubTest, UnsubscribeStopsDelivery) {
    start();
    const std::string topic = "news";
    auto& stays = add(0, topic);
    auto& leaves = add(2, topic);
    run();
    EXPECT_EQ(publish(1, topic, "1").subscribers, 2u);
    drop(leaves);
    run();
    auto r = publish(1, topic, "2");
    EXPECT_EQ(r.subscribers, 1u);
    EXPECT_EQ(stays.offsets(), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(leaves.offsets(), (std::vector<std::uint64_t>{1}));
    EXPECT_EQ(h->at(2).local_subscriptions(), 0u);
    EXPECT_EQ(h->at(2).local_topics(), 0u);
    drop(stays);
    run();
    EXPECT_FALSE(h->at(h->owner_of(topic)).has_subscribers(topic));
    EXPECT_EQ(publish(1, topic, "3").subscribers, 0u);
    EXPECT_EQ(stays.got.size(), 2u);
}

TEST_F(HubTest, UnsubscribeOneOfSeveralOnAWorkerKeepsTheOthers) {
    start();
    auto& a = add(1, "x");
    auto& b2 = add(1, "x");
    auto& c = add(1, "x");
    run();
    drop(a);  // swap-remove must keep b2 and c reachable
    run();
    (void)publish(0, "x", "p");
    EXPECT_TRUE(a.got.empty());
    EXPECT_EQ(b2.offsets(), (std::vector<std::uint64_t>{1}));
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{1}));
    drop(c);
    run();
    (void)publish(0, "x", "q");
    EXPECT_EQ(b2.offsets(), (std::vector<std::uint64_t>{1, 2}));
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{1}));
}

TEST_F(HubTest, UnsubscribeBeforeTheAnswerMeansNothingArrives) {
    start();
    auto& c = add(1, "news");
    drop(c);  // before the owner answered
    publish_async(0, "news", "x");
    run();
    EXPECT_TRUE(c.answers.empty());
    EXPECT_TRUE(c.got.empty());
    EXPECT_FALSE(h->at(h->owner_of("news")).has_subscribers("news"));
    EXPECT_EQ(results[0].subscribers, 0u);
}

TEST_F(HubTest, NewSubscriberStartsAtTheTop) {
    start();
    for (int i = 0; i < 4; ++i) (void)publish(0, "news", "old");
    auto& c = add(2, "news");
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    EXPECT_EQ(c.answers[0].top, 4u);
    EXPECT_TRUE(c.answers[0].replay.empty());
    (void)publish(0, "news", "new");
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{5}));
}

class HubResume : public HubTest, public ::testing::WithParamInterface<unsigned> {};

// The subscriber on each worker in turn, so the owner's own worker is covered too.
TEST_P(HubResume, RecoversExactlyTheMissedMessagesBeforeNewOnes) {
    start();
    const unsigned w = GetParam();
    std::string epoch;
    for (int i = 0; i < 5; ++i) epoch = publish(1, "news", tagged("m", i + 1)).epoch;
    auto& c = add(w, "news", hub::stream_pos{epoch, 2});
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    const auto& a = c.answers[0];
    EXPECT_TRUE(a.resume_requested);
    EXPECT_TRUE(a.recovered);
    EXPECT_EQ(a.epoch, epoch);
    EXPECT_EQ(a.top, 5u);
    (void)publish(0, "news", "m6");
    EXPECT_EQ(c.offsets(), range(3, 6));
    EXPECT_EQ(c.got[0]->payload, "m3");
    EXPECT_EQ(c.log.front(), "answer");
}

TEST_P(HubResume, PublishesInFlightDuringTheSubscribeAreNeitherLostNorDoubled) {
    start();
    const unsigned w = GetParam();
    std::string epoch;
    for (int i = 0; i < 5; ++i) epoch = publish(1, "news", "x").epoch;
    // Publishes queued before and after the subscribe, none polled yet.
    publish_async(0, "news", "6");
    publish_async(2, "news", "7");
    auto& c = add(w, "news", hub::stream_pos{epoch, 2});
    publish_async(1, "news", "8");
    publish_async(w, "news", "9");
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    EXPECT_TRUE(c.answers[0].recovered);
    EXPECT_EQ(c.offsets(), range(3, 9));
    EXPECT_EQ(c.log.front(), "answer");
}

TEST_P(HubResume, LiveSubscriberAndEarlyMessagesWithoutSince) {
    start();
    const unsigned w = GetParam();
    auto& first = add(w, "news");
    run();
    (void)publish(0, "news", "1");
    publish_async(0, "news", "2");  // ordered before the second subscribe
    auto& second = add(w, "news");
    publish_async(0, "news", "3");  // ordered after it
    run();
    EXPECT_EQ(first.offsets(), range(1, 3));
    ASSERT_EQ(second.answers.size(), 1u);
    EXPECT_EQ(second.answers[0].top, 2u);
    EXPECT_EQ(second.offsets(), (std::vector<std::uint64_t>{3}));
}

TEST_P(HubResume, EpochMismatchIsNotRecoveredAndReplaysNothing) {
    start();
    const unsigned w = GetParam();
    for (int i = 0; i < 3; ++i) (void)publish(1, "news", "x");
    auto& c = add(w, "news", hub::stream_pos{"oldepoch", 1});
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    EXPECT_TRUE(c.answers[0].resume_requested);
    EXPECT_FALSE(c.answers[0].recovered);
    EXPECT_EQ(c.answers[0].reason, "epoch changed");
    EXPECT_TRUE(c.answers[0].replay.empty());
    EXPECT_EQ(c.answers[0].top, 3u);
    EXPECT_TRUE(c.got.empty());
    (void)publish(0, "news", "new");
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{4}));
}

TEST_P(HubResume, GapLargerThanHistoryIsNotRecovered) {
    start();
    const unsigned w = GetParam();
    std::string epoch;
    for (int i = 0; i < 60; ++i) epoch = publish(1, "news", "x").epoch;  // history keeps 11..60
    auto& c = add(w, "news", hub::stream_pos{epoch, 1});
    publish_async(0, "news", "61");
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    EXPECT_FALSE(c.answers[0].recovered);
    EXPECT_EQ(c.answers[0].reason, "gap too large");
    EXPECT_TRUE(c.answers[0].replay.empty());
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{61}));  // no partial replay
}

INSTANTIATE_TEST_SUITE_P(EachWorker, HubResume, ::testing::Values(0u, 1u, 2u));

TEST_F(HubTest, OffsetAheadOfTheStreamIsNotRecovered) {
    start();
    std::string epoch = publish(1, "news", "x").epoch;
    auto& c = add(0, "news", hub::stream_pos{epoch, 10});
    run();
    ASSERT_EQ(c.answers.size(), 1u);
    EXPECT_FALSE(c.answers[0].recovered);
    EXPECT_EQ(c.answers[0].reason, "offset ahead of stream");
    (void)publish(1, "news", "y");
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{2}));
}

TEST_F(HubTest, ReplayIsCappedByMaxRecovery) {
    cfg.history.max_recovery = 5;
    start();
    std::string epoch;
    for (int i = 0; i < 20; ++i) epoch = publish(1, "news", "x").epoch;
    auto& over = add(0, "news", hub::stream_pos{epoch, 14});  // 6 missed
    auto& at = add(2, "news", hub::stream_pos{epoch, 15});    // 5 missed
    run();
    EXPECT_FALSE(over.answers.at(0).recovered);
    EXPECT_TRUE(over.got.empty());
    EXPECT_TRUE(at.answers.at(0).recovered);
    EXPECT_EQ(at.offsets(), range(16, 20));
}

TEST_F(HubTest, ResumeAtTheTopIsRecoveredWithNothingToReplay) {
    start();
    std::string epoch;
    for (int i = 0; i < 3; ++i) epoch = publish(1, "news", "x").epoch;
    auto& c = add(2, "news", hub::stream_pos{epoch, 3});
    run();
    EXPECT_TRUE(c.answers.at(0).recovered);
    EXPECT_TRUE(c.got.empty());
}

// A subscriber drops out mid-stream and resumes from its last offset while a publisher runs flat
// out; handlers run in a random interleaving. The union of what it got is exactly 1..N.
TEST_F(HubTest, ResumeUnderRandomInterleavingLosesAndDoublesNothing) {
    cfg.history.size = 1000;
    cfg.history.max_recovery = 1000;
    start();
    const std::string topic = "feed";
    for (std::uint32_t seed = 1; seed <= 40; ++seed) {
        const std::string t = topic + std::to_string(seed);
        std::mt19937 rng(seed);
        const int n = 150;
        const unsigned w1 = rng() % k_workers, w2 = rng() % k_workers;
        auto& before = add(w1, t);
        run();
        const std::string epoch = before.answers.at(0).epoch;
        client* after = nullptr;
        int issued = 0;
        const std::size_t cut = 20 + rng() % 60;
        for (int step = 0; step < 1'000'000 && !(after && issued == n); ++step) {
            if (!after && !before.got.empty() && before.got.size() >= cut) {
                drop(before);
                after = &add(w2, t, hub::stream_pos{epoch, before.got.back()->offset});
            }
            if (issued < n && rng() % 3 == 0) {
                publish_async(rng() % k_workers, t, std::to_string(++issued));
                continue;
            }
            auto& c = ctx[rng() % k_workers];
            c.restart();
            (void)c.poll_one();
        }
        run();
        ASSERT_NE(after, nullptr) << "seed " << seed;
        ASSERT_EQ(after->answers.size(), 1u);
        EXPECT_TRUE(after->answers[0].recovered) << "seed " << seed;
        std::vector<std::uint64_t> all = before.offsets();
        auto rest = after->offsets();
        all.insert(all.end(), rest.begin(), rest.end());
        ASSERT_EQ(all, range(1, n)) << "seed " << seed << " cut " << cut;
        drop(*after);
        run();
    }
}

TEST_F(HubTest, IdempotencyKeyAnswersDuplicateAndDeliversOnce) {
    start();
    auto& c = add(2, "orders");
    run();
    auto first = publish(0, "orders", "pay", "key-1");
    auto again = publish(1, "orders", "pay", "key-1");
    auto other = publish(1, "orders", "pay", "key-2");
    auto elsewhere = publish(1, "other", "pay", "key-1");
    EXPECT_EQ(first.status, broker::publish_status::ok);
    EXPECT_EQ(first.offset, 1u);
    EXPECT_EQ(again.status, broker::publish_status::duplicate);
    EXPECT_EQ(again.offset, 1u);
    EXPECT_EQ(again.epoch, first.epoch);
    EXPECT_EQ(other.status, broker::publish_status::ok);
    EXPECT_EQ(other.offset, 2u);
    EXPECT_EQ(elsewhere.status, broker::publish_status::ok);  // keys are per topic
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{1, 2}));
    // Duplicates queued back to back, before anything ran, are caught too.
    publish_async(0, "orders", "x", "key-3");
    publish_async(1, "orders", "x", "key-3");
    run();
    EXPECT_EQ(results[results.size() - 2].status, broker::publish_status::ok);
    EXPECT_EQ(results.back().status, broker::publish_status::duplicate);
    EXPECT_EQ(results.back().offset, 3u);
    EXPECT_EQ(c.offsets(), range(1, 3));
}

TEST_F(HubTest, IdempotencyOffWhenWindowIsZero) {
    cfg.publish.idempotency_window = 0ms;
    start();
    auto a = publish(0, "orders", "pay", "key-1");
    auto b2 = publish(0, "orders", "pay", "key-1");
    EXPECT_EQ(b2.status, broker::publish_status::ok);
    EXPECT_EQ(b2.offset, a.offset + 1);
}

TEST_F(HubTest, HistoryResults) {
    start();
    // Asking for a topic's history opens its stream: the epoch is fixed from then on, so a
    // client may start from `epoch:0`.
    auto none = history(1, "news", std::nullopt, 100);
    EXPECT_TRUE(none.found);
    EXPECT_EQ(none.top, 0u);
    EXPECT_TRUE(none.messages.empty());
    EXPECT_FALSE(none.epoch.empty());
    std::string epoch;
    for (int i = 0; i < 5; ++i) epoch = publish(0, "news", tagged("m", i + 1)).epoch;
    EXPECT_EQ(epoch, none.epoch);
    auto all = history(2, "news", std::nullopt, 100);
    EXPECT_TRUE(all.found);
    EXPECT_FALSE(all.epoch_mismatch);
    EXPECT_EQ(all.epoch, epoch);
    EXPECT_EQ(all.top, 5u);
    ASSERT_EQ(all.messages.size(), 5u);
    EXPECT_EQ(all.messages[0]->payload, "m1");
    EXPECT_EQ(all.messages[4]->offset, 5u);

    auto after2 = history(1, "news", hub::stream_pos{"", 2}, 100);
    ASSERT_EQ(after2.messages.size(), 3u);
    EXPECT_EQ(after2.messages[0]->offset, 3u);

    auto limited = history(0, "news", hub::stream_pos{epoch, 1}, 2);
    ASSERT_EQ(limited.messages.size(), 2u);
    EXPECT_EQ(limited.messages[0]->offset, 2u);
    EXPECT_EQ(limited.messages[1]->offset, 3u);

    auto mismatch = history(0, "news", hub::stream_pos{"zzz", 1}, 100);
    EXPECT_TRUE(mismatch.found);
    EXPECT_TRUE(mismatch.epoch_mismatch);
    EXPECT_TRUE(mismatch.messages.empty());
    EXPECT_EQ(mismatch.top, 5u);

    auto at_top = history(0, "news", hub::stream_pos{epoch, 5}, 100);
    EXPECT_TRUE(at_top.messages.empty());
}

TEST_F(HubTest, HistoryHoldsAtMostSizeAndNamespacesOverride) {
    cfg.history.namespaces.push_back({"chat:*", 2, 60s});
    cfg.history.namespaces.push_back({"*", 4, 60s});
    start();
    for (int i = 0; i < 6; ++i) {
        (void)publish(0, "chat:room", "x");
        (void)publish(0, "news", "y");
    }
    auto chat = history(1, "chat:room", std::nullopt, 100);
    auto news = history(1, "news", std::nullopt, 100);
    ASSERT_EQ(chat.messages.size(), 2u);
    EXPECT_EQ(chat.messages[0]->offset, 5u);
    ASSERT_EQ(news.messages.size(), 4u);  // first matching rule wins
    EXPECT_EQ(news.messages[0]->offset, 3u);
}

TEST_F(HubTest, IdleStreamExpiresOnTickAndGetsANewEpoch) {
    start();
    const std::string topic = "gone";
    const unsigned owner = h->owner_of(topic);
    auto first = publish(0, topic, "x");
    EXPECT_GT(b->history_bytes(), 0u);
    const auto later = clock::now() + cfg.history.ttl + cfg.publish.idempotency_window + 1s;
    b->on_tick(owner, later);
    EXPECT_EQ(b->history_bytes(), 0u);
    auto fresh = history(1, topic, std::nullopt, 10);
    EXPECT_NE(fresh.epoch, first.epoch);
    EXPECT_EQ(fresh.top, 0u);
    EXPECT_TRUE(fresh.messages.empty());
    auto second = publish(0, topic, "y");
    EXPECT_EQ(second.epoch, fresh.epoch);
    EXPECT_EQ(second.offset, 1u);
    // A resume from the lost stream is told so, and gets no replay.
    auto& c = add(2, topic, hub::stream_pos{first.epoch, 1});
    run();
    EXPECT_FALSE(c.answers.at(0).recovered);
    EXPECT_EQ(c.answers.at(0).reason, "epoch changed");
    EXPECT_TRUE(c.got.empty());
}

TEST_F(HubTest, StreamWithSubscribersKeepsItsEpochOnTick) {
    start();
    const std::string topic = "kept";
    const unsigned owner = h->owner_of(topic);
    auto& c = add((owner + 1) % k_workers, topic);  // subscribed from another worker
    run();
    auto first = publish(0, topic, "x");
    b->on_tick(owner, clock::now() + 24h);
    auto second = publish(0, topic, "y");
    EXPECT_EQ(second.epoch, first.epoch);
    EXPECT_EQ(second.offset, 2u);
    EXPECT_EQ(c.offsets(), (std::vector<std::uint64_t>{1, 2}));
    // A resume from before the expiry is told plainly that the gap is gone.
    auto& late = add(owner, topic, hub::stream_pos{first.epoch, 0});
    run();
    EXPECT_FALSE(late.answers.at(0).recovered);
    EXPECT_TRUE(late.got.empty());
}

TEST_F(HubTest, BinaryAndJsonPayloadsAreDeliveredWithTheirKind) {
    start();
    auto& c = add(1, "k");
    run();
    hub::publish_request req;
    req.topic = "k";
    req.kind = hub::payload_kind::binary;
    req.payload = std::string("\x00\x01\xFF", 3);
    req.event = "blob";
    b->publish(0, std::move(req), [](broker::publish_result) {});
    run();
    ASSERT_EQ(c.got.size(), 1u);
    EXPECT_EQ(c.got[0]->kind, hub::payload_kind::binary);
    EXPECT_EQ(c.got[0]->payload, std::string("\x00\x01\xFF", 3));
    EXPECT_EQ(c.got[0]->event, "blob");
}

// The admin page's busiest topics: one count per routed message on the topic's owner (not per
// subscriber), rates since the previous scan, top n of each list, bounded scans.
TEST_F(HubTest, BusiestTopicsByRateAndBySubscribers) {
    start();
    (void)add(0, "hot");
    (void)add(1, "hot");
    for (unsigned w = 0; w < k_workers; ++w) (void)add(w, "crowded");
    (void)add(2, "idle");
    run();
    const auto now = clock::now();
    hub::busiest_topics all;
    for (unsigned w = 0; w < k_workers; ++w) (void)h->at(w).busiest(10, 10, now);  // baseline
    for (int i = 0; i < 20; ++i) (void)publish(0, "hot", "x");
    (void)publish(1, "crowded", "x");
    for (unsigned w = 0; w < k_workers; ++w)
        all.merge(h->at(w).busiest(2, hub::k_busiest_scan, now + 1s), 2);
    ASSERT_EQ(all.by_rate.size(), 2u);
    EXPECT_EQ(all.by_rate[0].topic, "hot");
    EXPECT_DOUBLE_EQ(all.by_rate[0].rate, 20.0);  // 20 messages, 2 subscribers: counted once each
    EXPECT_EQ(all.by_rate[1].topic, "crowded");
    ASSERT_EQ(all.by_subscribers.size(), 2u);
    EXPECT_EQ(all.by_subscribers[0].topic, "crowded");
    EXPECT_EQ(all.by_subscribers[0].subscribers, 3u);
    EXPECT_EQ(all.topics, 3u);
    EXPECT_EQ(all.scanned, 3u);
    // A scan is bounded: it stops at the first bucket boundary at or past max_scan topics.
    for (unsigned w = 0; w < k_workers; ++w)
        EXPECT_EQ(h->at(w).busiest(2, 0, now + 2s).scanned, 0u);
}

// Reload: new quota rules reach every shard on its own thread; a topic's count stays with its
// pattern, so topics counted under the old rules still count (and are released) under the new.
TEST_F(HubTest, QuotasChangeLiveAndKeepTheirCounts) {
    start();
    h->set_quotas({{"ns:*", 1, 0}});
    auto& a = add(0, "ns:a");
    auto& b1 = add(1, "ns:b");
    run();
    EXPECT_EQ(a.answers.size(), 1u);
    EXPECT_TRUE(b1.answers.empty());  // refused: one active topic at most
    drop(b1);
    h->set_quotas({{"ns:*", 2, 0}}, true);
    run();
    auto& b2 = add(1, "ns:b");
    auto& c = add(2, "ns:c");
    run();
    EXPECT_EQ(b2.answers.size(), 1u);
    EXPECT_TRUE(c.answers.empty());  // ns:a, counted before the reload, still counts
    drop(c);
    drop(a);
    run();
    auto& d = add(2, "ns:d");
    run();
    EXPECT_EQ(d.answers.size(), 1u);  // ns:a's count was released
}

// The memory broker keeps each stream's route (shard::find_route) and looks it up again only
// when the owner's routes changed: a route erased and made again elsewhere (its topic's last
// subscriber left and a new one came, while other topics' routes came and went and rehashed the
// table) must be the one a publish uses, with history on and off.
TEST_F(HubTest, APublishUsesTheTopicsCurrentRouteAfterRoutesCameAndWent) {
    for (const std::size_t size : {std::size_t{0}, std::size_t{5}}) {
        SCOPED_TRACE(size);
        cfg.history.size = size;
        clients.clear();
        worker_of.clear();
        start();
        const std::string topic = "kept";
        const unsigned owner = h->owner_of(topic);
        EXPECT_EQ(publish(1, topic, "none yet").subscribers, 0u);  // the stream caches "no route"
        std::vector<client*> others;
        for (unsigned round = 0; round < 4; ++round) {
            auto& c = add(round % k_workers, topic);
            run();
            // Other topics' routes come (the table grows and rehashes) between the publishes.
            for (unsigned i = 0; i < 64; ++i)
                others.push_back(&add(i % k_workers, tagged("o", i + 64 * round)));
            run();
            auto r = publish((round + 1) % k_workers, topic, tagged("p", round));
            EXPECT_EQ(r.subscribers, 1u);
            ASSERT_EQ(c.got.size(), 1u);
            EXPECT_EQ(c.got[0]->payload, tagged("p", round));
            EXPECT_EQ(c.got[0]->offset, r.offset);
            drop(c);
            for (auto* o : others) drop(*o);
            others.clear();
            run();
            EXPECT_FALSE(h->at(owner).has_subscribers(topic));
            EXPECT_EQ(publish(2, topic, "nobody").subscribers, 0u);
            EXPECT_EQ(c.got.size(), 1u);
        }
        b.reset();
        h.reset();
    }
}
