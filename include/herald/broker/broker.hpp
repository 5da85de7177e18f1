#pragma once
// The broker orders and stores messages; the hub only routes them. Nothing outside broker/ knows
// which implementation runs (memory today; redis shares this interface).
#include "herald/common/unique_function.hpp"
#include "herald/config/config.hpp"
#include "herald/hub/hub.hpp"
#include "herald/hub/message.hpp"
#include "herald/metrics/metrics.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {

// unavailable: not applied (the broker could not be asked), retry. unknown: the request reached
// Redis but its answer did not come back in time; it may still be applied: retry with the
// same idempotency key, which makes the retry count once.
enum class publish_status { ok, duplicate, unavailable, unknown };

struct publish_result {
    publish_status status = publish_status::ok;
    std::string topic;
    std::string epoch;
    std::uint64_t offset = 0;
    std::size_t subscribers = 0;
};

// The first line of a traced message's way: this instance took the publish and the broker
// answered (hub/shard.cpp logs the owner's and each worker's lines).
inline void log_published(const wire::trace_id& t, unsigned worker, const publish_result& res) {
    if (t.empty()) return;
    static constexpr const char* names[] = {"ok", "duplicate", "unavailable", "unknown"};
    wire::log_trace(t, "publish: worker {} topic '{}' offset {}:{} {}", worker, res.topic,
                    res.epoch, res.offset, names[static_cast<int>(res.status)]);
}

struct history_result {
    bool found = false;  // false: the topic has no stream (never published, or expired)
    bool epoch_mismatch = false;
    bool unavailable = false;  // the broker could not be asked (Redis down): not an empty stream
    std::string epoch;
    std::uint64_t top = 0;
    std::vector<hub::message_ptr> messages;
};

// A publish's completion: move-only, with room inline for what an HTTP answer captures (the
// responder, start time, trace id), so a publish allocates nothing for it (issue 15). A broker
// that drops one uncalled (shutdown, a lost Redis link) releases what it captured.
using publish_handler = unique_function<void(publish_result), 112>;
using subscribe_handler = hub::stream_broker::resolve_handler;
using history_handler = std::function<void(history_result)>;

struct broadcast_result {
    bool delivered = true;      // false: the broker is unavailable and no other instance was told
    std::size_t instances = 1;  // instances that received it, this one included
};
using broadcast_handler = std::function<void(broadcast_result)>;
// Runs on a worker of this process when another instance broadcast a disconnect.
using disconnect_handler = std::function<void(unsigned worker, std::string user)>;

class broker : public hub::stream_broker {
public:
    virtual ~broker() = default;

    // Called on worker `from`; `done` runs on `from`. Both are taken (moved from): by reference,
    // so that a publish's request and completion are moved once into the broker's own state.
    virtual void publish(unsigned from, hub::publish_request&& req, publish_handler&& done) = 0;

    // resolve() and on_topic_idle(): what the hub asks of a broker (hub::stream_broker).

    // Called on `from`; `done` runs on `from`. Messages with offset > since, at most `limit`.
    virtual void history(unsigned from, const std::string& topic,
                         std::optional<hub::stream_pos> since, std::size_t limit,
                         history_handler done) = 0;

    // Once a second on every worker: expiry of history and idempotency keys.
    virtual void on_tick(unsigned worker, time_point now) = 0;

    // Revocation: tells every other instance to close `user`'s connections (the caller closes
    // this instance's). Called on `from`; `done` runs on `from`. Each receiving instance hands
    // the user to the handler set below, once; the sender is not handed its own broadcast.
    virtual void broadcast_disconnect(unsigned from, std::string user, broadcast_handler done) = 0;
    // Set before the workers start.
    void set_disconnect_handler(disconnect_handler h) { on_disconnect_ = std::move(h); }

    // Broker-specific series for /metrics (links, reconnects, gaps...).
    [[nodiscard]] virtual std::vector<metrics::registry::gauge> metrics() const { return {}; }

    [[nodiscard]] virtual bool ready() const noexcept = 0;
    // Why ready() is false, for /readyz ("redis shard 127.0.0.1:6379 is down"); any thread.
    [[nodiscard]] virtual std::string not_ready_reason() const { return {}; }
    [[nodiscard]] virtual std::size_t history_bytes() const noexcept = 0;

protected:
    disconnect_handler on_disconnect_;
};

// The broker the configuration names (`broker: memory` or `redis`), for these workers' contexts.
// Throws std::invalid_argument on a redis.shards address it cannot use.
[[nodiscard]] std::unique_ptr<broker> make_broker(hub::hub& h, const config::settings& cfg,
                                                  const std::vector<asio::io_context*>& contexts);

struct history_policy {
    std::size_t size = 100;
    std::chrono::milliseconds ttl{300'000};
};

// A topic's history policy: the first history.namespaces rule whose pattern matches it, else
// history.size and history.ttl. Every broker asks this, so a topic keeps the same history
// whichever broker runs.
[[nodiscard]] history_policy policy_for(const config::settings& cfg, std::string_view topic);

// Reload: the history rules (history.size, .ttl, .namespaces) of `live` replace those of the
// settings policy_for (above) is given, in every broker of this process; null: back to
// `cfg`'s. Called from one thread at a time; policy_for reads the pointer with one atomic load (no
// lock). The caller keeps a replaced `live` alive until every worker has run a handler posted after
// the call. A stream takes its topic's new policy the next time it is opened (a publish, a
// subscribe, a history read): its ring is trimmed to the new size at its next publish, its messages
// expire by the new ttl from the next sweep.
void set_live_history(const config::settings* live) noexcept;

}  // namespace herald::broker
