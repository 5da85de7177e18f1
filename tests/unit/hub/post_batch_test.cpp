#include "herald/hub/hub.hpp"

#include "hub_fixture.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

// hub::post between workers: one batch per sender, receiver and loop turn (hub.hpp).
using namespace herald;

namespace {

class PostBatchTest : public test::hub_fixture {
protected:
    void SetUp() override { start(); }
};

TEST_F(PostBatchTest, HandOffsOfOneTurnReachTheReceiverAsOneHandlerInOrder) {
    std::vector<int> got;
    asio::post(ctx[0], [&] {
        for (int i = 0; i < 10; ++i) h->post(1, [&got, i] { got.push_back(i); });
        h->post(2, [&got] { got.push_back(100); });
    });
    ctx[0].restart();
    (void)ctx[0].poll();  // the turn, then its end-of-turn pass that sends the batches
    EXPECT_TRUE(got.empty());
    ctx[1].restart();
    EXPECT_EQ(ctx[1].poll(), 1U);  // ten hand-offs, one handler: one wake-up
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    ctx[2].restart();
    EXPECT_EQ(ctx[2].poll(), 1U);
    EXPECT_EQ(got.back(), 100);
}

TEST_F(PostBatchTest, AHandOffPostedWhileABatchRunsJoinsTheNextBatch) {
    std::vector<int> got;
    asio::post(ctx[0], [&] {
        h->post(1, [&] {
            got.push_back(1);
            h->post(0, [&] { got.push_back(2); });  // 1 -> 0, batched on worker 1
        });
    });
    run();
    EXPECT_EQ(got, (std::vector<int>{1, 2}));
}

TEST_F(PostBatchTest, PostsFromOutsideTheWorkersArePlainAndToTheOwnWorkerOneHandler) {
    int ran = 0;
    h->post(1, [&] { ++ran; });  // the test thread runs no worker
    ctx[1].restart();
    EXPECT_EQ(ctx[1].poll(), 1U);
    EXPECT_EQ(ran, 1);
    asio::post(ctx[1], [&] { h->post(1, [&] { ++ran; }); });
    ctx[1].restart();
    EXPECT_EQ(ctx[1].poll(), 2U);  // the handler and its own post, no end-of-turn pass
    EXPECT_EQ(ran, 2);
}

TEST_F(PostBatchTest, HandOffsToTheOwnWorkerRunInOrderInOneHandler) {
    std::vector<int> got;
    asio::post(ctx[1], [&] {
        for (int i = 0; i < 10; ++i) h->post(1, [&got, i] { got.push_back(i); });
        asio::post(ctx[1], [&got] { got.push_back(100); });  // not a hand-off: queued after
        h->post(1, [&got] { got.push_back(10); });
    });
    ctx[1].restart();
    EXPECT_EQ(ctx[1].poll(), 3U);  // the handler, the batch of eleven, the plain post
    EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100}));
}

TEST_F(PostBatchTest, AHandOffToTheOwnWorkerMadeWhileItsBatchRunsWaitsForTheNextHandler) {
    // A task that hands itself off again and again must not keep the loop from other work.
    int rounds = 0;
    bool other_ran = false;
    std::function<void()> again = [&] {
        if (++rounds < 5) h->post(1, again);
    };
    asio::post(ctx[1], [&] {
        h->post(1, again);
        asio::post(ctx[1], [&] { other_ran = true; });
    });
    ctx[1].restart();
    EXPECT_EQ(ctx[1].run_one(), 1U);  // the handler
    EXPECT_EQ(ctx[1].run_one(), 1U);  // the batch: round 1, which posts round 2
    EXPECT_EQ(rounds, 1);
    EXPECT_EQ(ctx[1].run_one(), 1U);  // the plain post, queued before round 2's batch
    EXPECT_TRUE(other_ran);
    EXPECT_EQ(rounds, 1);
    ctx[1].restart();
    (void)ctx[1].poll();
    EXPECT_EQ(rounds, 5);
}

TEST_F(PostBatchTest, UnsentHandOffsAreFreedWithTheHub) {
    auto held = std::make_shared<int>(7);
    std::weak_ptr<int> watch = held;
    asio::post(ctx[0], [&, held = std::move(held)] { h->post(1, [held] { (void)*held; }); });
    ctx[0].restart();
    EXPECT_EQ(ctx[0].run_one(), 1U);  // the turn ran; its end-of-turn pass is still queued
    EXPECT_FALSE(watch.expired());
    b.reset();
    h.reset();
    EXPECT_TRUE(watch.expired());
}

}  // namespace
