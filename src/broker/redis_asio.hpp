#pragma once
// One hiredis async connection driven by a worker's io_context: hiredis's five adapter hooks
// (addRead, delRead, addWrite, delWrite, cleanup) are implemented over an Asio stream
// descriptor's async_wait, so no extra thread runs and no call blocks the worker. The link
// reconnects by itself (exponential backoff with jitter) and tells its owner when it comes up
// and goes down. Everything here runs on the io_context's thread only.
//
// Liveness. hiredis 0.14 has no timer hook, so the link runs its own, one Asio timer per link
// (never one per command); Redis answers a connection in order, so the commands waiting form a
// queue by send time and only its head's deadlines matter:
//   - a command unanswered command_timeout after it was sent is answered then with a null reply
//     (no_reply::lost); the answer Redis may still send for it is dropped when it arrives;
//   - a link on which Redis said nothing at all for command_timeout while commands wait is
//     declared down: torn down (every other waiting command answered with a null reply),
//     on_down runs and it reconnects. A Redis that is slow but answering keeps its links.
// An idle link sends a PING every ping_interval, a pub/sub link included. A link is "up" only
// once Redis answered a PING on it, not when TCP connected (the kernel completes the handshake
// of a frozen server too).
#include "herald/common/net.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

struct redisAsyncContext;
struct redisReply;

namespace herald::broker {

struct redis_endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    [[nodiscard]] std::string name() const { return host + ":" + std::to_string(port); }
    [[nodiscard]] bool known() const noexcept { return port != 0; }
    bool operator==(const redis_endpoint&) const = default;
};

// "host:port" (IPv6 as "[::1]:6379"); nullopt when malformed.
[[nodiscard]] std::optional<redis_endpoint> parse_endpoint(std::string_view text);

// The next reconnect delay: uniformly jittered in [backoff/2, backoff] so instances that lost the
// same server do not come back in lockstep; `backoff` then doubles up to `max`.
[[nodiscard]] milliseconds next_backoff(milliseconds& backoff, milliseconds max,
                                        std::mt19937_64& rng);

// Why a command got no reply (the reply pointer is null).
enum class no_reply : std::uint8_t {
    not_sent,  // never handed to the kernel (or refused): Redis cannot have run it
    lost,      // sent, then the link went down or timed out first: Redis may still run it
};

class redis_link {
public:
    struct options {
        redis_endpoint endpoint;
        milliseconds connect_timeout{2'000};  // TCP connect plus the first PING's answer
        milliseconds command_timeout{2'000};  // the oldest unanswered command, then down
        milliseconds ping_interval{1'000};    // a PING after this long without any reply
        milliseconds min_backoff{100};
        milliseconds max_backoff{5'000};
        std::string client_name;  // CLIENT SETNAME on every connect (visible in CLIENT LIST)
        // Pub/sub links only: a pattern PSUBSCRIBEd on connect and never left, so the link stays
        // in subscribed mode and hiredis routes the answer of `PING <pattern>` to this link
        // (see redis_asio.cpp). Empty for a command link.
        std::string heartbeat_pattern;
        // Sent as AUTH [username] password before anything else when the password is set.
        std::string username;
        std::string password;
        // The handshake also asks ROLE and INFO replication: a server that is not a master is
        // refused (dropped, retried, on_not_master called) and the master's replication id is
        // kept (replid()).
        bool require_master = false;
    };
    // `reply` is null when the command got no answer; `why` says whether it may have run.
    using reply_fn = std::function<void(redisReply* reply, no_reply why)>;

    redis_link(asio::io_context& ioc, options opt, std::uint64_t seed);
    ~redis_link();
    redis_link(const redis_link&) = delete;
    redis_link& operator=(const redis_link&) = delete;

    // Connects, and keeps reconnecting until stop().
    void start();
    void stop();
    // A link waiting out its reconnect delay tries now (another link saw the server come back).
    void retry_now();
    // Points the link at another server (a Sentinel switch): a connected link is dropped and
    // reconnects there at once. A link started with an unknown endpoint (port 0) waits for this.
    void set_endpoint(const redis_endpoint& ep);
    // Drops the connection from outside or inside a reply callback, and reconnects.
    void reconnect(const char* why) { drop_later(why); }

    [[nodiscard]] bool up() const noexcept { return state_ == state::up; }
    [[nodiscard]] std::uint64_t reconnects() const noexcept { return reconnects_; }
    // The link went down last because Redis missed a deadline (not a closed connection).
    [[nodiscard]] bool timed_out() const noexcept { return timed_out_; }
    [[nodiscard]] const redis_endpoint& endpoint() const noexcept { return opt_.endpoint; }
    // require_master only: the master's replication id (INFO's master_replid) on this connection.
    [[nodiscard]] const std::string& replid() const noexcept { return replid_; }

    // Queues a command (pipelined behind those already sent). False when the link is not up;
    // `fn` is then not called. Otherwise `fn` is called exactly once, on the io_context's
    // thread; with a null reply it is called from a posted handler, never from inside hiredis.
    bool command(const std::vector<std::string_view>& argv, reply_fn fn);

    // Pub/sub: every reply to SUBSCRIBE/UNSUBSCRIBE and every published message goes to
    // `on_push`. Use a link either for commands or for pub/sub, not both.
    bool subscribe(const std::vector<std::string>& channels);
    bool unsubscribe(const std::vector<std::string>& channels);
    std::function<void(redisReply* reply)> on_push;

    // Called on the io_context's thread when the link is established (before any queued work),
    // and when it is lost or timed out (not after stop()).
    std::function<void()> on_up;
    std::function<void()> on_down;
    // require_master only: the server answered the handshake as a replica (or not as a master).
    std::function<void()> on_not_master;

private:
    enum class state { idle, connecting, handshaking, up, waiting };
    struct pending;  // one command's callback, and where its bytes end in the output stream

    static void on_connect_cb(const redisAsyncContext* ac, int status);
    static void on_disconnect_cb(const redisAsyncContext* ac, int status);
    static void on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata);
    static void on_push_cb(redisAsyncContext* ac, void* reply, void* privdata);
    static void on_heartbeat_cb(redisAsyncContext* ac, void* reply, void* privdata);

    void do_connect();
    void on_tcp_connected();
    void on_handshake(redisReply* reply);
    void on_role_checked(redisReply* info);
    void on_connected();
    void on_lost();
    void drop(const char* why);
    void drop_later(const char* why);  // from inside hiredis's callbacks
    void schedule_reconnect();
    bool send(const std::vector<std::string_view>& argv, reply_fn fn);
    bool channels_command(const char* verb, const std::vector<std::string>& channels);
    void send_ping();
    void note_sent(std::size_t bytes, pending* p);
    void note_answered();
    void arm_watchdog(time_point at);
    void on_watchdog();

    asio::io_context& ioc_;
    options opt_;
    asio::steady_timer timer_;     // connect (and handshake) timeout, then reconnect delay
    asio::steady_timer watchdog_;  // while up: the oldest deadline, or the next PING
    time_point watchdog_at_{};
    bool watchdog_armed_ = false;
    redisAsyncContext* ac_ = nullptr;
    state state_ = state::idle;
    bool stopped_ = false;
    bool dropping_ = false;  // inside drop(): hiredis's disconnect callback must not act
    milliseconds backoff_;
    std::uint64_t reconnects_ = 0;
    bool timed_out_ = false;
    std::uint64_t attempt_ = 0;
    bool was_up_ = false;
    bool quiet_ = false;             // a failed attempt was logged at warn; the next ones at debug
    bool handshake_failed_ = false;  // this attempt is being dropped: ignore its other answers
    bool role_master_ = false;       // the handshake's ROLE said master
    std::string replid_;
    // The commands awaiting an answer on this connection, oldest first (on a pub/sub link: the
    // heartbeat PINGs, which Redis answers after everything sent before; their `p` is null).
    struct waiting {
        time_point sent;
        pending* p;  // owned by hiredis (the callback's privdata) until answered or freed
    };
    std::deque<waiting> sent_;
    std::size_t expired_ = 0;  // the first expired_ of sent_ were answered at their deadline
    time_point last_reply_{};
    std::uint64_t appended_ = 0;  // bytes of commands given to hiredis on this connection
    std::mt19937_64 rng_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herald::broker
