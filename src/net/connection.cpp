#include "herald/net/connection.hpp"

#include "herald/hub/hub.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include <sys/ioctl.h>

namespace herald::net {

chunk chunk::of_string(std::string s) {
    auto p = std::make_shared<const std::string>(std::move(s));
    return {std::shared_ptr<const void>(p), p->data(), p->size()};
}

// ---- worker_context ------------------------------------------------------------------------

worker_context::worker_context(unsigned id_, asio::io_context& ioc_, const config::settings& cfg_,
                               hub::shard& shard_, broker::broker& broker_,
                               metrics::worker_counters& counters_, process_state& state_,
                               http_api& api_)
    : id(id_),
      ioc(ioc_),
      cfg(cfg_),
      shard(shard_),
      broker(broker_),
      counters(counters_),
      state(state_),
      api(api_),
      scratch_(64 * 1024, '\0'),
      pack_(64 * 1024, '\0') {
    gather_.reserve(k_max_gather);
}

void worker_context::want_flush(const std::shared_ptr<connection>& c) {
    pending_flush_.push_back(c);
    if (flush_posted_) return;
    flush_posted_ = true;
    // A busy worker (its last pass wrote to many connections) lets at least as long pass
    // between two flush passes as the last one took, capped: what arrives meanwhile joins the
    // same writes, so a burst costs one sendmsg per connection instead of one per loop turn,
    // and the worker spends at most about half its time in flush passes. Any other worker
    // flushes at the end of this loop turn.
    if (last_pass_writers_ >= k_cork_min_connections) {
        const auto due = last_pass_end_ + std::min(last_pass_length_, k_max_cork_delay);
        if (clock::now() < due) {
            // The timer is owned by its handler, so the io_context can destroy it at shutdown.
            auto t = std::make_shared<asio::steady_timer>(ioc, due);
            t->async_wait([this, t](error_code ec) {
                if (!ec) flush_pass();
            });
            counters.corked_flushes.add();
            return;
        }
    }
    asio::post(ioc, [this] { flush_pass(); });
}

void worker_context::flush_pass() {
    const auto start = clock::now();
    flush_posted_ = false;
    auto batch = std::move(pending_flush_);
    pending_flush_.clear();
    last_pass_writers_ = batch.size();
    for (auto& c : batch) {
        c->flush_wanted_ = false;
        if (c->closed_) continue;
        if (c->slow_)
            c->on_slow_consumer();
        else
            c->flush();
    }
    batch.clear();
    if (pending_flush_.empty()) pending_flush_.swap(batch);  // keep the capacity
    last_pass_end_ = clock::now();
    last_pass_length_ = last_pass_end_ - start;
}

void worker_context::attach(connection& c) noexcept {
    c.next_ = head_;
    c.prev_ = nullptr;
    if (head_) head_->prev_ = &c;
    head_ = &c;
    c.attached_ = true;
    count_.fetch_add(1, std::memory_order_relaxed);
}

void worker_context::detach(connection& c) noexcept {
    if (!c.attached_) return;
    if (c.prev_)
        c.prev_->next_ = c.next_;
    else
        head_ = c.next_;
    if (c.next_) c.next_->prev_ = c.prev_;
    c.prev_ = c.next_ = nullptr;
    c.attached_ = false;
    count_.fetch_sub(1, std::memory_order_relaxed);
}

void worker_context::tick(time_point now) {
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        if (now >= c->close_deadline_ || (c->lingering_ && c->linger_done()))
            c->close_now();
        else
            c->on_tick(now);
        c = next;
    }
}

std::size_t worker_context::revoke(std::string_view user) {
    std::size_t n = 0;
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        if (c->revoke(user)) ++n;
        c = next;
    }
    return n;
}

void worker_context::drain() {
    for (connection* c = head_; c;) {
        connection* next = c->next_;
        auto keep = c->shared_from_this();
        c->on_drain();
        c = next;
    }
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
        std::size_t left = written;
        while (left > 0) {
            auto& c = queue_[head_];
            const std::size_t rest = c.size - head_sent_;
            if (left >= rest) {
                left -= rest;
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
        socket_.shutdown(tcp::socket::shutdown_send, ec);
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
    socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
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
    return {std::move(socket_), std::move(slot_), std::move(tls_)};
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
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
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

// ---- TLS -----------------------------------------------------------------------------------
//
// The scratch buffer's last k_tls_raw bytes take ciphertext from the socket; plaintext is
// decrypted into the rest, where the sessions expect it.
namespace {
constexpr std::size_t k_tls_raw = 16 * 1024;
constexpr std::size_t k_tls_record = 16 * 1024;  // plaintext per TLS record at most
constexpr std::size_t k_tls_batch = 64 * 1024;   // plaintext encrypted per write at most
}  // namespace

std::size_t connection::read_tls(error_code& ec) {
    auto& buf = w_.scratch();
    const std::size_t plain_cap = buf.size() - k_tls_raw;
    for (;;) {
        std::size_t n = 0;
        const auto r = tls_->read(buf.data(), plain_cap, n);
        if (!tls_established_ && tls_->handshake_done()) {
            tls_established_ = true;
            w_.counters.tls_handshakes.add(1);
        }
        if (tls_->has_output()) schedule_flush();  // handshake messages, tickets, alerts
        switch (r) {
            case tls::channel::result::data: return n;
            case tls::channel::result::closed: ec = asio::error::eof; return 0;
            case tls::channel::result::error:
                w_.counters.tls_errors.add(1);
                spdlog::debug("tls: {}", tls_->last_error());
                ec = asio::error::connection_aborted;
                return 0;
            case tls::channel::result::want_input: break;
        }
        const std::size_t got =
            socket_.read_some(asio::buffer(buf.data() + plain_cap, k_tls_raw), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            return 0;
        }
        if (ec) {
            // A peer that never finished its handshake (a plain-HTTP client, a scanner) is
            // counted once, when it goes.
            if (!tls_established_ && ec == asio::error::eof) w_.counters.tls_errors.add(1);
            return 0;
        }
        if (!tls_established_ && !tls_->handshake_started() && buf[plain_cap] != 0x16) {
            // Not a TLS handshake record: most likely plain HTTP sent to this HTTPS port. Say
            // so in plain HTTP (as nginx does) rather than with a TLS alert nobody can read.
            static constexpr std::string_view k_plain_answer =
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                "Content-Length: 91\r\nConnection: close\r\n\r\n"
                "{\"error\":{\"code\":\"tls_required\",\"message\":\"this port speaks TLS: "
                "use https:// or wss://\"}}\n";
            error_code ignored;
            socket_.write_some(asio::buffer(k_plain_answer), ignored);
            w_.counters.tls_errors.add(1);
            w_.counters.inc(metrics::reject::tls_required);
            ec = asio::error::connection_aborted;
            return 0;
        }
        tls_->feed(buf.data() + plain_cap, got);
    }
}

bool connection::encrypt_queued() {
    // Frames are coalesced into records of up to 16 KiB (one MAC and one header per record, not
    // per frame); a chunk of a record's size or more is encrypted where it lies. The staging
    // buffer is the one plain writes pack small chunks into.
    auto& stage = w_.pack();
    std::size_t staged = 0;
    std::size_t done = 0;
    auto seal = [&]() {
        const bool ok = tls_->write(stage.data(), staged);
        staged = 0;
        return ok;
    };
    while (head_ < queue_.size() && done < k_tls_batch) {
        auto& c = queue_[head_];
        if (c.size >= k_tls_record) {
            if (staged > 0 && !seal()) return false;
            if (!tls_->write(c.data, c.size)) return false;
        } else {
            if (staged + c.size > k_tls_record && !seal()) return false;
            std::memcpy(stage.data() + staged, c.data, c.size);
            staged += c.size;
        }
        done += c.size;
        queued_bytes_ -= c.size;
        c.hold.reset();
        ++head_;
    }
    return staged == 0 || seal();
}

void connection::flush_tls() {
    for (;;) {
        const auto out = tls_->output();
        if (!out.empty()) {
            std::size_t written = 0;
            if (!write_now(asio::buffer(out), written)) return;
            tls_->consume_output(written);
            continue;
        }
        if (head_ >= queue_.size()) break;
        if (!encrypt_queued()) {
            w_.counters.tls_errors.add(1);
            spdlog::debug("tls: {}", tls_->last_error());
            close_now();
            return;
        }
    }
    on_flushed();
}

}  // namespace herald::net
