#include "herald/net/connection.hpp"

#include "herald/hub/hub.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

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
        if (now >= c->close_deadline_)
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

connection::connection(worker_context& w, tcp::socket socket, connection_slot slot,
                       metrics::transport t)
    : w_(w),
      socket_(std::move(socket)),
      last_write_(clock::now()),
      slot_(std::move(slot)),
      transport_(t) {
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

bool connection::enqueue(chunk c, bool force) {
    if (closed_ || (slow_ && !force)) return false;
    if (!force && queued_bytes_ + c.size > w_.cfg.limits.max_queued_bytes) {
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
    if (!flush_wanted_ && !writing_) {
        flush_wanted_ = true;
        w_.want_flush(shared_from_this());
    }
    return true;
}

void connection::flush() {
    if (closed_ || writing_) return;
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
                if (!bufs.empty() && static_cast<const char*>(bufs.back().data()) +
                                             bufs.back().size() == at) {
                    bufs.back() = asio::const_buffer(bufs.back().data(), bufs.back().size() + n);
                    continue;
                }
                bufs.emplace_back(at, n);
                continue;
            }
            bufs.emplace_back(c.data + skip, n);
        }
        error_code ec;
        const std::size_t written = socket_.write_some(bufs, ec);
        w_.counters.write_calls.add(1);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            do_wait_writable();
            return;
        }
        if (ec) {
            spdlog::debug("write failed: {}", ec.message());
            close_now();
            return;
        }
        w_.counters.bytes_out.add(static_cast<std::int64_t>(written));
        last_write_ = clock::now();
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
        error_code ec;
        socket_.shutdown(tcp::socket::shutdown_send, ec);
        close_now();
    }
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

std::pair<tcp::socket, connection_slot> connection::hand_over() {
    closed_ = true;
    w_.detach(*this);
    return {std::move(socket_), std::move(slot_)};
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
}

void connection::wait_readable() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
        if (ec || self->closed_) return;
        self->on_readable();
    });
}

std::size_t connection::read_some(error_code& ec) {
    auto& buf = w_.scratch();
    std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        return 0;
    }
    return n;
}

}  // namespace herald::net
