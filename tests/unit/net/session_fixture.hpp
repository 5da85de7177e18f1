#pragma once
// Drives herald's sessions without a network: each client connection is a socketpair(AF_UNIX);
// the server end becomes an http_session through net::link_over() (the transport seam in
// net/connection.hpp), exactly as the listener would hand it an accepted TCP socket, and the test
// holds the other end as a raw descriptor. The worker's runtime is the production one (a real
// hub, the memory broker, app::api); the loop runs only inside run(), and timeouts are driven by
// calling the worker's sweep with a later time (tick()), never by waiting.
#include "app/api.hpp"
#include "broker/memory_broker.hpp"
#include "herald/auth/context.hpp"
#include "herald/hub/hub.hpp"
#include "herald/net/worker_context.hpp"
#include "herald/wire/ws_codec.hpp"
#include "net/connection.hpp"
#include "net/sessions.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace herald::test {

// The client's end of one connection.
class peer {
public:
    explicit peer(int fd) : fd_(fd) { ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK); }
    peer(peer&& o) noexcept : fd_(std::exchange(o.fd_, -1)), in_(std::move(o.in_)), eof_(o.eof_) {}
    peer& operator=(peer&&) = delete;
    ~peer() { close(); }

    // Writes all of `bytes` (the server end's receive buffer must have room: tests send little).
    void write(std::string_view bytes) {
        while (!bytes.empty()) {
            const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            ASSERT_GT(n, 0) << std::strerror(errno);
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    // Moves what the server has written so far into in(); false once the server closed.
    bool pump() {
        char buf[16384];
        for (;;) {
            const auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n > 0) {
                in_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof_ = true;
            return !eof_;
        }
    }
    void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    // Bytes received and not yet consumed by a reader below.
    std::string& in() noexcept { return in_; }
    [[nodiscard]] bool eof() const noexcept { return eof_; }
    [[nodiscard]] int fd() const noexcept { return fd_; }

private:
    int fd_;
    std::string in_;
    bool eof_ = false;
};

struct http_response {
    int status = 0;
    std::string head;  // status line and headers
    std::string body;
    [[nodiscard]] bool has_header(std::string_view line) const {
        return head.find(std::string(line) + "\r\n") != std::string::npos;
    }
};

// A server frame (never masked).
struct ws_frame {
    ws::opcode op{};
    bool fin = true;
    std::string payload;
    [[nodiscard]] std::uint16_t close_code() const {
        return payload.size() >= 2
                   ? static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                static_cast<unsigned char>(payload[1]))
                   : 0;
    }
};

// A client frame, masked as RFC 6455 requires.
inline std::string client_frame(ws::opcode op, std::string_view payload, bool fin = true) {
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | static_cast<int>(op));
    const std::size_t n = payload.size();
    if (n < 126) {
        f += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
        f += static_cast<char>(0x80 | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    const std::array<char, 4> mask{'\x12', '\x34', '\x56', '\x78'};
    f.append(mask.data(), mask.size());
    for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
}

inline std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
    std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
    p += reason;
    return p;
}

// Takes one complete HTTP response off the front of `in` (Content-Length bodies, or none for
// 101 and 204); nullopt until it is all there.
inline std::optional<http_response> take_response(std::string& in) {
    const auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    http_response r;
    r.head = in.substr(0, end + 2);
    r.status = std::atoi(in.c_str() + 9);
    std::size_t length = 0;
    if (auto cl = r.head.find("Content-Length: "); cl != std::string::npos)
        length = std::strtoul(r.head.c_str() + cl + 16, nullptr, 10);
    if (in.size() < end + 4 + length) return std::nullopt;
    r.body = in.substr(end + 4, length);
    in.erase(0, end + 4 + length);
    return r;
}

// Takes one complete server frame off the front of `in`; nullopt until it is all there.
inline std::optional<ws_frame> take_frame(std::string& in) {
    if (in.size() < 2) return std::nullopt;
    const auto b0 = static_cast<unsigned char>(in[0]);
    const auto b1 = static_cast<unsigned char>(in[1]);
    std::size_t len = b1 & 0x7f;
    std::size_t at = 2;
    if (len == 126) {
        if (in.size() < 4) return std::nullopt;
        len = (static_cast<std::size_t>(static_cast<unsigned char>(in[2])) << 8) |
              static_cast<unsigned char>(in[3]);
        at = 4;
    } else if (len == 127) {
        if (in.size() < 10) return std::nullopt;
        len = 0;
        for (int i = 0; i < 8; ++i)
            len = (len << 8) | static_cast<unsigned char>(in[2 + static_cast<std::size_t>(i)]);
        at = 10;
    }
    if (in.size() < at + len) return std::nullopt;
    ws_frame f{static_cast<ws::opcode>(b0 & 0x0f), (b0 & 0x80) != 0, in.substr(at, len)};
    in.erase(0, at + len);
    return f;
}

// One worker (worker 0 of one) and its clients.
class session_fixture : public ::testing::Test {
protected:
    // Every session still open is closed and the loop emptied while the runtime it refers to is
    // alive; the io_context goes first, destroying any handler (and the session it owns) left.
    ~session_fixture() override {
        if (ctx_) {
            ctx_->drain();
            ctx_->tick(clock::now() + std::chrono::hours(1));
        }
        peers_.clear();
        run();
        ioc_.reset();
    }

    // The worker's runtime, built on first use from cfg (set cfg before), with the security
    // context when use_auth() was called.
    net::worker_context& worker() {
        if (!ctx_) {
            auto& b = other_broker_ ? *other_broker_ : memory_broker();
            api_ = std::make_unique<app::api>(cfg, metrics_, b, state);
            state.ready.store(true);
            ctx_ = std::make_unique<net::worker_context>(
                0, ioc, cfg, hub_.at(0), b, metrics_.at(0), state,
                other_api_ ? *other_api_ : static_cast<net::http_api&>(*api_), auth_.get());
        }
        return *ctx_;
    }
    // Requests the HTTP session does not serve itself go to `a` instead of app::api (before
    // worker()).
    void use_api(net::http_api& a) { other_api_ = &a; }
    // The API and the sessions publish through `b` instead of the memory broker, which still
    // serves the hub's subscriptions (before worker()).
    void use_broker(broker::broker& b) { other_broker_ = &b; }
    // The memory broker, built from cfg on first use.
    broker::broker& memory_broker() {
        if (!broker_) {
            broker_ = std::make_unique<broker::memory_broker>(hub_, cfg);
            hub_.set_broker(*broker_);
        }
        return *broker_;
    }
    // Builds auth::context from cfg (origins, trusted proxies, keys...), before worker().
    auth::context& use_auth() {
        auth_ = std::make_unique<auth::context>(
            cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; });
        return *auth_;
    }

    // A new client: an http_session over one end of a socketpair, started as the listener
    // starts one; the session sees `ip` as its TCP peer. `sndbuf`: the server end's send buffer
    // (0: the default), to make a client that does not read fill it soon.
    peer& connect(std::string_view ip = "192.0.2.10", int sndbuf = 0) {
        auto& w = worker();
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        if (sndbuf) ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        error_code ec;
        auto l = net::link_over(ioc, fds[0], asio::ip::make_address(ip), ec);
        EXPECT_FALSE(ec) << ec.message();
        auto s = std::make_shared<net::http_session>(w, std::move(l));
        s->start();
        peers_.push_back(std::make_unique<peer>(fds[1]));
        return *peers_.back();
    }

    // Runs what is ready (bounded), as turns of the worker's loop would.
    void run() {
        for (int i = 0; i < 50; ++i) {
            ioc.restart();
            if (ioc.poll() == 0 && i > 0) break;
        }
    }
    // The worker's sweep, as its timer would run it `later` from now.
    void tick(clock::duration later) {
        worker().tick(clock::now() + later);
        run();
    }

    // Runs the loop until `p` has a complete response (bounded).
    std::optional<http_response> response(peer& p) {
        for (int i = 0; i < 200; ++i) {
            run();
            p.pump();
            if (auto r = take_response(p.in())) return r;
            if (p.eof()) break;
        }
        return std::nullopt;
    }
    std::optional<http_response> request(peer& p, std::string_view raw) {
        p.write(raw);
        return response(p);
    }
    std::optional<http_response> get(peer& p, std::string_view target,
                                     std::string_view headers = {}) {
        return request(p, "GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" +
                              std::string(headers) + "\r\n");
    }
    std::optional<http_response> post(peer& p, std::string_view target, std::string_view body,
                                      std::string_view content_type = "text/plain",
                                      std::string_view headers = {}) {
        return request(p, "POST " + std::string(target) +
                              " HTTP/1.1\r\nHost: t\r\nContent-Type: " + std::string(content_type) +
                              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
                              std::string(headers) + "\r\n" + std::string(body));
    }

    // Runs the loop until `p` has a complete frame (bounded).
    std::optional<ws_frame> frame(peer& p) {
        for (int i = 0; i < 200; ++i) {
            if (auto f = take_frame(p.in())) return f;
            run();
            p.pump();
            if (auto f = take_frame(p.in())) return f;
            if (p.eof()) break;
        }
        return std::nullopt;
    }
    // A WebSocket client, upgraded (101 read); `query`: "?topic=a&topic=b" or empty.
    peer& ws_connect(std::string_view query = {}) {
        auto& p = connect();
        auto r = get(p, "/ws" + std::string(query),
                     "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n");
        EXPECT_TRUE(r && r->status == 101) << (r ? r->head : "no answer");
        return p;
    }
    void send_text(peer& p, std::string_view text) {
        p.write(client_frame(ws::opcode::text, text));
    }
    // The next text frame's payload ("" when none came).
    std::string text(peer& p) {
        auto f = frame(p);
        EXPECT_TRUE(f && f->op == ws::opcode::text)
            << (f ? "opcode " + std::to_string(static_cast<int>(f->op)) : "no frame");
        return f ? f->payload : "";
    }

    // Runs the loop until the server closed `p` (bounded); true when it did.
    bool server_closed(peer& p) {
        for (int i = 0; i < 200 && !p.eof(); ++i) {
            run();
            p.pump();
        }
        return p.eof();
    }

    // Runs the loop until `p` received `needle` (bounded); the bytes up to and including it are
    // consumed and returned ("" when it never came).
    std::string until(peer& p, std::string_view needle) {
        for (int i = 0; i < 200; ++i) {
            run();
            p.pump();
            if (auto at = p.in().find(needle); at != std::string::npos) {
                std::string got = p.in().substr(0, at + needle.size());
                p.in().erase(0, at + needle.size());
                return got;
            }
            if (p.eof()) break;
        }
        return {};
    }

    // Publishes through the broker, as another client would.
    broker::publish_result publish(std::string topic, std::string payload, std::string event = {}) {
        hub::publish_request r;
        r.topic = std::move(topic);
        r.payload = std::move(payload);
        r.event = std::move(event);
        std::optional<broker::publish_result> got;
        worker().broker.publish(0, std::move(r), [&](broker::publish_result res) { got = res; });
        run();
        EXPECT_TRUE(got.has_value());
        return got.value_or(broker::publish_result{});
    }

    [[nodiscard]] std::int64_t rejected(metrics::reject r) {
        return metrics_.at(0).rejected[static_cast<std::size_t>(r)].get();
    }
    metrics::worker_counters& counters() { return metrics_.at(0); }

    config::settings cfg;

private:
    std::unique_ptr<asio::io_context> ioc_ = std::make_unique<asio::io_context>(1);

protected:
    asio::io_context& ioc = *ioc_;
    net::process_state state;

private:
    hub::hub hub_{{ioc_.get()}};
    metrics::registry metrics_{1};
    std::unique_ptr<broker::memory_broker> broker_;
    std::unique_ptr<app::api> api_;
    net::http_api* other_api_ = nullptr;
    broker::broker* other_broker_ = nullptr;
    std::unique_ptr<auth::context> auth_;
    std::unique_ptr<net::worker_context> ctx_;
    std::vector<std::unique_ptr<peer>> peers_;
};

}  // namespace herald::test
