#include "fd_reactor.hpp"

#include "connection.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <system_error>

#include <unistd.h>

namespace herald::net {

void socket_fd::reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

fd_reactor::fd_reactor(asio::execution_context& ctx)
    : asio::execution_context::service(ctx), ioc_(static_cast<asio::io_context&>(ctx)) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
        throw std::system_error(errno, std::system_category(), "epoll_create1 (client sockets)");
    ep_.emplace(ioc_, epfd_);  // owns epfd_ from here on
    batch_.reserve(events_.size());
}

fd_reactor::~fd_reactor() = default;

fd_reactor& fd_reactor::of(asio::io_context& ioc) {
    return asio::use_service<fd_reactor>(ioc);
}

bool fd_reactor::add(connection& c) noexcept {
    if (down_) return false;
    epoll_event ev{};
    ev.events = c.fd_events_;
    ev.data.ptr = &c;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, c.socket_.get(), &ev) == 0;
}

void fd_reactor::remove(connection& c) noexcept {
    if (down_) return;
    epoll_event ev{};
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c.socket_.get(), &ev);
}

bool fd_reactor::rearm(connection& c, std::uint32_t events) noexcept {
    if (down_) return false;
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    return ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c.socket_.get(), &ev) == 0;
}

void fd_reactor::link(connection& c) noexcept {
    c.held_prev_ = nullptr;
    c.held_next_ = held_;
    if (held_) held_->held_prev_ = &c;
    held_ = &c;
    if (!waiting_ && !posted_ && !down_) wait();
}

void fd_reactor::unlink(connection& c) noexcept {
    if (c.held_prev_)
        c.held_prev_->held_next_ = c.held_next_;
    else if (held_ == &c)
        held_ = c.held_next_;
    if (c.held_next_) c.held_next_->held_prev_ = c.held_prev_;
    c.held_prev_ = c.held_next_ = nullptr;
    // No connection waits: the io_context may run out of work, as it did when the last pending
    // operation on a socket completed (ioc.run() returns in tests).
    if (!held_ && waiting_ && batch_.empty()) {
        waiting_ = false;
        error_code ignored;
        ep_->cancel(ignored);
    }
}

void fd_reactor::wait() {
    waiting_ = true;
    ep_->async_wait(asio::posix::descriptor_base::wait_read, [this](error_code ec) {
        if (ec) return;  // cancelled: waiting_ was cleared by whoever cancelled
        waiting_ = false;
        on_ready();
    });
}

void fd_reactor::on_ready() {
    const int n = ::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), 0);
    // Every pointer in events_ is valid until a handler runs (a connection leaves the set when
    // its socket closes or is handed over), so the ready ones are taken first, each with a
    // reference that keeps it alive until the whole pass ends.
    for (int i = 0; i < n; ++i) {
        auto* c = static_cast<connection*>(events_[i].data.ptr);
        const std::uint32_t e = events_[i].events;
        const bool rd = c->read_waiting_ && (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
        const bool wr = c->writing_ && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP));
        if (!rd && !wr) continue;  // nothing waits: the next wait re-registers (rearm)
        batch_.push_back({c->self_, rd, wr});
    }
    for (auto& r : batch_) r.c->on_ready(r.read, r.write);
    batch_.clear();  // connections that no longer wait and nothing else holds end here
    if (down_) return;
    if (n == static_cast<int>(events_.size())) {
        // More may be ready: go on after what else is queued, not in this handler.
        posted_ = true;
        asio::post(ioc_, [this] {
            posted_ = false;
            if (!down_) on_ready();
        });
        return;
    }
    if (held_ && !waiting_) wait();
}

void fd_reactor::shutdown() {
    // The io_context is going: release every connection that holds itself, as Asio destroyed
    // their pending operations (and with them the references they held).
    down_ = true;  // from here on add/remove/rearm do nothing: epfd_ closes now
    waiting_ = false;
    ep_.reset();
    epfd_ = -1;
    while (held_) {
        connection* c = held_;
        unlink(*c);
        auto self = std::move(c->self_);
        c->read_waiting_ = false;
        c->writing_ = false;
        c->holds_ = 0;
        self.reset();
    }
}

}  // namespace herald::net
