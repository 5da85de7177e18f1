// The listener's back-pressure: past limits.max_connections a client is still accepted and read,
// and gets one clear 503 `over_capacity` instead of a reset; a slot comes back when a connection
// ends. The listener accepts real TCP connections on 127.0.0.1 (accepting is its whole job).
#include "herald/net/listener.hpp"

#include "session_fixture.hpp"

#include <netinet/in.h>

using namespace herald;

namespace {

class listener_test : public test::session_fixture {
protected:
    ~listener_test() override {
        if (listener) listener->stop();
    }
    void listen() {
        auto a = net::open_acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        port = a.local_endpoint().port();
        listener = std::make_shared<net::listener>(worker(), std::move(a));
        listener->start();
    }
    // A TCP client, connected (the kernel completes the handshake; the listener accepts it when
    // the loop runs).
    test::peer& client() {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
        clients.push_back(std::make_unique<test::peer>(fd));
        run();
        return *clients.back();
    }

    std::shared_ptr<net::listener> listener;
    std::uint16_t port = 0;
    std::vector<std::unique_ptr<test::peer>> clients;
};

}  // namespace

TEST_F(listener_test, PastMaxConnectionsAClientGetsA503ThenTheConnectionCloses) {
    cfg.limits.max_connections = 1;
    listen();
    auto& a = client();
    auto& b = client();
    EXPECT_EQ(state.connections.load(), 2u);
    auto rb = get(b, "/healthz");
    ASSERT_TRUE(rb);
    EXPECT_EQ(rb->status, 503);
    EXPECT_NE(rb->body.find(R"({"error":{"code":"over_capacity",)"), std::string::npos) << rb->body;
    EXPECT_TRUE(rb->has_header("Retry-After: 1"));
    EXPECT_TRUE(rb->has_header("Connection: close"));
    EXPECT_EQ(rejected(metrics::reject::over_capacity), 1);
    EXPECT_TRUE(server_closed(b));
    // The client within the limit is served.
    auto ra = get(a, "/healthz");
    ASSERT_TRUE(ra);
    EXPECT_EQ(ra->status, 200);
}

TEST_F(listener_test, AClosedConnectionGivesItsSlotBack) {
    cfg.limits.max_connections = 1;
    listen();
    auto& a = client();
    ASSERT_EQ(get(a, "/healthz")->status, 200);
    a.close();
    for (int i = 0; i < 100 && state.connections.load() > 0; ++i) run();
    EXPECT_EQ(state.connections.load(), 0u);
    auto& b = client();
    auto rb = get(b, "/healthz");
    ASSERT_TRUE(rb);
    EXPECT_EQ(rb->status, 200);
}

TEST_F(listener_test, TheSessionSeesTheTcpPeerAsItsAddress) {
    // Per-address stream slots are keyed by the peer the listener looked up (127.0.0.1).
    cfg.limits.connections_per_ip = 1;
    use_auth();
    listen();
    auto& a = client();
    ASSERT_EQ(get(a, "/sse?topic=t")->status, 200);
    auto& b = client();
    auto rb = get(b, "/sse?topic=t");
    ASSERT_TRUE(rb);
    EXPECT_EQ(rb->status, 429);
}
