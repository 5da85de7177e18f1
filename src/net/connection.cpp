#include "connection.hpp"

#include "herald/hub/hub.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include <sys/ioctl.h>
#include <unistd.h>

namespace herald::net {

chunk chunk::of_string(std::string s) {
    auto p = std::make_shared<const std::string>(std::move(s));
    return {std::shared_ptr<const void>(p), p->data(), p->size()};
}

link link_over(asio::io_context& ioc, int fd, asio::ip::address peer, error_code& ec) {
    // The protocol only names the socket type: no TCP-specific operation is used on it.
    stream_socket s(ioc);
    s.assign(tcp::v4(), fd, ec);
    if (ec) {
        ::close(fd);
        return {stream_socket(ioc), {}, nullptr, {}};
    }
    s.non_blocking(true, ec);
    return {std::move(s), {}, nullptr, peer};
}

// ---- connection ----------------------------------------------------------------------------

connection::connection(worker_context& w, link l, metrics::transport t)
    : w_(w),
      socket_(std::move(l.socket)),
      last_write_(clock::now()),
      slot_(std::move(l.slot)),
      tls_(std::move(l.tls)),
      transport_(t) {
    tls_established_ = tls_ && tls_->handshake_done();
    w_.counters.conn(t).add(1);
    w_.counters.connections_total[static_cast<std::size_t>(t)].add(1);
    w_.attach(*this);
}

connection::~connection() {
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

void connection::schedule_flush() {
    if (!flush_wanted_ && !writing_) {
        flush_wanted_ = true;
        w_.want_flush(shared_from_this());
    }
}

template <class Buffers>
bool connection::write_now(const Buffers& bufs, std::size_t& written) {
    error_code ec;
    written = socket_.write_some(bufs, ec);
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
    auto& pack = w_.pack();
    while (head_ < queue_.size()) {
        bufs.clear();
        std::size_t packed = 0;
        for (std::size_t i = head_; i < queue_.size() && bufs.size() < k_max_gather; ++i) {
            const auto& c = queue_[i];
            const std::size_t skip = (i == head_) ? head_sent_ : 0;
            const std::size_t n = c.size - skip;
            if (n <= k_pack_max && packed + n <= pack.size()) {
                char* at = pack.data() + packed;
                std::memcpy(at, c.data + skip, n);
                packed += n;
                if (!bufs.empty() &&
                    static_cast<const char*>(bufs.back().data()) + bufs.back().size() == at) {
                    bufs.back() = asio::const_buffer(bufs.back().data(), bufs.back().size() + n);
                    continue;
                }
                bufs.emplace_back(at, n);
                continue;
            }
            bufs.emplace_back(c.data + skip, n);
        }
        std::size_t written = 0;
        if (!write_now(bufs, written)) return;
        queued_bytes_ -= written;
        time_point now{};
        std::size_t left = written;
        while (left > 0) {
            auto& c = queue_[head_];
            const std::size_t rest = c.size - head_sent_;
            if (left >= rest) {
                left -= rest;
                sent(c, now);
                c.hold.reset();
                ++head_;
                head_sent_ = 0;
            } else {
                head_sent_ += left;
                left = 0;
            }
        }
    }
    on_flushed();
}

void connection::on_flushed() {
    queue_.clear();
    head_ = 0;
    head_sent_ = 0;
    if (queue_.capacity() > 64) queue_.shrink_to_fit();
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
        error_code ec;
        socket_.shutdown(stream_socket::shutdown_send, ec);
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
        socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
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
    if (::ioctl(socket_.native_handle(), TIOCOUTQ, &unsent) != 0) return true;
    return unsent == 0;
}

void connection::do_wait_writable() {
    writing_ = true;
    socket_.async_wait(stream_socket::wait_write, [self = shared_from_this()](error_code ec) {
        self->writing_ = false;
        if (ec || self->closed_) return;
        self->flush();
    });
}

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
    unhold(static_cast<hold_reason>(hold_parked | hold_session));
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
    error_code ec;
    socket_.close(ec);
    w_.detach(*this);
    queue_.clear();
    queued_bytes_ = 0;
    read_parked_ = false;
    unhold(static_cast<hold_reason>(hold_parked | hold_session));
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
    if (holds_ == 0) {
        if (!hold_timer_) hold_timer_ = std::make_unique<asio::steady_timer>(w_.ioc);
        hold_timer_->expires_at(asio::steady_timer::time_point::max());
        hold_timer_->async_wait([self = shared_from_this()](error_code) {});
    }
    holds_ |= why;
}

void connection::unhold(hold_reason why) noexcept {
    if (holds_ == 0) return;
    holds_ &= ~static_cast<unsigned>(why);
    // The wait completes (operation_aborted) on a later turn and drops its reference there,
    // never inside the caller.
    if (holds_ == 0) hold_timer_->cancel();
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
    socket_.async_wait(stream_socket::wait_read, [self = shared_from_this()](error_code ec) {
        self->read_armed_ = false;
        if (ec || self->closed_) return;
        if (self->lingering_)
            self->linger_read();
        else
            self->on_readable();
    });
}

std::size_t connection::read_some(error_code& ec) {
    if (tls_) return read_tls(ec);
    auto& buf = w_.scratch();
    std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        return 0;
    }
    return n;
}

}  // namespace herald::net
