#pragma once
// Counters kept per worker (each written by its own thread only, read by /metrics) and rendered
// in the Prometheus text format. A counter update is a relaxed load and store: no lock prefix,
// no contention, no data race.
#include <array>
#include <atomic>
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
    counter bytes_out;
    counter write_calls;     // socket writes: fewer than frames when corking works
    counter corked_flushes;  // flush passes a busy worker delayed (adaptive corking)
    counter pong_timeouts;
    counter resumes_recovered;
    counter resumes_failed;
    counter subscriptions;   // gauge
    counter tls_handshakes;  // completed
    counter tls_errors;      // failed handshakes, bad records, peers gone mid-handshake

    void inc(reject r) noexcept { rejected[static_cast<std::size_t>(r)].add(); }
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

private:
    std::vector<std::unique_ptr<worker_counters>> workers_;
};

}  // namespace herald::metrics
