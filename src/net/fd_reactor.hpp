#pragma once
// Readiness of client sockets, per worker, without Asio's per-socket state (issue 15).
//
// Asio gives every socket a descriptor state from its reactor (168 B) and every pending wait an
// operation (112 B); an idle connection always has a read wait pending, so it held 280 B of
// Asio's. Here every client socket of a worker sits in one epoll set of its own (edge-triggered,
// the event's pointer is the connection), and that set's descriptor is the only thing the
// worker's io_context waits on for them. A wait is two flags in the connection; what keeps a
// waiting connection alive is a reference it holds to itself (connection::self_), listed here so
// that the io_context's destruction releases it as it destroyed pending operations before.
//
// Arming a wait re-registers the socket (EPOLL_CTL_MOD), which reports it again if it is ready:
// Asio did the same for every async_wait, so no readiness is lost between an event and the next
// wait. Everything here runs on the worker's thread.
#include "herald/common/net.hpp"

#include <boost/asio/posix/basic_stream_descriptor.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <sys/epoll.h>

namespace herald::net {

class connection;

// Owns a connected, non-blocking stream socket's descriptor (closes it unless released).
class socket_fd {
public:
    socket_fd() = default;
    explicit socket_fd(int fd) noexcept : fd_(fd) {}
    socket_fd(socket_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    socket_fd& operator=(socket_fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~socket_fd() { reset(); }
    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept;

private:
    int fd_ = -1;
};

class fd_reactor final : public asio::execution_context::service {
public:
    static inline asio::execution_context::id id;  // NOLINT: Asio's service key
    explicit fd_reactor(asio::execution_context& ctx);
    ~fd_reactor() override;
    // The reactor of `ioc` (made on first use; cached per thread).
    static fd_reactor& of(asio::io_context& ioc);

    // Registers `c`'s socket (readable, edge-triggered); false (errno kept) when epoll refuses.
    bool add(connection& c) noexcept;
    void remove(connection& c) noexcept;
    // Re-registers with `events`: a socket ready for them is reported again.
    bool rearm(connection& c, std::uint32_t events) noexcept;
    // The list of connections that hold themselves (a wait or a hold is pending).
    void link(connection& c) noexcept;
    void unlink(connection& c) noexcept;

private:
    void shutdown() override;
    void wait();
    void on_ready();

    asio::io_context& ioc_;
    int epfd_ = -1;
    std::optional<asio::posix::basic_stream_descriptor<asio::io_context::executor_type>> ep_;
    bool waiting_ = false;  // a wait on ep_ is pending
    bool posted_ = false;   // on_ready() is posted (a full pass may have left more)
    bool down_ = false;     // shutdown() ran
    connection* held_ = nullptr;
    std::array<epoll_event, 256> events_{};
    // One pass's ready connections, kept alive until the pass ends (a handler may end another).
    struct ready {
        std::shared_ptr<connection> c;
        bool read;
        bool write;
    };
    std::vector<ready> batch_;
};

}  // namespace herald::net
