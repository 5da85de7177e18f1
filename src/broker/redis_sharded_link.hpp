#pragma once
// A Redis 7 sharded pub/sub link (SSUBSCRIBE / SUNSUBSCRIBE, `smessage` pushes), for Redis
// Cluster. hiredis 0.14's async layer knows only SUBSCRIBE and PSUBSCRIBE and drops the sharded
// replies, so this link owns its TCP socket on the worker's io_context, writes RESP itself and
// parses replies with hiredis's public reader (redisReaderFeed / redisReaderGetReply).
//
// Same contract as a redis_link used for pub/sub (redis_asio.hpp): it is "up" only once Redis
// answered a PING; a PING goes out after ping_interval without any reply; a PING or command left
// unanswered for command_timeout while Redis says nothing takes the link down; it reconnects by
// itself with exponential back-off and jitter. The back-off is reset only when a connection
// stayed up for at least `stable` (a server that accepts and then drops at once is retried at
// the growing delay, not every few milliseconds). Buffers are bounded: more than max_buffer
// bytes of unsent commands or of one unparsed reply takes the link down.
// Everything here runs on the io_context's thread only.
#include "redis_asio.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

struct redisReader;
struct redisReply;

namespace herald::broker {

class redis_sharded_link {
public:
    struct options {
        redis_endpoint endpoint;
        milliseconds connect_timeout{2'000};
        milliseconds command_timeout{2'000};
        milliseconds ping_interval{1'000};
        milliseconds min_backoff{100};
        milliseconds max_backoff{5'000};
        milliseconds stable{2'000};
        std::size_t max_buffer = 64u << 20;
        std::string client_name;
        std::string username;
        std::string password;
    };

    redis_sharded_link(asio::io_context& ioc, options opt, std::uint64_t seed);
    ~redis_sharded_link();
    redis_sharded_link(const redis_sharded_link&) = delete;
    redis_sharded_link& operator=(const redis_sharded_link&) = delete;

    void start();
    void stop();
    void retry_now();
    // Another node: a connected link is dropped and reconnects there at once.
    void set_endpoint(const redis_endpoint& ep);

    [[nodiscard]] bool up() const noexcept { return state_ == state::up; }
    [[nodiscard]] std::uint64_t reconnects() const noexcept { return reconnects_; }
    [[nodiscard]] bool timed_out() const noexcept { return timed_out_; }
    [[nodiscard]] const redis_endpoint& endpoint() const noexcept { return opt_.endpoint; }

    // One SSUBSCRIBE / SUNSUBSCRIBE per channel (a command's channels must share a slot). False
    // when the link is not up.
    bool subscribe(const std::vector<std::string>& channels);
    bool unsubscribe(const std::vector<std::string>& channels);

    // ["ssubscribe", ch, n], ["sunsubscribe", ch, n] (also unasked: the node lost the slot) and
    // ["smessage", ch, payload].
    std::function<void(redisReply* reply)> on_push;
    // An SSUBSCRIBE answered with an error (-MOVED when this node does not own the slot).
    std::function<void(const std::string& channel, redisReply* error)> on_refused;
    std::function<void()> on_up;
    std::function<void()> on_down;

private:
    enum class state { idle, connecting, handshaking, up, waiting };
    enum class kind : std::uint8_t { handshake, ping, ssub, sunsub };
    struct waiting {
        kind k;
        std::string channel;
        time_point sent;
    };

    void do_connect();
    void on_connect(const error_code& ec);
    void do_read();
    void on_read(const error_code& ec, std::size_t n);
    void do_write();
    void on_write(const error_code& ec);
    void on_reply(redisReply* r);
    void on_timer();
    void arm_timer(time_point at);
    bool send(const std::vector<std::string_view>& argv, kind k, std::string channel = {});
    void drop(const char* why, bool timed_out = false);
    void schedule_reconnect();

    asio::io_context& ioc_;
    options opt_;
    tcp::socket socket_;
    tcp::resolver resolver_;
    asio::steady_timer timer_;  // connect deadline, reconnect delay, then the watchdog
    state state_ = state::idle;
    bool stopped_ = false;
    redisReader* reader_ = nullptr;
    std::array<char, 16384> in_{};
    std::string out_;      // commands not yet handed to the kernel
    std::string writing_;  // the write in flight
    bool write_pending_ = false;
    std::deque<waiting> sent_;
    time_point last_reply_{};
    time_point up_since_{};
    milliseconds backoff_;
    std::uint64_t reconnects_ = 0;
    bool was_up_ = false;
    bool timed_out_ = false;
    bool quiet_ = false;
    std::uint64_t conn_ = 0;  // bumped per connection: completions of an older one are void
    std::mt19937_64 rng_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herald::broker
