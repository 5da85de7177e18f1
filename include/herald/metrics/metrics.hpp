#pragma once
// Counters kept per worker (each written by its own thread only, read by /metrics) and rendered
// in the Prometheus text format. A counter update is a relaxed load and store: no lock prefix,
// no contention, no data race.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

namespace herald::metrics {

enum class transport : std::uint8_t { http, ws, sse, poll, count_ };
enum class reject : std::uint8_t {
    bad_topic,
    bad_json,
    bad_request,
    bad_event,
    bad_encoding,
    bad_last_event_id,
    bad_cursor,
    bad_idempotency_key,
    too_many_topics,
    not_found,
    method_not_allowed,
    payload_too_large,
    unsupported_media_type,
    headers_too_large,
    header_timeout,
    over_capacity,
    draining,
    unavailable,  // the broker (Redis) cannot be reached
    unknown,      // a publish reached Redis but its answer did not come back (504)
    forbidden,
    unauthorized,
    rate_limited,
    quota_exceeded,
    disconnected,  // a long-poll ended by POST /admin/disconnect
    ws_protocol_error,
    ws_invalid_utf8,
    ws_message_too_big,
    ws_bad_op,     // every malformed op, also counted under the code its error frame carries
    tls_required,  // plain HTTP on a TLS port
    bad_config,    // POST /admin/reload: the config file has errors (nothing changed)
    // Codes only WebSocket error frames carry.
    unknown_op,
    not_subscribed,
    bad_since,
    binary_not_supported,
    count_
};

[[nodiscard]] const char* to_string(transport t) noexcept;
[[nodiscard]] const char* to_string(reject r) noexcept;
// The reason an error code is counted under (the inverse of to_string); nullopt for none.
[[nodiscard]] std::optional<reject> reject_named(std::string_view code) noexcept;

class counter {
public:
    void add(std::int64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    [[nodiscard]] std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> v_{0};
};

template <class E>
using by = std::array<counter, static_cast<std::size_t>(E::count_)>;

// A Prometheus histogram of durations with fixed bounds (100 us .. 10 s), written by one thread
// only (its worker, like a counter) and read by /metrics: observe() is a short bucket search and
// two relaxed load/store pairs, no lock and no read-modify-write. A value written from several
// threads needs one histogram per thread (see histogram_totals, which adds them up).
class histogram {
public:
    // Upper bounds (`le`), in nanoseconds and as printed (seconds).
    static constexpr std::array<std::int64_t, 16> k_bounds_ns{
        100'000,       250'000,       500'000,       1'000'000,     2'500'000,   5'000'000,
        10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000, 500'000'000,
        1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
    static constexpr std::array<const char*, 16> k_bounds_text{
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
        "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10"};

    void observe(std::chrono::nanoseconds d) noexcept { observe_near(d, 0); }
    // observe(), the search starting at bucket `hint` (<= the bucket count) instead of the
    // first; returns `d`'s bucket. For runs of close values (the chunks of one socket write, a
    // fan-out's deliveries): a step or none each instead of a scan past every lower bound.
    std::size_t observe_near(std::chrono::nanoseconds d, std::size_t hint) noexcept {
        const std::int64_t ns = d.count() < 0 ? 0 : d.count();
        std::size_t b = hint;
        while (b > 0 && ns <= k_bounds_ns[b - 1]) --b;
        while (b < k_bounds_ns.size() && ns > k_bounds_ns[b]) ++b;
        buckets_[b].add();
        sum_ns_.add(ns);
        return b;
    }
    // Per bucket (not cumulative; the last is above every bound) and the sum.
    [[nodiscard]] std::int64_t bucket(std::size_t b) const noexcept { return buckets_[b].get(); }
    [[nodiscard]] std::int64_t sum_ns() const noexcept { return sum_ns_.get(); }

private:
    std::array<counter, k_bounds_ns.size() + 1> buckets_;
    counter sum_ns_;
};

// Several histograms added up (one per worker), for rendering.
struct histogram_totals {
    std::array<std::int64_t, histogram::k_bounds_ns.size() + 1> buckets{};
    std::int64_t sum_ns = 0;
    void add(const histogram& h) noexcept {
        for (std::size_t b = 0; b < buckets.size(); ++b) buckets[b] += h.bucket(b);
        sum_ns += h.sum_ns();
    }
};

// How a resume (a subscribe with a position) ended: the gap replayed, the stream moved on (epoch
// changed, bad offset), or the position is older than history holds.
enum class resume_outcome : std::uint8_t { recovered, reset, too_old, count_ };
[[nodiscard]] const char* to_string(resume_outcome o) noexcept;

struct alignas(64) worker_counters {
    by<transport> connections;        // gauge: open now
    by<transport> connections_total;  // accepted or upgraded since start
    by<transport> slow_consumers;     // disconnected because their queue overflowed
    by<reject> rejected;
    counter publish_requests;
    counter messages_published;
    counter duplicates;
    counter frames_delivered;    // messages handed to a client connection
    counter messages_dropped;    // slow_consumer drop_oldest/conflate: held back, then dropped
    counter messages_conflated;  // slow_consumer conflate: replaced by a newer one of its key
    counter messages_held;       // delivery.namespaces: held back (a backlog or an interval)
    counter interval_flushes;    // delivery_interval: a subscription's interval ended, batch sent
    counter bytes_out;
    counter write_calls;     // socket writes: fewer than frames when corking works
    counter corked_flushes;  // flush passes a busy worker delayed (adaptive corking)
    counter pong_timeouts;
    counter resumes_recovered;
    counter resumes_failed;
    counter subscriptions;   // gauge
    counter tls_handshakes;  // completed
    counter tls_errors;      // failed handshakes, bad records, peers gone mid-handshake

    // Operations (issue 17). Latency from a message's publish to the socket write that sent
    // its last byte (ws, sse; poll: to the answer that carries it), live messages only.
    std::array<histogram, static_cast<std::size_t>(transport::count_)> delivery_latency;
    histogram publish_duration;    // HTTP publish: request read to answer
    histogram subscribe_duration;  // subscribe asked to answered by the topic's owner
    histogram loop_lag;            // how late the 250 ms sweep timer ran
    counter queued_bytes;          // gauge: output waiting in send queues, at the last sweep
    by<resume_outcome> resumes;
    by<transport> reconnections;  // connections that resumed with a position

    void inc(reject r) noexcept { rejected[static_cast<std::size_t>(r)].add(); }
    void delivered(transport t, std::chrono::steady_clock::time_point published,
                   std::chrono::steady_clock::time_point now) noexcept {
        delivery_latency[static_cast<std::size_t>(t)].observe(now - published);
    }
    void resumed(resume_outcome o) noexcept { resumes[static_cast<std::size_t>(o)].add(); }
    counter& conn(transport t) noexcept { return connections[static_cast<std::size_t>(t)]; }
};

class registry {
public:
    explicit registry(unsigned workers);
    [[nodiscard]] worker_counters& at(unsigned w) noexcept { return *workers_[w]; }
    [[nodiscard]] std::int64_t open_connections(transport t) const noexcept;

    // Extra gauges the app adds (readiness, history bytes) as (name, help, value).
    struct gauge {
        std::string name;
        std::string help;
        double value;
        std::string type = "gauge";  // or "counter", "histogram"
        // A histogram: the series under its one TYPE line as (suffix with labels, value), e.g.
        // {"_bucket{le=\"0.005\"}", 12}, {"_sum", 0.3}, {"_count", 40}; `value` is then unused.
        std::vector<std::pair<std::string, double>> samples{};
    };
    [[nodiscard]] std::string render(const std::vector<gauge>& extra) const;

    // The series of one histogram as gauge samples ("_bucket{<labels>,le=..}", "_sum",
    // "_count"); `labels` is empty or `name="value",...`. For modules with histograms of their
    // own (a broker), rendered through `extra` with type "histogram".
    static void append_histogram(std::vector<std::pair<std::string, double>>& samples,
                                 std::string_view labels, const histogram_totals& h);

private:
    std::vector<std::unique_ptr<worker_counters>> workers_;
};

}  // namespace herald::metrics
