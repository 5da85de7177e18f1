// Raw bytes into the real HTTP/WebSocket/SSE server path, in process: one worker's runtime and
// an http_session on a loopback socket pair, polled on this thread until the session is done.
#include "../../src/app/api.hpp"
#include "herald/auth/context.hpp"
#include "../../src/broker/memory_broker.hpp"
#include "herald/hub/hub.hpp"
#include "../../src/net/sessions.hpp"

#include <cstdint>
#include <memory>
#include <string_view>

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
          ctx(0, ioc, cfg, hub.at(0), broker, metrics.at(0), state, api, &auth),
          acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        hub.set_broker(broker);
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
    app::api api;
    auth::context auth;
    net::worker_context ctx;
    tcp::acceptor acceptor;
};

// Runs the worker and plays the client: writes what is left of `in` as the server takes it (an
// input of 1 MiB of pipelined requests does not fit the socket buffers while the server pauses
// reading until its answers are read), reads every answer, and shuts down its sending side
// once everything is written (an empty `in`: the caller does). Bounded: stops after 50 rounds in a
// row without progress.
void pump(runtime& rt, tcp::socket& client, std::string_view in = {}) {
    static char sink[256 * 1024];
    std::size_t sent = 0;
    int idle = 0;
    for (int i = 0; i < 100000 && idle < 50; ++i) {
        error_code ec;
        std::size_t progress = 0;
        if (sent < in.size()) {
            const std::size_t n =
                client.write_some(asio::buffer(in.data() + sent, in.size() - sent), ec);
            sent += n;
            progress += n;
            if (sent == in.size()) client.shutdown(tcp::socket::shutdown_send, ec);
        }
        rt.ioc.restart();
        progress += rt.ioc.poll();
        while (client.is_open() && client.available(ec) > 0) {
            const std::size_t got = client.read_some(asio::buffer(sink), ec);
            if (ec || got == 0) break;
            progress += got;
        }
        if (progress > 0) {
            idle = 0;
            continue;
        }
        if (rt.ctx.connection_count() == 0 && sent >= in.size()) break;
        ++idle;
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static runtime rt;
    // Large enough for hundreds of pipelined requests or a WebSocket frame flood (make fuzz runs
    // this target with -max_len=1048576).
    if (size > 2 * 1024 * 1024) return 0;
    tcp::socket client(rt.ioc);
    client.connect(rt.acceptor.local_endpoint());
    client.non_blocking(true);
    stream_socket server(rt.ioc);
    rt.acceptor.accept(server);
    server.non_blocking(true);
    rt.state.connections.fetch_add(1);
    auto session = std::make_shared<net::http_session>(
        rt.ctx,
        net::link{net::socket_fd(server.release()), net::connection_slot(&rt.state), nullptr});
    session->start();
    session.reset();
    error_code ec;
    if (size == 0) client.shutdown(tcp::socket::shutdown_send, ec);
    pump(rt, client, std::string_view(reinterpret_cast<const char*>(data), size));
    client.close(ec);
    pump(rt, client);
    // Anything still open (a stream waiting for messages) ends as a drain would end it.
    rt.ctx.drain();
    pump(rt, client);
    return 0;
}
