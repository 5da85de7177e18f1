#pragma once
// One acceptor per worker, all bound to the same address with SO_REUSEPORT: the kernel spreads
// new connections over the workers, and a connection stays on the worker that accepted it.
#include "herald/common/net.hpp"
#include "herald/net/worker_context.hpp"

#include <memory>
#include <stdexcept>

namespace herald::net {

// Opens, binds (SO_REUSEADDR + SO_REUSEPORT) and listens; throws boost::system::system_error.
[[nodiscard]] tcp::acceptor open_acceptor(asio::io_context& ioc, const tcp::endpoint& ep);

// SO_REUSEPORT would let any process of the same user join the port, and the kernel would split
// clients between two independent instances. Before the workers bind, this claims the address
// for this process: a lock named after it (an abstract Unix socket, released by the kernel when
// the process ends) closes the race between two heralds starting together, and a probe bound
// without SO_REUSEPORT fails if anyone already listens there. Port 0 is resolved to the port the
// probe got. Held while the workers listen; release() at drain lets a new instance start.
class port_claim {
public:
    // Throws port_in_use (the message names the address) or boost::system::system_error.
    explicit port_claim(tcp::endpoint& ep);
    port_claim(const port_claim&) = delete;
    port_claim& operator=(const port_claim&) = delete;
    ~port_claim();
    void release() noexcept;

private:
    int lock_fd_ = -1;
};

class port_in_use : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(worker_context& w, tcp::acceptor acceptor);
    void start();
    void stop();  // runs on the worker

private:
    void do_accept();
    void on_accept(error_code ec, stream_socket socket);

    worker_context& w_;
    tcp::acceptor acceptor_;
    asio::steady_timer backoff_;
};

}  // namespace herald::net
