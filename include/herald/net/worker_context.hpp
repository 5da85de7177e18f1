#pragma once
// What every session on one worker shares: its io_context, hub shard, counters, a scratch read
// buffer, the list of connections (for the timer sweep and the drain) and the flush pass that
// sends, once per turn of the loop, everything queued during that turn (corking); a busy worker
// corks a little longer, bounded (see k_max_cork_delay).
#include "herald/common/net.hpp"

#include <boost/asio/buffer.hpp>
#include "herald/config/config.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/reject_log.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {
class broker;
}
namespace herald::hub {
class shard;
struct message;
struct subscription;
struct subscribe_result;
}  // namespace herald::hub
namespace herald::auth {
class context;
}
namespace herald::net::tls {
class context;
}

namespace herald::net {

// Buffers per gathered write: Asio passes at most 64 to one sendmsg.
inline constexpr std::size_t k_max_gather = 64;
// Chunks up to this size are packed into one contiguous run per write (see pack()).
inline constexpr std::size_t k_pack_max = 512;

// Adaptive corking: after a flush pass over at least k_cork_min_connections connections, the
// next pass waits until as long as that pass took has passed since it ended, at most
// k_max_cork_delay. Smaller passes cost less than the timer would save.
inline constexpr std::size_t k_cork_min_connections = 32;
inline constexpr clock::duration k_max_cork_delay = std::chrono::milliseconds(10);
// A pass over more connections than that may cork longer, k_cork_per_connection each, up to
// k_max_long_cork_delay: with thousands of connections a pass takes longer than 10 ms, and a
// burst (a window of messages that the readers' progress lets in one by one) would otherwise be
// cut into several writes per connection. Passes over up to 1,000 connections keep 10 ms.
inline constexpr clock::duration k_cork_per_connection = std::chrono::microseconds(10);
inline constexpr clock::duration k_max_long_cork_delay = std::chrono::milliseconds(50);
// The longest cork after a pass over `writers` connections.
[[nodiscard]] constexpr clock::duration cork_cap(std::size_t writers) noexcept {
    return std::clamp(k_cork_per_connection * static_cast<clock::rep>(writers), k_max_cork_delay,
                      k_max_long_cork_delay);
}

// What keeps a queued chunk's bytes alive: a shared owner, or a reference counted by one worker
// alone (worker_context::hold()). Every chunk of a connection is made, copied and released on
// its worker's thread, so the local count needs no atomic operation: an atomic one is a full
// barrier, which waits for the delivery's earlier stores (cache misses on the subscription and
// the connection) before it can go on.
class chunk_hold {
public:
    chunk_hold() = default;
    chunk_hold(std::shared_ptr<const void> owner) noexcept : shared_(std::move(owner)) {}
    chunk_hold(const chunk_hold& o) noexcept : shared_(o.shared_), local_(o.local_) {
        if (local_) ++local_->refs;
    }
    chunk_hold(chunk_hold&& o) noexcept
        : shared_(std::move(o.shared_)), local_(std::exchange(o.local_, nullptr)) {}
    chunk_hold& operator=(chunk_hold o) noexcept {
        std::swap(shared_, o.shared_);
        std::swap(local_, o.local_);
        return *this;
    }
    // Inline up to the last release (a moved-from hold, e.g. a chunk's temporary once in its
    // queue, then costs nothing): a fan-out makes and drops one hold per delivery.
    ~chunk_hold() { drop_local(); }
    [[nodiscard]] bool is_local() const noexcept { return local_ != nullptr; }
    // Makes this empty hold another on `o`'s worker-local count (o.is_local(): nothing shared
    // to copy).
    void share_local(const chunk_hold& o) noexcept {
        local_ = o.local_;
        ++local_->refs;
    }
    void reset() noexcept {
        shared_.reset();
        drop_local();
    }
    // A new worker-local count on `owner`, held once by the result.
    static chunk_hold local(std::shared_ptr<const void> owner) {
        chunk_hold h;
        h.local_ = new local_ref{std::move(owner), 1};
        return h;
    }

private:
    struct local_ref {
        std::shared_ptr<const void> owner;
        std::uint32_t refs;
    };
    void drop_local() noexcept {
        if (local_ && --local_->refs == 0) free_local(local_);
        local_ = nullptr;
    }
    static void free_local(local_ref* r) noexcept;
    std::shared_ptr<const void> shared_;
    local_ref* local_ = nullptr;
};

class connection;
class http_api;
class hook_caller;
class webhook_emitter;

// Process-wide state shared by all workers; read-mostly.
struct process_state {
    std::atomic<bool> ready{false};
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> connections{0};  // TCP connections open, all workers
};

class worker_context {
    // This worker's copy of the settings, which `cfg` names. Declared first: `cfg` binds to it.
    config::settings live_;

public:
    worker_context(unsigned id, asio::io_context& ioc, const config::settings& cfg,
                   hub::shard& shard, broker::broker& broker, metrics::worker_counters& counters,
                   process_state& state, http_api& api, auth::context* auth = nullptr,
                   std::shared_ptr<const tls::context> tls = {});
    worker_context(const worker_context&) = delete;
    worker_context& operator=(const worker_context&) = delete;

    const unsigned id;
    asio::io_context& ioc;
    // The settings in force on this worker. Read and replaced only on this worker's thread
    // (set_settings), so a handler reads one generation from start to end and the message path
    // takes no lock. Nothing may keep a reference into it past its handler, except what
    // connection::on_settings_changed() re-resolves (a subscription's delivery rule).
    const config::settings& cfg;
    // A reload: `fresh` (an immutable snapshot posted to every worker) becomes `cfg`, every
    // connection re-resolves its rules in it, and the replaced settings are freed. Runs on this
    // worker's thread; costs one pass over the worker's subscriptions, the message path nothing.
    void set_settings(const config::settings& fresh);
    hub::shard& shard;
    broker::broker& broker;
    metrics::worker_counters& counters;
    // The delivery-latency bucket last observed on this worker: where the next observation's
    // search starts (a flush pass writes messages of close ages; histogram::observe_near).
    std::size_t latency_bucket = 0;
    process_state& state;
    http_api& api;
    // Process-wide; null in tests that need no security. Changed only by set_auth() on this
    // worker's thread (a reload), so a handler reads one generation from start to end.
    auth::context* auth;
    void set_auth(auth::context* fresh) noexcept { auth = fresh; }
    // Warnings for clients refused by a limit, rate-limited per address (this worker's share).
    reject_log rejects{cfg.log.rejection_interval};
    // This worker's backend hooks and webhook emitter (hooks.hpp, webhooks.hpp); null when none
    // is configured. Set before the worker runs, owned by the server.
    hook_caller* hooks = nullptr;
    webhook_emitter* webhooks = nullptr;

    // The TLS certificate new connections get (null: plain TCP).
    [[nodiscard]] const std::shared_ptr<const tls::context>& tls() const noexcept { return tls_; }
    // SIGHUP: connections accepted from now on get `fresh`; runs on this worker's thread.
    void reload_tls(std::shared_ptr<const tls::context> fresh) noexcept;

    // Metrics of an answered subscribe: its duration and, for a resume, its outcome; a
    // connection's first resume counts as a reconnection (`*reconnect_counted` then true; null
    // for long-polls, whose every request carries a cursor).
    void record_subscribe(const hub::subscription& s, const hub::subscribe_result& r,
                          metrics::transport t, bool* reconnect_counted) noexcept;

    // Closes every connection of `user` (a token's sub); returns how many.
    std::size_t revoke(std::string_view user);

    // Read buffer shared by every session on this worker: a session reads into it only inside a
    // completion handler and copies out what it must keep, so idle sessions hold no buffer.
    std::string& scratch() noexcept { return scratch_; }
    // Gather list for one write (at most k_max_gather buffers), shared the same way.
    std::vector<asio::const_buffer>& gather() noexcept { return gather_; }
    // Small chunks are copied into this buffer so that a write hands the kernel one run of bytes
    // instead of many tiny iovecs (each costs a user-copy setup and a check in sendmsg); on TLS
    // it stages the plaintext of one record.
    std::string& pack() noexcept { return pack_; }

    // What a chunk of `m` holds. A message that reaches more than one subscriber on this worker
    // is held through a count of this worker's own (chunk_hold::local, made on its second
    // delivery and kept until another message comes), not the message's atomic count, which
    // every worker delivering it would otherwise change once per recipient.
    [[nodiscard]] chunk_hold hold(const std::shared_ptr<const hub::message>& m) {
        chunk_hold h;
        hold_into(h, m);
        return h;
    }
    // hold() into the empty `h` (a chunk made in place: no temporary to release). The fan-out's
    // case (the message of the previous delivery, held here already) is inline.
    void hold_into(chunk_hold& h, const std::shared_ptr<const hub::message>& m) {
        if (m.get() == local_of_ && local_.is_local())
            h.share_local(local_);
        else
            h = hold_first(m);
    }

    // Called when a connection queued bytes; it is flushed at the end of this loop turn, or, on
    // a busy worker, when the cork delay has passed (see k_max_cork_delay).
    void want_flush(std::shared_ptr<connection> c);

    void attach(connection& c) noexcept;
    void detach(connection& c) noexcept;
    [[nodiscard]] std::size_t connection_count() const noexcept {
        return count_.load(std::memory_order_relaxed);
    }

    // Sweep: timers of every connection (ping, heartbeat, timeouts) from one per-worker timer.
    void tick(time_point now);
    // Drain: every connection is told the server is going away; with shutdown.drain_spread,
    // streams (WebSocket, SSE) are told at times spread evenly over that window (see tick()).
    void drain();

private:
    void flush_pass();
    chunk_hold hold_first(const std::shared_ptr<const hub::message>& m);

    std::shared_ptr<const tls::context> tls_;
    std::string scratch_;
    std::vector<asio::const_buffer> gather_;
    std::string pack_;
    // hold(): the message delivered last and, from its second delivery, this worker's count on
    // it. The count keeps the message alive, so its address is not reused while `local_` is set.
    const hub::message* local_of_ = nullptr;
    chunk_hold local_;
    std::vector<std::shared_ptr<connection>> pending_flush_;
    bool flush_posted_ = false;  // a flush pass is posted or its cork timer armed
    // The last flush pass: when it ended, how long it took, how many connections it flushed.
    time_point last_pass_end_{};
    clock::duration last_pass_length_{};
    std::size_t last_pass_writers_ = 0;
    connection* head_ = nullptr;  // intrusive list of live connections
    // Streams waiting for their turn to be drained, latest first (popped from the back).
    struct drain_turn {
        time_point at;
        milliseconds reconnect_after;  // the hint the stream passes on (uniform over the spread)
        std::weak_ptr<connection> c;
    };
    std::vector<drain_turn> drain_due_;
    void drain_due(time_point now);
    std::atomic<std::size_t> count_{0};
};

}  // namespace herald::net
