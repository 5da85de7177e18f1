#include "net/fifo_ring.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace herald::net {
namespace {

TEST(FifoRing, KeepsOrderAcrossWrapAndGrowth) {
    fifo_ring<int> r;
    EXPECT_TRUE(r.empty());
    int next_in = 0;
    int next_out = 0;
    // Push and pop in uneven steps so that the head wraps around and the ring grows while
    // wrapped.
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < round % 7 + 1; ++i) r.push_back(next_in++);
        for (int i = 0; i < round % 5 && !r.empty(); ++i) {
            ASSERT_EQ(r.front(), next_out++);
            r.pop_front();
        }
        ASSERT_EQ(r.size(), static_cast<std::size_t>(next_in - next_out));
        for (std::size_t i = 0; i < r.size(); ++i) ASSERT_EQ(r[i], next_out + static_cast<int>(i));
        if (!r.empty()) {
            ASSERT_EQ(r.back(), next_in - 1);
        }
    }
    EXPECT_EQ(r.capacity() & (r.capacity() - 1), 0U);  // a power of two
    r.clear();
    EXPECT_TRUE(r.empty());
}

TEST(FifoRing, ReleasesWhatItHeldOnPopAndClear) {
    auto held = std::make_shared<int>(1);
    fifo_ring<std::shared_ptr<int>> r;
    for (int i = 0; i < 10; ++i) r.push_back(held);
    EXPECT_EQ(held.use_count(), 11);
    r.pop_front();
    EXPECT_EQ(held.use_count(), 10);  // released at once, not when the place is reused
    r.clear();
    EXPECT_EQ(held.use_count(), 1);
}

TEST(FifoRing, KeepsItsRoomForASteadyPipeline) {
    fifo_ring<std::string> r;
    for (int i = 0; i < 32; ++i) r.push_back(std::to_string(i));
    const auto room = r.capacity();
    for (int i = 0; i < 1000; ++i) {
        r.pop_front();
        r.push_back(std::to_string(i));
    }
    EXPECT_EQ(r.capacity(), room);
    EXPECT_EQ(r.size(), 32U);
    EXPECT_EQ(r.back(), "999");
}

}  // namespace
}  // namespace herald::net
