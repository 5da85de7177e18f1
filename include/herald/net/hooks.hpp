#pragma once
// Backend hooks (docs/integration.md): before herald admits a stream (connect), a subscription
// (subscribe) or a publish (publish), it POSTs JSON to the application's backend and acts on the
// answer. One hook_caller per worker, on that worker's loop; the calls go through its
// http_client (keep-alive pool, bounded concurrency, deadline, circuit breaker), so a slow
// backend costs each waiting client at most the hook's timeout and never blocks the loop.
//
// The verdict is data: auth decides nothing about hooks, the sessions and the publish API act on
// a hook_verdict. A backend that cannot be asked (timeout, refused, 5xx, unreadable answer,
// breaker open) yields the hook's on_error verdict.
#include "herald/config/config.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/http_client.hpp"
#include "herald/wire/envelope.hpp"

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::net {

struct http_request;

enum class hook_kind : std::uint8_t { connect, subscribe, publish, count_ };
[[nodiscard]] const char* to_string(hook_kind k) noexcept;

struct hook_verdict {
    bool allow = false;
    bool from_error = false;  // the backend gave no usable answer: the hook's on_error decided
    std::string message;      // why, when denied
    std::string user;         // connect: the user id; "" keeps the token's
    std::string info;         // connect, subscribe: `info` as compact JSON; "" when none
    std::vector<std::string> topics;  // connect: more topics to subscribe (validated)
    // publish: replacement data, when the backend gave one.
    std::optional<std::pair<wire::payload_kind, std::string>> data;
};

// The outcome of each call, for metrics.
enum class hook_outcome : std::uint8_t { allowed, denied, error, count_ };

// Per worker, written by its thread only (metrics::counter is a relaxed load and store).
struct alignas(64) hook_counters {
    using per_kind = std::array<metrics::counter, static_cast<std::size_t>(hook_kind::count_)>;
    std::array<per_kind, static_cast<std::size_t>(hook_outcome::count_)> calls;
    per_kind latency_us;  // sum of the calls' durations, microseconds
    // Durations per kind: calls up to k_hook_buckets_ms[i] (and over the last: index 7), not
    // cumulative; hook_metrics() sums them into Prometheus buckets.
    std::array<std::array<metrics::counter, 8>, static_cast<std::size_t>(hook_kind::count_)>
        buckets;
    metrics::counter open_breakers;  // gauge: this worker's targets with an open breaker
};
inline constexpr std::array<int, 7> k_hook_buckets_ms = {5, 10, 25, 50, 100, 250, 1000};

// The client half of a hook request: who is asking, how.
struct hook_client_info {
    std::string_view address;    // client address (X-Forwarded-For behind a trusted proxy)
    std::string_view transport;  // ws, sse, poll, http
    std::string_view user;       // the user id known so far ("" for anonymous)
    std::string_view info;       // JSON, "" when none
};

// The hooks' series for /metrics, summed over the workers' counters.
[[nodiscard]] std::vector<metrics::registry::gauge> hook_metrics(
    const std::vector<std::unique_ptr<hook_counters>>& workers);

class hook_caller {
public:
    // Throws config::config_error naming the key of a bad url.
    hook_caller(asio::io_context& ioc, const config::settings& cfg, hook_counters& counters);

    [[nodiscard]] bool enabled(hook_kind k) const noexcept { return targets_[idx(k)].has_value(); }
    // Whether a stream waits for hooks before it starts (connect, or subscribe for its topics).
    [[nodiscard]] bool gates_streams() const noexcept {
        return enabled(hook_kind::connect) || enabled(hook_kind::subscribe);
    }

    // POSTs `body` (from one of the *_body builders) and answers the verdict on this loop.
    // `forwarded` are the request headers named by the hook's headers_to_forward.
    void call(hook_kind k, std::string body,
              std::vector<std::pair<std::string, std::string>> forwarded,
              std::function<void(hook_verdict)> done);

    // The headers of `req` that hook `k` forwards, in the order configured.
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> forwarded(
        hook_kind k, const http_request& req) const;

    // The JSON bodies (docs/integration.md).
    [[nodiscard]] static std::string connect_body(
        const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
        const std::vector<std::string>& topics);
    [[nodiscard]] static std::string subscribe_body(
        const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
        std::string_view topic);
    [[nodiscard]] static std::string publish_body(
        const hook_client_info& c, const std::vector<std::pair<std::string, std::string>>& headers,
        std::string_view topic, wire::payload_kind kind, std::string_view payload);

    // Reads a backend answer (exposed for tests).
    [[nodiscard]] static hook_verdict read_answer(hook_kind k, const http_answer& a,
                                                  const config::settings::hook& spec);

    [[nodiscard]] std::size_t open_breakers() const noexcept { return client_.open_breakers(); }

private:
    static std::size_t idx(hook_kind k) noexcept { return static_cast<std::size_t>(k); }
    [[nodiscard]] const config::settings::hook& spec(hook_kind k) const noexcept;

    const config::settings& cfg_;
    hook_counters& counters_;
    http_client client_;
    std::array<std::optional<http_target>, static_cast<std::size_t>(hook_kind::count_)> targets_;
};

}  // namespace herald::net
