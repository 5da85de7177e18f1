#include "herald/net/http_client.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace herald;
using net::call_status;

namespace {

// A backend on 127.0.0.1 in the same loop: reads each request head (and its small body) and
// answers with `answer`, or never answers when `answer` is empty.
class backend {
public:
    explicit backend(asio::io_context& ioc) : ioc_(ioc), acceptor_(ioc) {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(ep.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(ep);
        acceptor_.listen();
        do_accept();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    int accepted = 0;
    int requests = 0;

private:
    struct peer {
        explicit peer(asio::io_context& ioc) : socket(ioc) {}
        tcp::socket socket;
        asio::streambuf buf;
    };
    void do_accept() {
        auto p = std::make_shared<peer>(ioc_);
        acceptor_.async_accept(p->socket, [this, p](error_code ec) {
            if (ec) return;
            ++accepted;
            peers_.push_back(p);
            do_read(p);
            do_accept();
        });
    }
    void do_read(const std::shared_ptr<peer>& p) {
        // Heads and bodies here are small: one request ends at its body's closing brace.
        asio::async_read_until(p->socket, p->buf, "}", [this, p](error_code ec, std::size_t n) {
            if (ec) return;
            p->buf.consume(n);
            ++requests;
            if (answer.empty()) return;  // stalled: read nothing more, answer nothing
            auto a = std::make_shared<std::string>(answer);
            asio::async_write(p->socket, asio::buffer(*a), [this, p, a](error_code e, std::size_t) {
                if (!e) do_read(p);
            });
        });
    }
    asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    std::vector<std::shared_ptr<peer>> peers_;
};

net::http_target target(std::uint16_t port) {
    return {"127.0.0.1", port, "/hook"};
}

net::http_call call(milliseconds timeout = milliseconds(2000)) {
    return {"{\"x\":1}", {{"X-Test", "1"}}, timeout};
}

// Runs the loop until `n` answers arrived (bounded by `limit`).
void run_until(asio::io_context& ioc, const std::vector<net::http_answer>& got, std::size_t n,
               milliseconds limit = milliseconds(5000)) {
    const auto end = clock::now() + limit;
    while (got.size() < n && clock::now() < end) {
        if (ioc.stopped()) ioc.restart();  // run_for() stops the loop when it runs out of work
        ioc.run_for(milliseconds(10));
    }
}

TEST(HttpUrl, ParsesHostPortAndPath) {
    auto t = net::parse_http_url("http://127.0.0.1:8081/hooks/connect");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->host, "127.0.0.1");
    EXPECT_EQ(t->port, 8081);
    EXPECT_EQ(t->path, "/hooks/connect");
    auto d = net::parse_http_url("http://backend");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->port, 80);
    EXPECT_EQ(d->path, "/");
    EXPECT_FALSE(net::parse_http_url("https://backend/"));
    EXPECT_FALSE(net::parse_http_url("http://user@backend/"));
    EXPECT_FALSE(net::parse_http_url("http://backend:0/"));
    EXPECT_FALSE(net::parse_http_url("http://backend:99999/"));
    EXPECT_FALSE(net::parse_http_url("http:///x"));
    EXPECT_FALSE(net::parse_http_url("http://b/a b"));
}

TEST(HttpClient, AnswersAndKeepsTheConnectionAlive) {
    asio::io_context ioc;
    backend b(ioc);
    net::http_client c(ioc, {});
    std::vector<net::http_answer> got;
    c.post(target(b.port()), call(), [&](net::http_answer a) { got.push_back(std::move(a)); });
    EXPECT_TRUE(got.empty()) << "the callback never runs inside post()";
    run_until(ioc, got, 1);
    c.post(target(b.port()), call(), [&](net::http_answer a) { got.push_back(std::move(a)); });
    run_until(ioc, got, 2);
    ASSERT_EQ(got.size(), 2u);
    for (const auto& a : got) {
        EXPECT_EQ(a.status, call_status::ok);
        EXPECT_EQ(a.code, 200u);
        EXPECT_EQ(a.body, "ok");
    }
    EXPECT_EQ(b.accepted, 1) << "the second call reuses the kept-alive connection";
    EXPECT_EQ(b.requests, 2);
}

TEST(HttpClient, AStalledBackendIsATimeout) {
    asio::io_context ioc;
    backend b(ioc);
    b.answer.clear();
    net::http_client c(ioc, {});
    std::vector<net::http_answer> got;
    const auto start = clock::now();
    c.post(target(b.port()), call(milliseconds(200)),
           [&](net::http_answer a) { got.push_back(std::move(a)); });
    run_until(ioc, got, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].status, call_status::timeout);
    EXPECT_LT(clock::now() - start, milliseconds(3000));
}

TEST(HttpClient, AnAnswerPastTheBoundIsTooLarge) {
    asio::io_context ioc;
    backend b(ioc);
    b.answer = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x');
    net::client_limits lim;
    lim.max_response_bytes = 1024;
    net::http_client c(ioc, lim);
    std::vector<net::http_answer> got;
    c.post(target(b.port()), call(), [&](net::http_answer a) { got.push_back(std::move(a)); });
    run_until(ioc, got, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].status, call_status::too_large);
}

TEST(HttpClient, BoundedConcurrencyAnswersOverloaded) {
    asio::io_context ioc;
    backend b(ioc);
    b.answer.clear();
    net::client_limits lim;
    lim.max_connections = 1;
    lim.max_pending = 1;
    net::http_client c(ioc, lim);
    std::vector<net::http_answer> got;
    for (int i = 0; i < 3; ++i)
        c.post(target(b.port()), call(milliseconds(300)),
               [&](net::http_answer a) { got.push_back(std::move(a)); });
    run_until(ioc, got, 3);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].status, call_status::overloaded) << "the third call: first to be answered";
    EXPECT_EQ(got[1].status, call_status::timeout);
    EXPECT_EQ(got[2].status, call_status::timeout);
    EXPECT_EQ(b.accepted, 1);
}

TEST(HttpClient, TheBreakerOpensAfterFailuresAndClosesAfterATrial) {
    asio::io_context ioc;
    std::uint16_t dead_port = 0;
    {
        tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        dead_port = a.local_endpoint().port();
    }  // closed: connects are refused
    net::client_limits lim;
    lim.breaker_failures = 3;
    lim.breaker_cooldown = milliseconds(200);
    net::http_client c(ioc, lim);
    std::vector<net::http_answer> got;
    auto cb = [&](net::http_answer a) { got.push_back(std::move(a)); };
    for (int i = 0; i < 3; ++i) {
        c.post(target(dead_port), call(), cb);
        run_until(ioc, got, static_cast<std::size_t>(i + 1));
    }
    ASSERT_EQ(got.size(), 3u);
    for (const auto& a : got) EXPECT_EQ(a.status, call_status::failed);
    EXPECT_EQ(c.open_breakers(), 1u);
    c.post(target(dead_port), call(), cb);
    run_until(ioc, got, 4);
    EXPECT_EQ(got.back().status, call_status::breaker_open);

    // The backend comes back on that port; after the cooldown one trial call closes the breaker.
    tcp::acceptor back(ioc);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), dead_port);
    back.open(ep.protocol());
    back.set_option(tcp::acceptor::reuse_address(true));
    back.bind(ep);
    back.listen();
    tcp::socket peer(ioc);
    back.async_accept(peer, [&](error_code ec) {
        if (ec) return;
        static const std::string ok = "HTTP/1.1 204 No Content\r\n\r\n";
        asio::async_write(peer, asio::buffer(ok), [](error_code, std::size_t) {});
    });
    std::this_thread::sleep_for(milliseconds(250));  // the cooldown
    c.post(target(dead_port), call(), cb);
    run_until(ioc, got, 5);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(got.back().status, call_status::ok);
    EXPECT_EQ(got.back().code, 204u);
    EXPECT_EQ(c.open_breakers(), 0u);
}

}  // namespace
