#include "herald/common/unique_function.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>
#include <utility>

namespace herald {
namespace {

using small_fn = unique_function<int(int), 32>;

TEST(UniqueFunction, EmptyByDefault) {
    small_fn f;
    EXPECT_FALSE(f);
    small_fn g = nullptr;
    EXPECT_FALSE(g);
}

TEST(UniqueFunction, CallsAnInlineTarget) {
    auto calls = std::make_shared<int>(0);
    auto target = [calls](int x) {
        ++*calls;
        return x * 2;
    };
    static_assert(small_fn::stored_inline<decltype(target)>);
    small_fn f = std::move(target);
    ASSERT_TRUE(f);
    EXPECT_EQ(f(21), 42);
    EXPECT_EQ(*calls, 1);
}

TEST(UniqueFunction, CallsAHeapTargetLargerThanItsRoom) {
    std::array<char, 64> big{};
    big[63] = 5;
    auto calls = std::make_shared<int>(0);
    auto target = [big, calls](int x) {
        ++*calls;
        return x + big[63];
    };
    static_assert(!small_fn::stored_inline<decltype(target)>);
    small_fn f = std::move(target);
    EXPECT_EQ(f(1), 6);
    EXPECT_EQ(*calls, 1);
}

TEST(UniqueFunction, TakesAMoveOnlyTarget) {
    auto p = std::make_unique<int>(7);
    small_fn f = [p = std::move(p)](int x) { return x + *p; };
    EXPECT_EQ(f(1), 8);
}

// A completion dropped uncalled (a broker's tasks at shutdown, a lost Redis link) releases what it
// captured, inline or on the heap.
TEST(UniqueFunction, DestroyedUncalledReleasesItsState) {
    auto state = std::make_shared<int>(0);
    {
        small_fn inl = [state](int) { return 0; };
        EXPECT_EQ(state.use_count(), 2);
    }
    EXPECT_EQ(state.use_count(), 1);
    {
        std::array<char, 64> big{};
        small_fn heap = [state, big](int) { return static_cast<int>(big[0]); };
        EXPECT_EQ(state.use_count(), 2);
    }
    EXPECT_EQ(state.use_count(), 1);
}

TEST(UniqueFunction, MoveLeavesOneOwner) {
    auto state = std::make_shared<int>(0);
    for (bool heap : {false, true}) {
        small_fn a;
        if (heap) {
            std::array<char, 64> big{};
            a = [state, big](int x) { return x + big[0]; };
        } else {
            a = [state](int x) { return x; };
        }
        small_fn b = std::move(a);
        EXPECT_FALSE(a);  // NOLINT: the moved-from state is specified: empty
        ASSERT_TRUE(b);
        EXPECT_EQ(state.use_count(), 2);
        small_fn c;
        c = std::move(b);
        EXPECT_FALSE(b);  // NOLINT
        EXPECT_EQ(c(3), 3);
        EXPECT_EQ(state.use_count(), 2);
        // Assigning over a held target releases the old one.
        c = [](int x) { return -x; };
        EXPECT_EQ(state.use_count(), 1);
        EXPECT_EQ(c(3), -3);
        c = nullptr;
        EXPECT_FALSE(c);
    }
}

TEST(UniqueFunction, PassesArgumentsByMove) {
    unique_function<std::size_t(std::string), 16> f = [](std::string s) {
        std::string mine = std::move(s);
        return mine.size();
    };
    EXPECT_EQ(f(std::string(100, 'x')), 100U);
}

}  // namespace
}  // namespace herald
