#include "herald/wire/trace.hpp"

#include <gtest/gtest.h>

namespace herald::wire {
namespace {

constexpr const char* k_valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(Traceparent, ParsesTheTraceIdOfAValidHeader) {
    auto t = parse_traceparent(k_valid);
    ASSERT_TRUE(t);
    EXPECT_EQ(to_hex(*t), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(t->hi, 0x4bf92f3577b34da6ULL);
    EXPECT_EQ(t->lo, 0xa3ce929d0e0e4736ULL);
    EXPECT_EQ(trace_from_hex(to_hex(*t)), t);
}

TEST(Traceparent, AFutureVersionMayAppendFields) {
    EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"));
    EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
}

TEST(Traceparent, RejectsMalformedHeaders) {
    for (const char* bad : {
             "",
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     // no flags
             "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
             "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
             "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
             "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
             "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // dash misplaced
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // bad flags
             "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
         })
        EXPECT_FALSE(parse_traceparent(bad)) << bad;
}

TEST(Traceparent, SamplingIsAFunctionOfTheTraceId) {
    trace_id a{1, 6}, b{1, 7};
    set_trace_sample(0);
    EXPECT_FALSE(trace_sampled(a));
    set_trace_sample(1);
    EXPECT_TRUE(trace_sampled(a));
    EXPECT_TRUE(trace_sampled(b));
    set_trace_sample(3);
    EXPECT_TRUE(trace_sampled(a));
    EXPECT_FALSE(trace_sampled(b));
    set_trace_sample(0);
}

}  // namespace
}  // namespace herald::wire
