#pragma once
// One hiredis async connection driven by a worker's io_context: hiredis's five adapter hooks
// (addRead, delRead, addWrite, delWrite, cleanup) are implemented over an Asio stream
// descriptor's async_wait, so no extra thread runs and no call blocks the worker. The link
// reconnects by itself (exponential backoff with jitter) and tells its owner when it comes up
// and goes down. Everything here runs on the io_context's thread only.
#include "herald/common/net.hpp"

#include <cstdint>
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
};

// "host:port" (IPv6 as "[::1]:6379"); nullopt when malformed.
[[nodiscard]] std::optional<redis_endpoint> parse_endpoint(std::string_view text);

class redis_link {
public:
    struct options {
        redis_endpoint endpoint;
        milliseconds connect_timeout{2'000};
        milliseconds min_backoff{100};
        milliseconds max_backoff{5'000};
        std::string client_name;  // CLIENT SETNAME on every connect (visible in CLIENT LIST)
    };
    // `reply` is null when the command failed without an answer (link lost, never sent).
    using reply_fn = std::function<void(redisReply* reply)>;

    redis_link(asio::io_context& ioc, options opt, std::uint64_t seed);
    ~redis_link();
    redis_link(const redis_link&) = delete;
    redis_link& operator=(const redis_link&) = delete;

    // Connects, and keeps reconnecting until stop().
    void start();
    void stop();

    [[nodiscard]] bool up() const noexcept { return state_ == state::up; }
    [[nodiscard]] std::uint64_t reconnects() const noexcept { return reconnects_; }
    [[nodiscard]] const redis_endpoint& endpoint() const noexcept { return opt_.endpoint; }

    // Queues a command (pipelined behind those already sent). False when the link is down; `fn`
    // is then not called. Otherwise `fn` is called exactly once, on the io_context's thread; with
    // a null reply it is called from a posted handler, never from inside hiredis.
    bool command(const std::vector<std::string_view>& argv, reply_fn fn);

    // Pub/sub: every reply to SUBSCRIBE/UNSUBSCRIBE and every published message goes to
    // `on_push`. Use a link either for commands or for pub/sub, not both.
    bool subscribe(const std::vector<std::string>& channels);
    bool unsubscribe(const std::vector<std::string>& channels);
    std::function<void(redisReply* reply)> on_push;

    // Called on the io_context's thread when the link is established (before any queued work),
    // and when it is lost (not after stop()).
    std::function<void()> on_up;
    std::function<void()> on_down;

private:
    enum class state { idle, connecting, up, waiting };

    static void on_connect_cb(const redisAsyncContext* ac, int status);
    static void on_disconnect_cb(const redisAsyncContext* ac, int status);
    static void on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata);
    static void on_push_cb(redisAsyncContext* ac, void* reply, void* privdata);

    void do_connect();
    void on_connected(bool ok);
    void on_lost();
    void schedule_reconnect();
    bool channels_command(const char* verb, const std::vector<std::string>& channels);

    asio::io_context& ioc_;
    options opt_;
    asio::steady_timer timer_;  // connect timeout, then reconnect delay
    redisAsyncContext* ac_ = nullptr;
    state state_ = state::idle;
    bool stopped_ = false;
    milliseconds backoff_;
    std::uint64_t reconnects_ = 0;
    std::uint64_t attempt_ = 0;
    bool was_up_ = false;
    std::mt19937_64 rng_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herald::broker
