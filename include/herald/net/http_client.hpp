#pragma once
// An HTTP/1.1 client on one worker's loop, for calls to the application's backend (hooks,
// webhooks). Per target (host:port) it keeps a pool of keep-alive connections, bounded in
// number (max_connections calls in flight, max_pending more waiting; past that a call fails at
// once as `overloaded`), and a circuit breaker: after `breaker_failures` failures in a row the
// target is not called for `breaker_cooldown`, then one trial call decides whether it closes.
//
// Every call ends, exactly once, with a callback on the loop (never inside post()): a backend
// that does not answer is a `timeout` at the call's deadline (connect, write and read share it);
// an answer larger than max_response_bytes is `too_large`. Not thread-safe: one per worker,
// used on that worker's thread only. plain http:// only (the backend sits beside herald).
#include "herald/common/net.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net {

struct http_target {
    std::string host;
    std::uint16_t port = 80;
    std::string path = "/";
    [[nodiscard]] std::string key() const { return host + ":" + std::to_string(port); }
};

// "http://host[:port][/path]"; nullopt for anything else (https, user info, bad port).
[[nodiscard]] std::optional<http_target> parse_http_url(std::string_view url);

struct http_call {
    std::string body;  // sent as application/json
    std::vector<std::pair<std::string, std::string>> headers;
    milliseconds timeout{2000};
};

enum class call_status : std::uint8_t {
    ok,            // an answer (any status code)
    timeout,       // no complete answer before the deadline
    failed,        // connect refused, reset, malformed answer
    overloaded,    // max_connections in flight and max_pending waiting
    breaker_open,  // the target failed repeatedly; not called during the cooldown
    too_large,     // the answer passed max_response_bytes
};
[[nodiscard]] const char* to_string(call_status s) noexcept;

struct http_answer {
    call_status status = call_status::failed;
    unsigned code = 0;  // the HTTP status when ok
    std::string body;
    std::chrono::microseconds took{0};
};

struct client_limits {
    std::size_t max_connections = 64;  // per target: calls in flight
    std::size_t max_pending = 1024;    // per target: calls waiting for a connection
    std::size_t max_response_bytes = 64 * 1024;
    unsigned breaker_failures = 5;
    milliseconds breaker_cooldown{5000};
};

class http_client {
public:
    using callback = std::function<void(http_answer)>;
    http_client(asio::io_context& ioc, client_limits limits);
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    // A POST of `call.body` to `t`; `done` runs later on this loop, exactly once. A 5xx answer
    // counts as a failure for the breaker but is handed over as `ok` with its code.
    void post(const http_target& t, http_call call, callback done);

    // Targets whose breaker is open now (a gauge).
    [[nodiscard]] std::size_t open_breakers() const noexcept;
    [[nodiscard]] const client_limits& limits() const noexcept { return limits_; }

    struct pool;  // one target's connections, waiters and breaker (http_client.cpp)

private:
    asio::io_context& ioc_;
    client_limits limits_;
    std::map<std::string, std::shared_ptr<pool>, std::less<>> pools_;
};

}  // namespace herald::net
