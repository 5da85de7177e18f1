// Raw bytes into the real HTTP/WebSocket/SSE server path, in process: one worker's runtime and
// an http_session on a loopback socket pair, polled on this thread until the session is done.
#include "../../src/app/publish_api.hpp"
#include "herald/auth/context.hpp"
#include "herald/broker/memory_broker.hpp"
#include "herald/hub/hub.hpp"
#include "herald/net/sessions.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <cstdint>
#include <memory>

using namespace herald;

namespace {
struct runtime {
    runtime()
        : cfg(make_cfg()),
          hub({&ioc}),
          broker(hub, cfg),
          metrics(1),
          api(cfg, metrics, broker, state),
          auth(cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; }),
          ctx(0, ioc, cfg, hub.at(0), broker, metrics.at(0), state, api),
          acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        hub.set_broker(broker);
        ctx.auth = &auth;
        state.ready = true;
    }
    static config::settings make_cfg() {
        config::settings c;
        c.auth.allow_unauthenticated_publish = true;
        c.ws.client_publish = {"*"};
        c.limits.connections_per_ip = 0;
        c.limits.new_connections_per_ip_per_s = 0;
        c.limits.publishes_per_key_per_s = 0;
        c.limits.ws_messages_per_s = 0;
        return c;
    }
    config::settings cfg;
    asio::io_context ioc{1};
    hub::hub hub;
    broker::memory_broker broker;
    metrics::registry metrics;
    net::process_state state;
    app::publish_api api;
    auth::context auth;
    net::worker_context ctx;
    tcp::acceptor acceptor;
};

void pump(runtime& rt, tcp::socket& client) {
    char sink[65536];
    for (int i = 0; i < 200; ++i) {
        rt.ioc.restart();
        std::size_t ran = rt.ioc.poll();
        error_code ec;
        std::size_t got = 0;
        if (client.is_open() && client.available(ec) > 0)
            got = client.read_some(asio::buffer(sink), ec);
        if (ran == 0 && got == 0 && rt.ctx.connection_count() == 0) break;
        if (ran == 0 && got == 0 && i > 50) break;
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static runtime rt;
    if (size > 64 * 1024) return 0;
    tcp::socket client(rt.ioc);
    client.connect(rt.acceptor.local_endpoint());
    tcp::socket server(rt.ioc);
    rt.acceptor.accept(server);
    server.non_blocking(true);
    rt.state.connections.fetch_add(1);
    auto session = std::make_shared<net::http_session>(
        rt.ctx, net::link{std::move(server), net::connection_slot(&rt.state), nullptr});
    session->start();
    session.reset();
    asio::write(client, asio::buffer(data, size));
    error_code ec;
    client.shutdown(tcp::socket::shutdown_send, ec);
    pump(rt, client);
    client.close(ec);
    pump(rt, client);
    // Anything still open (a stream waiting for messages) ends as a drain would end it.
    rt.ctx.drain();
    pump(rt, client);
    return 0;
}
