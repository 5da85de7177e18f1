#include "herald/metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

using namespace herald::metrics;

namespace {
bool has_line(const std::string& text, const std::string& line) {
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        if (l == line) return true;
    return false;
}
}  // namespace

TEST(Metrics, Names) {
    EXPECT_STREQ(to_string(transport::http), "http");
    EXPECT_STREQ(to_string(transport::ws), "ws");
    EXPECT_STREQ(to_string(transport::sse), "sse");
    EXPECT_STREQ(to_string(transport::poll), "poll");
    EXPECT_STREQ(to_string(reject::bad_topic), "bad_topic");
    EXPECT_STREQ(to_string(reject::ws_bad_op), "ws_bad_op");
    std::set<std::string> seen;
    for (std::size_t r = 0; r < static_cast<std::size_t>(reject::count_); ++r) {
        EXPECT_TRUE(seen.insert(to_string(static_cast<reject>(r))).second) << r;
        EXPECT_EQ(reject_named(to_string(static_cast<reject>(r))), static_cast<reject>(r));
    }
    EXPECT_EQ(reject_named("tls_required"), reject::tls_required);
    EXPECT_FALSE(reject_named("no_such_code").has_value());
}

TEST(Metrics, RenderHasEveryMetricAndLabel) {
    registry reg(2);
    const auto text = reg.render({});
    for (auto name :
         {"herald_connections", "herald_connections_total", "herald_slow_consumers_total",
          "herald_rejected_requests_total", "herald_publish_requests_total",
          "herald_messages_published_total", "herald_duplicate_publishes_total",
          "herald_frames_delivered_total", "herald_bytes_out_total", "herald_socket_writes_total",
          "herald_pong_timeouts_total", "herald_resumes_recovered_total",
          "herald_resumes_failed_total", "herald_subscriptions"}) {
        EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
        EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
    }
    EXPECT_TRUE(has_line(text, "# TYPE herald_connections gauge"));
    EXPECT_TRUE(has_line(text, "# TYPE herald_messages_published_total counter"));
    for (auto t : {"http", "ws", "sse", "poll"}) {
        EXPECT_TRUE(has_line(text, std::string("herald_connections{transport=\"") + t + "\"} 0"));
        EXPECT_TRUE(
            has_line(text, std::string("herald_connections_total{transport=\"") + t + "\"} 0"));
        EXPECT_TRUE(
            has_line(text, std::string("herald_slow_consumers_total{transport=\"") + t + "\"} 0"));
    }
    for (std::size_t r = 0; r < static_cast<std::size_t>(reject::count_); ++r)
        EXPECT_TRUE(has_line(text, std::string("herald_rejected_requests_total{reason=\"") +
                                       to_string(static_cast<reject>(r)) + "\"} 0"));
    // Every non-comment line is "name[{labels}] value".
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        if (l.rfind("# ", 0) == 0) continue;
        EXPECT_EQ(l.rfind("herald_", 0), 0u) << l;
        EXPECT_NE(l.find(' '), std::string::npos) << l;
    }
}

TEST(Metrics, CountersSumAcrossWorkers) {
    registry reg(3);
    reg.at(0).conn(transport::ws).add(2);
    reg.at(2).conn(transport::ws).add(3);
    reg.at(1).conn(transport::sse).add(1);
    reg.at(1).conn(transport::sse).add(-1);
    reg.at(0).messages_published.add(10);
    reg.at(1).messages_published.add(20);
    reg.at(2).messages_published.add(12);
    reg.at(0).inc(reject::bad_topic);
    reg.at(2).inc(reject::bad_topic);
    reg.at(1).inc(reject::payload_too_large);
    reg.at(2).slow_consumers[static_cast<std::size_t>(transport::sse)].add();
    reg.at(0).bytes_out.add(1'000'000'000'000);
    EXPECT_EQ(reg.open_connections(transport::ws), 5);
    EXPECT_EQ(reg.open_connections(transport::sse), 0);
    const auto text = reg.render({});
    EXPECT_TRUE(has_line(text, "herald_connections{transport=\"ws\"} 5"));
    EXPECT_TRUE(has_line(text, "herald_connections{transport=\"sse\"} 0"));
    EXPECT_TRUE(has_line(text, "herald_messages_published_total 42"));
    EXPECT_TRUE(has_line(text, "herald_rejected_requests_total{reason=\"bad_topic\"} 2"));
    EXPECT_TRUE(has_line(text, "herald_rejected_requests_total{reason=\"payload_too_large\"} 1"));
    EXPECT_TRUE(has_line(text, "herald_slow_consumers_total{transport=\"sse\"} 1"));
    EXPECT_TRUE(has_line(text, "herald_bytes_out_total 1000000000000"));
}

TEST(Metrics, ExtraGauges) {
    registry reg(1);
    const auto text =
        reg.render({{"herald_ready", "1 when ready.", 1.0}, {"herald_draining", "x", 0.0}});
    EXPECT_TRUE(has_line(text, "# HELP herald_ready 1 when ready."));
    EXPECT_TRUE(has_line(text, "# TYPE herald_ready gauge"));
    EXPECT_TRUE(has_line(text, "herald_ready 1"));
    EXPECT_TRUE(has_line(text, "herald_draining 0"));
}

// herald_history_bytes and herald_open_sockets are passed as gauges; a byte count must come out
// exactly, not rounded to six significant digits ("1.23457e+07").
TEST(Metrics, ExtraGaugeKeepsEveryDigit) {
    registry reg(1);
    const auto text =
        reg.render({{"herald_history_bytes", "Bytes held by message history.", 12345678.0}});
    EXPECT_TRUE(has_line(text, "herald_history_bytes 12345678")) << text;
}

// A value on a bound falls in that bound's bucket (Prometheus `le` is inclusive); buckets render
// cumulative, summed over workers, with _sum in seconds and _count equal to +Inf.
TEST(Metrics, HistogramBucketsAreInclusiveCumulativeAndSummedOverWorkers) {
    using namespace std::chrono;
    registry reg(2);
    auto& h0 = reg.at(0).publish_duration;
    h0.observe(microseconds(100));  // le 0.0001
    h0.observe(microseconds(101));  // le 0.00025
    h0.observe(seconds(11));        // +Inf
    h0.observe(nanoseconds(-5));    // a clock step back counts as 0
    reg.at(1).publish_duration.observe(milliseconds(1));
    EXPECT_EQ(h0.bucket(0), 2);
    EXPECT_EQ(h0.bucket(1), 1);
    EXPECT_EQ(h0.bucket(histogram::k_bounds_ns.size()), 1);
    const auto text = reg.render({});
    EXPECT_TRUE(has_line(text, "# TYPE herald_publish_duration_seconds histogram")) << text;
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_bucket{le=\"0.0001\"} 2"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_bucket{le=\"0.00025\"} 3"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_bucket{le=\"0.001\"} 4"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_bucket{le=\"10\"} 4"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_bucket{le=\"+Inf\"} 5"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_count 5"));
    EXPECT_TRUE(has_line(text, "herald_publish_duration_seconds_sum 11.001201")) << text;
}

// observe_near() lands every value in the bucket observe() picks, whatever the hint: above,
// below, on the value's own bucket, at either end (a fan-out's flush passes the last bucket on).
TEST(Metrics, HistogramObserveNearMatchesObserveFromAnyHint) {
    using namespace std::chrono;
    constexpr std::size_t n = histogram::k_bounds_ns.size() + 1;
    const std::array<nanoseconds, 8> values{nanoseconds(-5), microseconds(100), microseconds(101),
                                            milliseconds(3), milliseconds(10),  milliseconds(11),
                                            seconds(10),     seconds(11)};
    for (const auto v : values) {
        histogram want;
        want.observe(v);
        std::size_t expect = n;
        for (std::size_t b = 0; b < n; ++b)
            if (want.bucket(b) == 1) expect = b;
        ASSERT_LT(expect, n);
        for (std::size_t hint = 0; hint < n; ++hint) {
            histogram got;
            EXPECT_EQ(got.observe_near(v, hint), expect) << v.count() << " ns, hint " << hint;
            EXPECT_EQ(got.bucket(expect), 1);
            EXPECT_EQ(got.sum_ns(), want.sum_ns());
        }
    }
}

TEST(Metrics, LabelledHistogramsAndResumeOutcomes) {
    using namespace std::chrono;
    registry reg(2);
    const auto t0 = steady_clock::now();
    reg.at(1).delivered(transport::sse, t0, t0 + milliseconds(3));
    reg.at(1).loop_lag.observe(milliseconds(30));
    reg.at(0).resumed(resume_outcome::too_old);
    const auto text = reg.render({});
    EXPECT_TRUE(
        has_line(text, "herald_delivery_latency_seconds_bucket{transport=\"sse\",le=\"0.005\"} 1"));
    EXPECT_TRUE(
        has_line(text, "herald_delivery_latency_seconds_bucket{transport=\"ws\",le=\"+Inf\"} 0"));
    EXPECT_TRUE(has_line(text, "herald_delivery_latency_seconds_count{transport=\"sse\"} 1"));
    EXPECT_TRUE(has_line(text, "herald_event_loop_lag_seconds_count{worker=\"1\"} 1"));
    EXPECT_TRUE(has_line(text, "herald_event_loop_lag_seconds_count{worker=\"0\"} 0"));
    EXPECT_TRUE(has_line(text, "herald_resumes_total{outcome=\"too_old\"} 1"));
    EXPECT_TRUE(has_line(text, "herald_queued_bytes{worker=\"0\"} 0"));
}
