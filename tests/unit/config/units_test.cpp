#include "herald/config/config.hpp"

#include <gtest/gtest.h>

using namespace herald::config;
using namespace std::chrono_literals;

TEST(Duration, Units) {
    EXPECT_EQ(parse_duration("250ms"), 250ms);
    EXPECT_EQ(parse_duration("15s"), 15s);
    EXPECT_EQ(parse_duration("5m"), 5min);
    EXPECT_EQ(parse_duration("1h"), 1h);
    EXPECT_EQ(parse_duration("30d"), 720h);
    EXPECT_EQ(parse_duration("10"), 10s);  // a plain number is seconds
    EXPECT_EQ(parse_duration("0"), 0ms);
    EXPECT_EQ(parse_duration("0ms"), 0ms);
    EXPECT_EQ(parse_duration(" 15s "), 15s);
}

TEST(Duration, Invalid) {
    for (auto bad : {"", "ms", "s", "-1s", "+1s", "1.5s", "10D", "1H", "1sec", "15s15", "abc",
                     "1 0s", "99999999999999999999999s",
                     // overflows the int64 nanoseconds a steady_clock duration is held in
                     "18446744073709551615ms", "9223372036855h"}) {
        EXPECT_FALSE(parse_duration(bad).has_value()) << "'" << bad << "'";
    }
}

TEST(Size, Units) {
    EXPECT_EQ(parse_size("512"), 512u);
    EXPECT_EQ(parse_size("512B"), 512u);
    EXPECT_EQ(parse_size("64KiB"), 65536u);
    EXPECT_EQ(parse_size("1MiB"), 1048576u);
    EXPECT_EQ(parse_size("2GiB"), 2147483648u);
    EXPECT_EQ(parse_size("1KB"), 1000u);
    EXPECT_EQ(parse_size("3MB"), 3'000'000u);
    EXPECT_EQ(parse_size("1GB"), 1'000'000'000u);
    EXPECT_EQ(parse_size("0"), 0u);
}

TEST(Size, Invalid) {
    for (auto bad : {"", "KiB", "-1", "1.5MiB", "1kib", "1kb", "1TiB", "1 MiB x", "64 K",
                     "18446744073709551615KiB", "99999999999999999999999"}) {
        EXPECT_FALSE(parse_size(bad).has_value()) << "'" << bad << "'";
    }
}
