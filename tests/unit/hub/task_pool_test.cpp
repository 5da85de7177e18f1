#include "herald/hub/task_pool.hpp"

#include "herald/hub/hub.hpp"

#include "hub_fixture.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

// The hub's hand-off blocks (task_pool.hpp): recycled per thread up to a bound, freed with the
// thread, and tasks never run freed with the hub.
using namespace herald;

namespace {

TEST(TaskPool, BlocksAreReusedPerThreadUpToTheBound) {
    if (!hub::task_pool::recycling()) GTEST_SKIP() << "no recycling under AddressSanitizer";
    // On a thread of its own, so that the count starts at 0 and its blocks are freed at its end.
    std::thread([] {
        using hub::task_pool;
        EXPECT_EQ(task_pool::cached(), 0u);
        std::vector<void*> blocks;
        // Sizes from 24 B to a whole block.
        for (std::size_t i = 0; i < task_pool::k_max_free + 10; ++i)
            blocks.push_back(task_pool::allocate(24 + i % (task_pool::k_block - 23)));
        for (std::size_t i = 0; i < blocks.size(); ++i)
            task_pool::deallocate(blocks[i], 24 + i % (task_pool::k_block - 23));
        EXPECT_EQ(task_pool::cached(), task_pool::k_max_free);  // the rest went to the heap
        // Any size up to a block takes the last one freed.
        void* last = blocks[task_pool::k_max_free - 1];
        void* p = task_pool::allocate(task_pool::k_block);
        EXPECT_EQ(p, last);
        EXPECT_EQ(task_pool::cached(), task_pool::k_max_free - 1);
        task_pool::deallocate(p, task_pool::k_block);
        // Larger than a block: the heap's, never cached.
        void* big = task_pool::allocate(task_pool::k_block + 1);
        task_pool::deallocate(big, task_pool::k_block + 1);
        EXPECT_EQ(task_pool::cached(), task_pool::k_max_free);
    }).join();
}

class TaskPoolHubTest : public test::hub_fixture {
protected:
    void SetUp() override { start(); }
};

// A batch sent but never run (the receiver stopped first) is freed with the receiver's
// io_context; one never sent with the hub. Under AddressSanitizer a task not freed is a leak.
TEST_F(TaskPoolHubTest, TasksNeverRunAreFreed) {
    auto held = std::make_shared<int>(1);
    std::weak_ptr<int> watch = held;
    asio::post(ctx[0], [&, held] {
        for (int i = 0; i < 100; ++i) h->post(1, [held] { (void)*held; });
    });
    ctx[0].restart();
    EXPECT_EQ(ctx[0].poll(), 2u);  // the turn and its end-of-turn pass: the batch is in ctx[1]
    asio::post(ctx[0], [&, held] {
        for (int i = 0; i < 100; ++i) h->post(2, [held] { (void)*held; });
    });
    ctx[0].restart();
    EXPECT_EQ(ctx[0].run_one(), 1u);  // this batch is never sent
    held.reset();
    EXPECT_FALSE(watch.expired());
    b.reset();
    h.reset();  // frees the unsent batch
    EXPECT_FALSE(watch.expired());
    ctx[1].~io_context();  // frees the sent one, never run
    new (&ctx[1]) asio::io_context();
    EXPECT_TRUE(watch.expired());
}

// Tasks run on another thread than the one that made them: their blocks join that thread's
// pool, and every task runs exactly once, in order.
TEST_F(TaskPoolHubTest, TasksMadeOnOneWorkerRunOnAnother) {
    std::vector<int> got;
    for (int turn = 0; turn < 3; ++turn) {
        asio::post(ctx[0], [&, turn] {
            for (int i = 0; i < 300; ++i)
                h->post(1, [&got, v = turn * 1000 + i] { got.push_back(v); });
        });
        run();
    }
    ASSERT_EQ(got.size(), 900u);
    for (int turn = 0; turn < 3; ++turn)
        for (int i = 0; i < 300; ++i) EXPECT_EQ(got[turn * 300 + i], turn * 1000 + i);
}

}  // namespace
