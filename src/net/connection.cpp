#include "connection.hpp"

#include "herald/hub/hub.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace herald::net {

chunk chunk::of_string(std::string s) {
    auto p = std::make_shared<const std::string>(std::move(s));
    return {std::shared_ptr<const void>(p), p->data(), p->size()};
}

link link_over(asio::io_context& /*ioc*/, int fd, asio::ip::address peer, error_code& ec) {
    socket_fd s(fd);
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        ec = error_code(errno, asio::error::get_system_category());
        return {};
    }
    return {std::move(s), {}, nullptr, peer};
}

// ---- connection ----------------------------------------------------------------------------

connection::connection(worker_context& w, link l, metrics::transport t)
    : w_(w),
      last_write_(clock::now()),
      socket_(std::move(l.socket)),
      fd_events_(EPOLLIN | EPOLLET),
      transport_(t),
      slot_(std::move(l.slot)),
      tls_(std::move(l.tls)) {
    // prefetch_enqueue()'s span covers what enqueue() and schedule_flush() touch (offsetof on
    // a class with virtual functions: GCC and Clang lay it out as the Itanium ABI says).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
    static_assert(offsetof(connection, queued_bytes_) + sizeof(queued_bytes_) <= k_enqueue_span);
    static_assert(offsetof(connection, tls_) + sizeof(tls_) <= k_enqueue_span);
#pragma GCC diagnostic pop
    tls_established_ = tls_ && tls_->handshake_done();
    w_.counters.conn(t).add(1);
    w_.counters.connections_total[static_cast<std::size_t>(t)].add(1);
    w_.attach(*this);
    registered_ = socket_.is_open() && fd_reactor::of(w_.ioc).add(*this);
    if (!registered_ && socket_.is_open())
        spdlog::warn("epoll: cannot watch a client socket: {}", std::strerror(errno));
}

connection::~connection() {
    // socket_ closes the descriptor, which takes it out of the fd_reactor's set (no copy of it
    // exists: herald never forks); the reactor may already be gone when the io_context is.
    w_.detach(*this);
    w_.counters.conn(transport_).add(-1);
}

void connection::set_transport(metrics::transport t) noexcept {
    w_.counters.conn(transport_).add(-1);
    transport_ = t;
    w_.counters.conn(t).add(1);
    w_.counters.connections_total[static_cast<std::size_t>(t)].add(1);
}

std::size_t connection::output_bytes() const noexcept {
    return queued_bytes_ + (tls_ ? tls_->output_bytes() : 0);
}

std::size_t connection::held_bytes() const noexcept {
    return output_bytes() + (tls_ ? tls_->input_bytes() : 0) + session_held_bytes();
}

std::size_t connection::budget() const noexcept {
    const auto& c = w_.cfg;
    return c.limits.max_queued_bytes + c.http.max_header_bytes + c.limits.max_message_bytes +
           k_read_allowance;
}

bool connection::enqueue(chunk c, bool force) {
    if (closed_ || lingering_ || (slow_ && !force)) return false;
    if (c.size == 0) return true;  // nothing for the wire (and a flush could not advance past it)
    if (!force && output_bytes() + c.size > w_.cfg.limits.max_queued_bytes) {
        slow_ = true;
        w_.counters.slow_consumers[static_cast<std::size_t>(transport_)].add(1);
        if (!flush_wanted_) {
            flush_wanted_ = true;
            w_.want_flush(shared_from_this());
        }
        return false;
    }
    queued_bytes_ += c.size;
    queue_.push_back(std::move(c));
    schedule_flush();
    return true;
}

template <class Buffers>
bool connection::write_now(const Buffers& bufs, std::size_t& written) {
    error_code ec;
    written = sock_write(bufs, ec);
    w_.counters.write_calls.add(1);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        do_wait_writable();
        after_write();
        return false;
    }
    if (ec) {
        spdlog::debug("write failed: {}", ec.message());
        close_now();
        return false;
    }
    w_.counters.bytes_out.add(static_cast<std::int64_t>(written));
    last_write_ = clock::now();
    return true;
}
// The TLS path (tls_records.cpp) writes one contiguous run of ciphertext.
template bool connection::write_now<asio::const_buffer>(const asio::const_buffer&, std::size_t&);

void connection::flush() {
    on_flush_begin();
    if (closed_ || writing_) return;
    if (tls_) {
        flush_tls();
        return;
    }
    // The worker's gather list: reused, so a flush neither allocates nor initialises 64 slots.
    auto& bufs = w_.gather();
    // Locals, not members: the copies below could write anywhere as far as the compiler knows,
    // and this loop runs once per delivery.
    char* const pack = w_.pack().data();
    const std::size_t pack_size = w_.pack().size();
    while (head_ < queue_.size()) {
        bufs.clear();
        const chunk* const q = queue_.data();
        const std::size_t qn = queue_.size();
        // Small chunks are copied one after another into the pack; its bytes [run, packed) are
        // the gather entry still open (a chunk too large for the pack closes it).
        std::size_t packed = 0;
        std::size_t run = 0;
        for (std::size_t i = head_; i < qn; ++i) {
            if (bufs.size() + (packed > run ? 1 : 0) >= k_max_gather) break;
            const std::size_t skip = (i == head_) ? head_sent_ : 0;
            const char* from = q[i].data + skip;
            const std::size_t n = q[i].size - skip;
            if (n <= k_pack_max && packed + n <= pack_size) {
                std::memcpy(pack + packed, from, n);
                packed += n;
                continue;
            }
            if (packed > run) bufs.emplace_back(pack + run, packed - run);
            run = packed;
            bufs.emplace_back(from, n);
        }
        if (packed > run) bufs.emplace_back(pack + run, packed - run);
        std::size_t written = 0;
        if (!write_now(bufs, written)) return;
        queued_bytes_ -= written;
        time_point now{};
        if (queued_bytes_ == 0) {
            // Everything went (the common case): on_flushed() releases the chunks in one pass.
            sent_all(queue_.data() + head_, queue_.data() + queue_.size(), now);
            break;
        }
        // Every chunk the write finished leaves the queue; the loop ends at the first one it did
        // not, so a pass always advances (a write of zero bytes only when nothing was left).
        std::size_t left = written;
        while (head_ < queue_.size()) {
            auto& c = queue_[head_];
            const std::size_t rest = c.size - head_sent_;
            if (left < rest) {
                head_sent_ += left;
                break;
            }
            left -= rest;
            sent(c, now);
            c.hold.reset();
            ++head_;
            head_sent_ = 0;
        }
    }
    on_flushed();
}

void connection::on_flushed() {
    queue_.clear();
    head_ = 0;
    head_sent_ = 0;
    if (queue_.capacity() > 64) queue_.shrink_to_fit();
    if (trim_flushed_) {
        trim_flushed_ = false;
        std::vector<chunk>().swap(queue_);
    }
    if (close_when_flushed_) {
        if (lingering_) return;
        if (tls_ && !tls_shutdown_sent_) {
            // close_notify first, so the peer can tell our close from a truncation.
            tls_shutdown_sent_ = true;
            tls_->shutdown();
            if (tls_->has_output()) {
                flush_tls();  // comes back here once written (or the close deadline ends it)
                return;
            }
        }
        ::shutdown(socket_.get(), SHUT_WR);
        start_linger();
        return;
    }
    after_write();
}

void connection::after_write() {
    if (closed_) return;
    if (read_parked_) resume_reading();
    if (room_wanted_ && output_bytes() <= room_mark_) {
        room_wanted_ = false;
        asio::post(w_.ioc, [self = shared_from_this()] {
            if (!self->closed_) self->on_output_room();
        });
    }
}

void connection::want_room(std::size_t mark) {
    room_wanted_ = true;
    room_mark_ = mark;
    if (!writing_) after_write();  // already there: no write would come to say so
}

void connection::start_linger() {
    lingering_ = true;
    arm_close_deadline(k_linger_time);
    read_parked_ = false;
    if (!read_armed_) arm_read();
    unhold(hold_parked);  // the read wait holds a reference from here on
}

void connection::linger_read() {
    auto& buf = w_.scratch();
    for (int i = 0; i < 4; ++i) {
        error_code ec;
        sock_read(buf.data(), buf.size(), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec) {
            close_now();  // EOF: the peer has read what it wanted
            return;
        }
    }
    if (linger_done()) {
        close_now();
        return;
    }
    arm_read();
}

bool connection::linger_done() noexcept {
    // Everything we sent has been acknowledged by the peer's TCP: an RST caused by input we did
    // not read can no longer destroy an answer (Linux hands queued data to the reader first).
    int unsent = 0;
    if (::ioctl(socket_.get(), TIOCOUTQ, &unsent) != 0) return true;
    return unsent == 0;
}

void connection::do_wait_writable() {
    writing_ = true;
    keep_self();
    fd_events_ |= EPOLLOUT;
    if (!registered_ || !fd_reactor::of(w_.ioc).rearm(*this, fd_events_)) fail_later();
}

void connection::on_ready(bool read, bool write) {
    // A write wait first, then the read, as Asio ran them.
    if (write && writing_) {
        writing_ = false;
        if (!closed_) flush();
    }
    if (read && read_waiting_) {
        read_waiting_ = false;
        read_armed_ = false;
        if (!closed_) {
            if (lingering_)
                linger_read();
            else
                on_readable();
        }
    }
    // The caller (the reactor's pass) holds a reference until the pass ends.
    if (self_ && !needs_self()) {
        fd_reactor::of(w_.ioc).unlink(*this);
        self_.reset();
    }
}

void connection::keep_self() {
    if (self_) return;
    self_ = shared_from_this();
    fd_reactor::of(w_.ioc).link(*this);
}

void connection::drop_self() {
    if (!self_ || needs_self()) return;
    fd_reactor::of(w_.ioc).unlink(*this);
    asio::post(w_.ioc, [self = std::move(self_)] {});
}

void connection::fail_later() {
    asio::post(w_.ioc, [self = shared_from_this()] {
        self->writing_ = false;
        self->read_waiting_ = false;
        self->read_armed_ = false;
        self->close_now();
    });
}

std::size_t connection::sock_read(char* buf, std::size_t n, error_code& ec) noexcept {
    for (;;) {
        const ssize_t r = ::recv(socket_.get(), buf, n, 0);
        if (r > 0) {
            ec = {};
            return static_cast<std::size_t>(r);
        }
        if (r == 0) {
            ec = n ? error_code(asio::error::eof) : error_code();
            return 0;
        }
        if (errno == EINTR) continue;
        ec = error_code(errno, asio::error::get_system_category());
        return 0;
    }
}

template <class Buffers>
std::size_t connection::sock_write(const Buffers& bufs, error_code& ec) noexcept {
    std::array<iovec, k_max_gather> iov;
    std::size_t count = 0;
    for (auto it = asio::buffer_sequence_begin(bufs);
         it != asio::buffer_sequence_end(bufs) && count < iov.size(); ++it) {
        const asio::const_buffer b(*it);
        if (b.size() == 0) continue;
        iov[count].iov_base = const_cast<void*>(b.data());
        iov[count].iov_len = b.size();
        ++count;
    }
    ec = {};
    if (count == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    for (;;) {
        const ssize_t r = ::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL);
        if (r >= 0) return static_cast<std::size_t>(r);
        if (errno == EINTR) continue;
        ec = error_code(errno, asio::error::get_system_category());
        return 0;
    }
}
// The TLS path (tls_records.cpp) writes one contiguous run.
template std::size_t connection::sock_write<asio::const_buffer>(const asio::const_buffer&,
                                                                error_code&) noexcept;

void connection::drop_queue() noexcept {
    std::size_t keep = head_;
    if (head_ < queue_.size() && head_sent_ > 0) ++keep;  // a chunk partly on the wire must finish
    for (std::size_t i = keep; i < queue_.size(); ++i) queued_bytes_ -= queue_[i].size;
    queue_.resize(keep);
}

void connection::close_after_flush(milliseconds grace) {
    close_when_flushed_ = true;
    arm_close_deadline(grace);
    if (idle_output()) on_flushed();
}

link connection::hand_over() {
    closed_ = true;
    read_parked_ = false;
    if (registered_) fd_reactor::of(w_.ioc).remove(*this);
    registered_ = false;
    read_armed_ = read_waiting_ = writing_ = false;
    holds_ = 0;
    drop_self();
    w_.detach(*this);
    return {std::move(socket_), std::move(slot_), std::move(tls_), {}};
}

void connection::arm_close_deadline(milliseconds grace) noexcept {
    close_deadline_ = std::min(close_deadline_, clock::now() + grace);
}

void connection::close_now() {
    if (closed_) return;
    closed_ = true;
    on_close();
    // Out of the fd_reactor's set first (as Asio deregistered on close): closing alone would
    // leave it there while any copy of the descriptor lived. The pending waits end here (Asio
    // completed them with operation_aborted); the reference they held goes on a later turn.
    if (registered_) fd_reactor::of(w_.ioc).remove(*this);
    socket_.reset();
    registered_ = false;
    w_.detach(*this);
    queue_.clear();
    queued_bytes_ = 0;
    read_parked_ = false;
    read_armed_ = read_waiting_ = writing_ = false;
    holds_ = 0;
    drop_self();
    // The TLS session (about 12 KiB in OpenSSL 3.0) goes now, not when the last reference to this
    // connection does: a drain closes thousands within one flush pass.
    tls_.reset();
}

void connection::wait_readable() {
    if (closed_ || read_armed_ || lingering_) return;
    if (!may_read() || held_bytes() >= budget()) {
        read_parked_ = true;
        hold(hold_parked);
        return;
    }
    read_parked_ = false;
    arm_read();
    unhold(hold_parked);
}

void connection::hold(hold_reason why) {
    holds_ |= why;
    keep_self();
}

void connection::unhold(hold_reason why) noexcept {
    if (holds_ == 0) return;
    holds_ &= ~static_cast<unsigned>(why);
    drop_self();
}

void connection::resume_reading() {
    if (read_parked_) wait_readable();
}

void connection::arm_read() {
    read_armed_ = true;
    if (tls_ && tls_->has_input() && !lingering_) {
        // Records already inside the TLS session: the socket may never become readable again.
        asio::post(w_.ioc, [self = shared_from_this()] {
            self->read_armed_ = false;
            if (!self->closed_) self->on_readable();
        });
        return;
    }
    read_waiting_ = true;
    keep_self();
    if (!registered_ || !fd_reactor::of(w_.ioc).rearm(*this, fd_events_)) fail_later();
}

std::size_t connection::read_some(error_code& ec) {
    if (tls_) return read_tls(ec);
    auto& buf = w_.scratch();
    std::size_t n = sock_read(buf.data(), buf.size(), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        return 0;
    }
    return n;
}

}  // namespace herald::net
