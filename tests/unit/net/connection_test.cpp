#include "net/connection.hpp"

#include "broker/memory_broker.hpp"
#include "herald/hub/hub.hpp"
#include "herald/net/http_api.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace herald;

namespace {

class no_api final : public net::http_api {
public:
    void handle(net::worker_context&, net::http_request&, net::responder) override {}
};

class test_connection final : public net::connection {
public:
    using connection::connection;
    void on_tick(time_point) override {}
    void on_drain(std::optional<milliseconds>) override {}
    int slow_calls = 0;

private:
    void on_slow_consumer() override {
        ++slow_calls;
        close_now();
    }
};

// A session that decides when it may read and what it holds, and records what it got.
class gated_connection final : public net::connection {
public:
    using connection::connection;
    void on_tick(time_point) override {}
    void on_drain(std::optional<milliseconds>) override {}

    void start() { wait_readable(); }
    void open_gate() {
        gate = true;
        resume_reading();
    }
    void ask_room(std::size_t mark) { want_room(mark); }
    void finish() { close_after_flush(); }
    // Ends what is pending, so that nothing outlives the test's io_context.
    void stop() { close_now(); }
    [[nodiscard]] bool parked() const noexcept { return read_parked(); }

    bool gate = true;
    std::size_t held = 0;
    int rooms = 0;
    std::string got;

private:
    [[nodiscard]] bool may_read() const noexcept override { return gate; }
    [[nodiscard]] std::size_t session_held_bytes() const noexcept override { return held; }
    void on_output_room() override { ++rooms; }
    void on_readable() override {
        error_code ec;
        for (std::size_t n; (n = read_some(ec)) > 0;) got.append(w_.scratch().data(), n);
        if (!ec) wait_readable();
    }
};

// One worker's runtime and a connected socket pair over loopback.
struct connection_test : ::testing::Test {
    connection_test()
        : hub({&ioc}),
          broker(hub, cfg),
          metrics(1),
          acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        hub.set_broker(broker);
    }

    template <class C = test_connection>
    std::shared_ptr<C> connect(int client_rcvbuf = 0) {
        if (client_rcvbuf) {
            client.open(tcp::v4());
            client.set_option(asio::socket_base::receive_buffer_size(client_rcvbuf));
        }
        client.connect(acceptor.local_endpoint());
        stream_socket server(ioc);
        acceptor.accept(server);
        server.set_option(asio::socket_base::send_buffer_size(4096));
        server.non_blocking(true);
        // One worker runtime for the whole test: connections keep a reference to it.
        if (!ctx)
            ctx = std::make_unique<net::worker_context>(0, ioc, cfg, hub.at(0), broker,
                                                        metrics.at(0), state, api);
        return std::make_shared<C>(
            *ctx, net::link{net::socket_fd(server.release()), net::connection_slot{}, nullptr},
            metrics::transport::ws);
    }

    std::shared_ptr<test_connection> connect_again() {
        client = tcp::socket(ioc);
        return connect();
    }

    void run() {
        ioc.restart();
        ioc.poll();
    }

    config::settings cfg;
    asio::io_context ioc{1};
    hub::hub hub;
    broker::memory_broker broker;
    metrics::registry metrics;
    net::process_state state;
    no_api api;
    tcp::acceptor acceptor;
    tcp::socket client{ioc};
    std::unique_ptr<net::worker_context> ctx;
};

}  // namespace

// ---- memory budget, back-pressure and lingering close

TEST_F(connection_test, HeldBytesCountTheQueueAndWhatTheSessionHolds) {
    auto c = connect<gated_connection>();
    c->held = 50;
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::string(100, 'x'))));
    EXPECT_EQ(c->output_bytes(), 100u);
    EXPECT_EQ(c->held_bytes(), 150u);
    EXPECT_EQ(c->budget(), cfg.limits.max_queued_bytes + cfg.http.max_header_bytes +
                               cfg.limits.max_message_bytes + net::k_read_allowance);
    c->stop();
    run();
}

TEST_F(connection_test, AReadParksWhileTheSessionSaysNoAndResumesWhenAsked) {
    auto c = connect<gated_connection>();
    c->gate = false;
    c->start();
    asio::write(client, asio::buffer(std::string_view("abc")));
    run();
    EXPECT_TRUE(c->parked());
    EXPECT_EQ(c->got, "");
    c->open_gate();
    run();
    EXPECT_FALSE(c->parked());
    EXPECT_EQ(c->got, "abc");
    c->stop();
    run();
}

// The worker's fd_reactor: a pending wait is what keeps a connection alive (as a pending Asio
// operation did), and nothing does once it waits no more. (Input that came while the read was
// parked, its edge already gone, is reported when the read is armed again: the two tests above
// fail when arming skips EPOLL_CTL_MOD.)
TEST_F(connection_test, AWaitKeepsTheConnectionAliveAndSeesInputThatCameBeforeIt) {
    auto c = connect<gated_connection>();
    asio::write(client, asio::buffer(std::string_view("abc")));
    run();  // the socket's edge passes while nothing waits
    std::weak_ptr<gated_connection> weak = c;
    c->start();
    c.reset();  // only the read wait holds it now
    run();
    {
        auto alive = weak.lock();
        ASSERT_TRUE(alive);
        EXPECT_EQ(alive->got, "abc");
    }
    client.close();  // EOF: on_readable arms no further wait, so nothing holds it any more
    run();
    EXPECT_TRUE(weak.expired());
}

TEST_F(connection_test, AReadParksAtTheBudgetAndAWriteResumesIt) {
    auto c = connect<gated_connection>();
    c->held = c->budget();
    c->start();
    asio::write(client, asio::buffer(std::string_view("abc")));
    run();
    EXPECT_TRUE(c->parked());
    EXPECT_EQ(c->got, "");
    // The session let go of its bytes; the next write that leaves re-arms the read.
    c->held = 0;
    ASSERT_TRUE(c->enqueue(net::chunk::of_static("ok")));
    run();
    run();
    EXPECT_EQ(c->got, "abc");
    c->stop();
    run();
}

TEST_F(connection_test, WantRoomCallsBackOnceWhenTheOutputHasLeft) {
    auto c = connect<gated_connection>();
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::string(1000, 'x'))));
    c->ask_room(0);
    EXPECT_EQ(c->rooms, 0);  // never from inside the caller
    run();
    run();
    EXPECT_EQ(c->rooms, 1);
    run();
    EXPECT_EQ(c->rooms, 1);
    c->stop();
    run();
}

TEST_F(connection_test, ALingeringCloseDeliversEveryByteDespiteUnreadInput) {
    // The peer sent input that the session never read, and reads its answer slowly: a plain
    // close() would make the kernel answer with an RST and drop what is still in the send
    // buffer. The lingering close waits for the peer and ends with a FIN.
    auto c = connect<gated_connection>(4096);
    c->gate = false;
    c->start();
    asio::write(client, asio::buffer(std::string(64 * 1024, 'q')));
    const std::string answer(256 * 1024, 'a');
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(answer)));
    c->finish();
    client.non_blocking(true);
    std::string got;
    error_code ec;
    static char buf[8192];
    for (int i = 0; i < 100000 && !ec; ++i) {
        run();
        const std::size_t n = client.read_some(asio::buffer(buf, 1024), ec);
        if (ec == asio::error::would_block) ec = {};
        got.append(buf, n);
    }
    EXPECT_EQ(ec, asio::error::eof) << ec.message();
    EXPECT_EQ(got.size(), answer.size());
    // The peer's close (EOF on the lingering read) ends it.
    client.close();
    run();
    EXPECT_TRUE(c->closed());
    c->stop();
    run();
}

// ---- send queue

TEST_F(connection_test, QueuedChunksLeaveInOrderInFewGatheredWrites) {
    auto c = connect();
    std::string expected;
    for (int i = 0; i < 100; ++i) {
        std::string s(100, static_cast<char>('a' + i % 26));
        expected += s;
        ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::move(s))));
    }
    run();  // the flush pass: one turn of the loop
    std::string got(expected.size(), '\0');
    asio::read(client, asio::buffer(got));
    EXPECT_EQ(got, expected);
    // 100 chunks of 100 bytes; up to 64 chunks per gathered write.
    EXPECT_LE(metrics.at(0).write_calls.get(), 2);
    EXPECT_EQ(metrics.at(0).bytes_out.get(), static_cast<std::int64_t>(expected.size()));
}

TEST_F(connection_test, EmptyChunksAreNoObstacleToAFlush) {
    // A chunk of no bytes once made the flush loop spin on a write of nothing (100 % CPU, a
    // worker that no longer answered, SIGTERM included).
    auto c = connect();
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::string())));
    ASSERT_TRUE(c->enqueue(net::chunk::of_string("ab")));
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::string())));
    ASSERT_TRUE(c->enqueue(net::chunk::of_string("cd")));
    ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::string())));  // last: nothing follows it
    run();
    std::string got(4, '\0');
    asio::read(client, asio::buffer(got));
    EXPECT_EQ(got, "abcd");
    EXPECT_EQ(c->output_bytes(), 0u);
}

TEST_F(connection_test, OverTheBoundTheConnectionIsASlowConsumerOnce) {
    cfg.limits.max_queued_bytes = 64 * 1024;
    auto c = connect(4096);  // a client that never reads, with a small receive buffer
    const std::string kib(1024, 'x');
    int accepted = 0;
    bool refused = false;
    for (int i = 0; i < 4096 && !refused; ++i) {
        if (c->enqueue(net::chunk::of_static(kib)))
            ++accepted;
        else
            refused = true;
        if (i % 16 == 0) run();  // let writes happen, as the loop would
    }
    ASSERT_TRUE(refused) << "the queue never filled: " << accepted << " KiB accepted";
    EXPECT_FALSE(c->enqueue(net::chunk::of_static(kib))) << "a slow consumer takes nothing more";
    run();
    EXPECT_EQ(c->slow_calls, 1);
    EXPECT_TRUE(c->closed());
    EXPECT_EQ(metrics.at(0).slow_consumers[static_cast<std::size_t>(metrics::transport::ws)].get(),
              1);
}

TEST_F(connection_test, ForcedChunksPassTheBound) {
    cfg.limits.max_queued_bytes = 1024;
    auto c = connect();
    const std::string big(4096, 'y');
    EXPECT_FALSE(c->enqueue(net::chunk::of_static(big)));
    c = connect_again();
    EXPECT_TRUE(c->enqueue(net::chunk::of_static(big), true));
}

TEST_F(connection_test, SharedChunksKeepTheirOwnerAliveUntilWritten) {
    auto c = connect();
    auto owner = std::make_shared<const std::string>("shared bytes");
    std::weak_ptr<const std::string> weak = owner;
    ASSERT_TRUE(c->enqueue(net::chunk::of_shared(owner, *owner)));
    owner.reset();
    EXPECT_FALSE(weak.expired()) << "the queue holds the message";
    run();
    std::string got(12, '\0');
    asio::read(client, asio::buffer(got));
    EXPECT_EQ(got, "shared bytes");
    EXPECT_TRUE(weak.expired()) << "written chunks release their owner";
}

TEST_F(connection_test, ABusyWorkerCorksItsNextFlushPassBriefly) {
    // 40 connections flushed in one pass make the worker busy (k_cork_min_connections).
    constexpr int n = 40;
    std::vector<std::shared_ptr<test_connection>> conns;
    std::vector<tcp::socket> clients;
    for (int i = 0; i < n; ++i) {
        conns.push_back(connect());
        clients.push_back(std::move(client));
        client = tcp::socket(ioc);
    }
    for (auto& c : conns) ASSERT_TRUE(c->enqueue(net::chunk::of_static("a")));
    run();
    EXPECT_EQ(metrics.at(0).write_calls.get(), n);
    EXPECT_EQ(metrics.at(0).corked_flushes.get(), 0);
    std::string expected = "a";

    // Queued right after a busy pass: the next pass waits for the cork delay (as long as the last
    // pass took), so a loop turn flushes nothing, and what is queued meanwhile leaves in the same
    // write. Without corking that turn writes "b" at once and "c" takes a second write.
    // The delay is short (the pass took well under a millisecond) and the clock is real: an
    // attempt that comes after the delay already passed (a preempted test) proves nothing and is
    // repeated; every attempt follows a busy pass, as the flush of the last one was.
    bool corked = false;
    for (int attempt = 0; attempt < 5 && !corked; ++attempt) {
        const auto writes = metrics.at(0).write_calls.get();
        const auto corks = metrics.at(0).corked_flushes.get();
        for (auto& c : conns) ASSERT_TRUE(c->enqueue(net::chunk::of_static("b")));
        run();  // one turn of the loop
        const bool held = metrics.at(0).corked_flushes.get() == corks + 1 &&
                          metrics.at(0).write_calls.get() == writes;
        for (auto& c : conns) ASSERT_TRUE(c->enqueue(net::chunk::of_static("c")));
        ioc.restart();
        ioc.run_for(std::chrono::milliseconds(50));  // k_max_cork_delay is 10 ms
        expected += "bc";
        if (!held) continue;
        corked = true;
        EXPECT_EQ(metrics.at(0).corked_flushes.get(), corks + 1);
        EXPECT_EQ(metrics.at(0).write_calls.get(), writes + n) << "\"b\" and \"c\" in one write";
    }
    EXPECT_TRUE(corked) << "no flush pass after a busy one was held back, in 5 attempts";
    for (auto& s : clients) {
        std::string got(expected.size(), '\0');
        asio::read(s, asio::buffer(got));
        EXPECT_EQ(got, expected);
    }
}

TEST_F(connection_test, PackedSmallChunksSurvivePartialWrites) {
    // Small chunks leave packed into one run per write; a small receive buffer makes most writes
    // partial, so the rest of a run must be sent again from the chunks, in order.
    auto c = connect(4096);
    std::string expected;
    for (int i = 0; i < 3000; ++i) {
        std::string s = std::to_string(i) + ",";
        s.resize(static_cast<std::size_t>(20 + i % 200), static_cast<char>('a' + i % 26));
        expected += s;
        ASSERT_TRUE(c->enqueue(net::chunk::of_string(std::move(s))));
    }
    std::string got;
    std::string buf(4096, '\0');
    client.non_blocking(true);
    for (int turns = 0; got.size() < expected.size() && turns < 100000; ++turns) {
        run();
        error_code ec;
        const std::size_t n = client.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::would_block) continue;
        ASSERT_FALSE(ec) << ec.message();
        got.append(buf.data(), n);
    }
    EXPECT_EQ(got, expected);
    EXPECT_GT(metrics.at(0).write_calls.get(), 1);
}
