#pragma once
// One acceptor per worker, all bound to the same address with SO_REUSEPORT: the kernel spreads
// new connections over the workers, and a connection stays on the worker that accepted it.
#include "herald/common/net.hpp"
#include "herald/net/worker_context.hpp"

#include <memory>

namespace herald::net {

// Opens, binds (SO_REUSEADDR + SO_REUSEPORT) and listens; throws boost::system::system_error.
[[nodiscard]] tcp::acceptor open_acceptor(asio::io_context& ioc, const tcp::endpoint& ep);

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(worker_context& w, tcp::acceptor acceptor);
    void start();
    void stop();  // runs on the worker

private:
    void do_accept();
    void on_accept(error_code ec, tcp::socket socket);

    worker_context& w_;
    tcp::acceptor acceptor_;
    asio::steady_timer backoff_;
};

}  // namespace herald::net
