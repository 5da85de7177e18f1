#include "herald/net/listener.hpp"

#include "herald/net/http_util.hpp"
#include "herald/net/sessions.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace herald::net {

tcp::acceptor open_acceptor(asio::io_context& ioc, const tcp::endpoint& ep) {
    tcp::acceptor a(ioc);
    a.open(ep.protocol());
    a.set_option(asio::socket_base::reuse_address(true));
    int one = 1;
    if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw boost::system::system_error(error_code(errno, boost::system::system_category()),
                                          "SO_REUSEPORT");
    a.bind(ep);
    a.listen(asio::socket_base::max_listen_connections);
    a.non_blocking(true);
    return a;
}

listener::listener(worker_context& w, tcp::acceptor acceptor)
    : w_(w), acceptor_(std::move(acceptor)), backoff_(w.ioc) {}

void listener::start() {
    do_accept();
}

void listener::stop() {
    error_code ec;
    acceptor_.close(ec);
    backoff_.cancel();
}

void listener::do_accept() {
    acceptor_.async_accept(w_.ioc, [self = shared_from_this()](error_code ec, tcp::socket s) {
        self->on_accept(ec, std::move(s));
    });
}

void listener::on_accept(error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
        // Out of descriptors or memory: back off instead of spinning on the same error.
        spdlog::warn("accept failed: {}; retrying in 100ms", ec.message());
        backoff_.expires_after(milliseconds(100));
        backoff_.async_wait([self = shared_from_this()](error_code e) {
            if (!e) self->do_accept();
        });
        return;
    }
    const auto open = w_.state.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    connection_slot slot(&w_.state);
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    socket.non_blocking(true, ignored);
    std::unique_ptr<tls::channel> tls;
    if (w_.tls) {
        try {
            tls = std::make_unique<tls::channel>(*w_.tls);
        } catch (const std::bad_alloc&) {
            spdlog::warn("accept: no memory for a TLS session; closing the connection");
            do_accept();
            return;  // the socket and its slot are released here
        }
    }
    auto session = std::make_shared<http_session>(
        w_, link{std::move(socket), std::move(slot), std::move(tls)});
    // Over the limit the connection is still read, so the client gets a clear 503 rather than
    // a reset; it is closed after that one answer.
    if (open > w_.cfg.limits.max_connections) session->refuse_with(metrics::reject::over_capacity);
    session->start();
    do_accept();
}

}  // namespace herald::net
