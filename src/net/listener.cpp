#include "herald/net/listener.hpp"

#include "herald/auth/client_ip.hpp"
#include "herald/net/http_util.hpp"
#include "sessions.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace herald::net {

namespace {
std::string to_text(const tcp::endpoint& ep) {
    const auto a = ep.address().to_string();
    const auto p = std::to_string(ep.port());
    return ep.address().is_v6() ? "[" + a + "]:" + p : a + ":" + p;
}

[[noreturn]] void throw_errno(const char* what) {
    throw boost::system::system_error(error_code(errno, boost::system::system_category()), what);
}

// Closes a descriptor on every path out of the constructor.
struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};
}  // namespace

port_claim::port_claim(tcp::endpoint& ep) {
    // The probe: SO_REUSEADDR so that connections an old instance is still draining (it no
    // longer listens) do not count, no SO_REUSEPORT so that any listener on the port does.
    fd_guard probe{::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (probe.fd < 0) throw_errno("socket");
    int one = 1;
    if (::setsockopt(probe.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        throw_errno("SO_REUSEADDR");
    if (::bind(probe.fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
        if (errno == EADDRINUSE)
            throw port_in_use("cannot listen on " + to_text(ep) +
                              ": another process listens there (another herald, or an old one "
                              "that has not stopped listening yet); herald does not share its "
                              "port with another process");
        throw_errno("bind");
    }
    if (ep.port() == 0) {
        tcp::endpoint bound;
        socklen_t len = static_cast<socklen_t>(bound.capacity());
        if (::getsockname(probe.fd, bound.data(), &len) != 0) throw_errno("getsockname");
        bound.resize(len);
        ep.port(bound.port());
    }

    // The lock, taken while the probe still holds the port: a second herald either fails the
    // probe (until ours is closed) or, after that, fails the lock (until this process releases
    // it). Abstract names need no file and vanish with the process, even on SIGKILL.
    fd_guard lock{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (lock.fd < 0) throw_errno("socket(AF_UNIX)");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string name = "herald/listen/" + to_text(ep);
    std::memcpy(addr.sun_path + 1, name.data(), std::min(name.size(), sizeof addr.sun_path - 2));
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                            std::min(name.size(), sizeof addr.sun_path - 2));
    if (::bind(lock.fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
        if (errno == EADDRINUSE)
            throw port_in_use("cannot listen on " + to_text(ep) +
                              ": another herald is claiming it at the same time; herald does not "
                              "share its port with another process");
        throw_errno("bind(AF_UNIX)");
    }
    lock_fd_ = lock.fd;
    lock.fd = -1;
}

port_claim::~port_claim() {
    release();
}

void port_claim::release() noexcept {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
}

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
    : w_(w), acceptor_(std::move(acceptor)), backoff_(w.ioc) {
    // The worker's epoll set of client sockets (one descriptor) exists from the start, not from
    // its first connection: the process's descriptor count does not step up later.
    fd_reactor::of(w.ioc);
}

void listener::start() {
    do_accept();
}

void listener::stop() {
    error_code ec;
    acceptor_.close(ec);
    backoff_.cancel();
}

void listener::do_accept() {
    acceptor_.async_accept(w_.ioc, [self = shared_from_this()](error_code ec, stream_socket s) {
        self->on_accept(ec, std::move(s));
    });
}

void listener::on_accept(error_code ec, stream_socket socket) {
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
    if (w_.tls()) {
        try {
            tls = std::make_unique<tls::channel>(*w_.tls());
        } catch (const std::bad_alloc&) {
            spdlog::warn("accept: no memory for a TLS session; closing the connection");
            do_accept();
            return;  // the socket and its slot are released here
        }
    }
    // The socket's peer, once per connection: behind a proxy this is the proxy.
    error_code e;
    const auto ep = socket.remote_endpoint(e);
    const auto peer = e ? asio::ip::address() : auth::unmap(ep.address());
    const bool over = open > w_.cfg.limits.max_connections;
    if (over) w_.rejects.note(reject_log::reason::max_connections, e ? "?" : peer.to_string());
    // The socket leaves Asio's reactor: its readiness comes from the worker's fd_reactor.
    socket_fd fd(socket.release(e));
    if (!fd.is_open()) {
        do_accept();
        return;
    }
    auto session = std::make_shared<http_session>(
        w_, link{std::move(fd), std::move(slot), std::move(tls), peer});
    // Over the limit the connection is still read, so the client gets a clear 503 rather than
    // a reset; it is closed after that one answer.
    if (over) session->refuse_with(metrics::reject::over_capacity);
    session->start();
    do_accept();
}

}  // namespace herald::net
