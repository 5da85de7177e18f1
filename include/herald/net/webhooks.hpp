#pragma once
// Webhooks (docs/integration.md): events out to the application, one emitter per worker.
//
// emit() is cheap and never waits: it checks the webhooks' events and patterns, serialises the
// event once with a stable id ("<instance>-<worker>-<sequence>") and appends it to each matching
// webhook's queue, bounded at max_queue / workers events per worker (past that the event is
// dropped, counted in herald_webhook_events_dropped_total and logged). Each webhook sends its
// queue in batches (batch_size events, or what batch_interval collected), one batch in flight,
// signed with HMAC-SHA256 over "<timestamp>.<body>". A batch leaves the queue only once the
// receiver answered 2xx; otherwise it is sent again, with the same events and ids, after an
// exponential backoff with jitter capped at max_backoff: at least once while the process lives.
//
// Events of other modules (presence: join, leave, occupied, vacated) come in through emit()
// on the worker where they happen.
#include "herald/config/config.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/disconnect.hpp"
#include "herald/net/http_client.hpp"

#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace herald::net {

// Per worker, written by its thread only.
struct alignas(64) webhook_counters {
    metrics::counter queued;     // events accepted into a queue (one per webhook)
    metrics::counter delivered;  // events the receiver acknowledged
    metrics::counter dropped;    // events refused by a full queue
    metrics::counter failures;   // batch attempts without a 2xx answer (each is retried)
    metrics::counter pending;    // gauge: events waiting in this worker's queues
};

[[nodiscard]] std::vector<metrics::registry::gauge> webhook_metrics(
    const std::vector<std::unique_ptr<webhook_counters>>& workers);

// HMAC-SHA256 of `message` under `key`, as lowercase hex.
[[nodiscard]] std::string hmac_sha256_hex(std::string_view key, std::string_view message);

class webhook_emitter {
public:
    // Throws config::config_error naming the key of a bad url.
    webhook_emitter(asio::io_context& ioc, unsigned worker, unsigned workers,
                    const config::settings& cfg, webhook_counters& counters, std::string instance);
    ~webhook_emitter();
    webhook_emitter(const webhook_emitter&) = delete;
    webhook_emitter& operator=(const webhook_emitter&) = delete;

    // Whether any webhook takes events of `type` (skip building an event nobody wants).
    [[nodiscard]] bool wants(std::string_view type) const noexcept;

    // Queues one event. `topic` ("" for none) is matched against each webhook's patterns;
    // `fields` are the event's own members as JSON ("\"reason\":\"drain\",..."), "" for none.
    void emit(std::string_view type, std::string_view topic, std::string_view fields);

    // The two events this module knows of.
    void disconnect(std::string_view transport, std::string_view user, std::string_view address,
                    disconnect_reason reason, const std::vector<std::string_view>& topics);
    void publish(std::string_view topic, std::string_view epoch, std::uint64_t offset,
                 std::string_view transport, std::string_view user);

    struct sink;  // one webhook's queue, batch and timer (webhooks.cpp)

private:
    unsigned worker_;
    std::string instance_;
    std::uint64_t next_id_ = 0;
    http_client client_;
    std::vector<std::shared_ptr<sink>> sinks_;
};

}  // namespace herald::net
