#include "net/sub_list.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace herald::net {
namespace {

struct owner_t {};
struct item {
    owner_t* owner = nullptr;
    int topic = 0;  // (an int: GCC 12 warns falsely on std::string assignments here)
};

std::vector<int> topics(const sub_list<item>& l) {
    std::vector<int> out;
    l.for_each([&](const item& s) { out.push_back(s.topic); });
    return out;
}

TEST(SubList, KeepsEmplaceOrderAndStableAddresses) {
    owner_t o;
    sub_list<item> l;
    EXPECT_TRUE(l.empty());
    item& a = l.emplace(&o);
    a.topic = 1;
    item& b = l.emplace(&o);
    b.topic = 2;
    item& c = l.emplace(&o);
    c.topic = 3;
    EXPECT_EQ(l.size(), 3U);
    EXPECT_EQ(topics(l), (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(l.find_if([](const item& s) { return s.topic == 2; }), &b);
    EXPECT_EQ(l.find_if([](const item& s) { return s.topic == 9; }), nullptr);
    l.erase(b);
    EXPECT_EQ(topics(l), (std::vector<int>{1, 3}));
    EXPECT_EQ(l.find_if([](const item& s) { return s.topic == 3; }), &c);  // not moved
}

TEST(SubList, ErasedInlineSlotIsReusedOnlyWhenAloneSoOrderHolds) {
    owner_t o;
    sub_list<item> l;
    l.emplace(&o).topic = 1;
    l.emplace(&o).topic = 2;
    l.erase(*l.find_if([](const item& s) { return s.topic == 1; }));
    EXPECT_EQ(l.size(), 1U);
    l.emplace(&o).topic = 3;  // after b, not in a's slot before it
    EXPECT_EQ(topics(l), (std::vector<int>{2, 3}));
    l.erase(*l.find_if([](const item& s) { return s.topic == 2; }));
    l.erase(*l.find_if([](const item& s) { return s.topic == 3; }));
    EXPECT_TRUE(l.empty());
    item& d = l.emplace(&o);
    EXPECT_EQ(d.topic, 0);  // made anew: nothing of 1 is left
    d.topic = 4;
    EXPECT_EQ(topics(l), (std::vector<int>{4}));
    l.clear();
    EXPECT_TRUE(l.empty());
    EXPECT_EQ(topics(l), std::vector<int>{});
}

}  // namespace
}  // namespace herald::net
