#include "herald/common/short_text.hpp"

#include <gtest/gtest.h>

#include <string>

namespace herald {
namespace {

TEST(ShortText, EmptyByDefault) {
    short_text e;
    EXPECT_TRUE(e.empty());
    EXPECT_EQ(e.view(), "");
    static_assert(sizeof(short_text) == 16);
}

TEST(ShortText, KeepsShortAndLongTextWhole) {
    short_text e;
    e = std::string("k3x9a0zq");  // herald's epochs: 8 characters, inline
    EXPECT_EQ(e.view(), "k3x9a0zq");
    e = std::string(15, 'a');  // the longest inline text
    EXPECT_EQ(e.view(), std::string(15, 'a'));
    const std::string long_epoch = "an-epoch-from-another-producer-0123456789";
    e = long_epoch;  // on the heap
    EXPECT_EQ(e.view(), long_epoch);
    short_text copy(e);
    e = std::string_view("short");  // the heap block goes
    EXPECT_EQ(e.view(), "short");
    EXPECT_EQ(copy.view(), long_epoch);
    copy = e;
    EXPECT_EQ(copy.view(), "short");
}

TEST(ShortText, AssignsFromItsOwnText) {
    short_text e(std::string_view("a-long-epoch-text-on-the-heap"));
    e = e.view().substr(2);  // points into the block being replaced
    EXPECT_EQ(e.view(), "long-epoch-text-on-the-heap");
    e = e.view().substr(0, 4);  // from the heap to inline
    EXPECT_EQ(e.view(), "long");
    const short_text& same = e;
    e = same;  // copy-assigned from itself
    EXPECT_EQ(e.view(), "long");
}

}  // namespace
}  // namespace herald
