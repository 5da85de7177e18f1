#include "redis_sharded_link.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::broker {

namespace {

std::string_view str(const redisReply* r) {
    return {r->str, r->len};
}

bool is_push(const redisReply* r, std::string_view kind) {
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
           r->element[0]->type == REDIS_REPLY_STRING && str(r->element[0]) == kind;
}

void append_command(std::string& out, const std::vector<std::string_view>& argv) {
    out += '*';
    out += std::to_string(argv.size());
    out += "\r\n";
    for (auto a : argv) {
        out += '$';
        out += std::to_string(a.size());
        out += "\r\n";
        out += a;
        out += "\r\n";
    }
}

}  // namespace

redis_sharded_link::redis_sharded_link(asio::io_context& ioc, options opt, std::uint64_t seed)
    : ioc_(ioc),
      opt_(std::move(opt)),
      socket_(ioc),
      resolver_(ioc),
      timer_(ioc),
      backoff_(opt_.min_backoff),
      rng_(seed) {}

redis_sharded_link::~redis_sharded_link() {
    *alive_ = false;
    if (reader_ != nullptr) redisReaderFree(reader_);
}

void redis_sharded_link::start() {
    stopped_ = false;
    if (state_ == state::idle && opt_.endpoint.known()) do_connect();
}

void redis_sharded_link::stop() {
    stopped_ = true;
    timer_.cancel();
    resolver_.cancel();
    error_code ignored;
    socket_.close(ignored);
    state_ = state::idle;
}

void redis_sharded_link::retry_now() {
    if (stopped_ || state_ != state::waiting) return;
    timer_.cancel();
    do_connect();
}

void redis_sharded_link::set_endpoint(const redis_endpoint& ep) {
    if (ep == opt_.endpoint) return;
    opt_.endpoint = ep;
    if (stopped_) return;
    spdlog::info("redis sharded link: now {}", ep.name());
    if (state_ != state::idle && state_ != state::waiting) drop("the node moved");
    timer_.cancel();
    do_connect();
}

void redis_sharded_link::do_connect() {
    if (stopped_ || !opt_.endpoint.known()) return;
    ++conn_;
    state_ = state::connecting;
    timed_out_ = false;
    out_.clear();
    writing_.clear();
    write_pending_ = false;
    sent_.clear();
    if (reader_ != nullptr) redisReaderFree(reader_);
    reader_ = redisReaderCreate();
    arm_timer(clock::now() + opt_.connect_timeout);
    resolver_.async_resolve(opt_.endpoint.host, std::to_string(opt_.endpoint.port),
                            [this, alive = std::weak_ptr<bool>(alive_), c = conn_](
                                const error_code& ec, const tcp::resolver::results_type& results) {
                                if (alive.expired() || c != conn_ || state_ != state::connecting)
                                    return;
                                if (ec) {
                                    on_connect(ec);
                                    return;
                                }
                                asio::async_connect(
                                    socket_, results,
                                    [this, alive, c](const error_code& e, const tcp::endpoint&) {
                                        if (alive.expired() || c != conn_) return;
                                        on_connect(e);
                                    });
                            });
}

void redis_sharded_link::on_connect(const error_code& ec) {
    if (state_ != state::connecting) return;
    if (ec) {
        if (!quiet_)
            spdlog::warn("redis sharded link {}: connect: {}", opt_.endpoint.name(), ec.message());
        quiet_ = true;
        drop(nullptr);
        return;
    }
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    state_ = state::handshaking;
    last_reply_ = clock::now();
    if (!opt_.password.empty()) {
        if (opt_.username.empty())
            send({"AUTH", opt_.password}, kind::handshake);
        else
            send({"AUTH", opt_.username, opt_.password}, kind::handshake);
    }
    if (!opt_.client_name.empty()) send({"CLIENT", "SETNAME", opt_.client_name}, kind::handshake);
    send({"PING"}, kind::ping);
    do_read();
}

bool redis_sharded_link::send(const std::vector<std::string_view>& argv, kind k,
                              std::string channel) {
    if (state_ != state::up && state_ != state::handshaking) return false;
    append_command(out_, argv);
    sent_.push_back({k, std::move(channel), clock::now()});
    if (out_.size() + writing_.size() > opt_.max_buffer) {
        drop("output buffer over its bound");
        return false;
    }
    do_write();
    return true;
}

void redis_sharded_link::do_write() {
    if (write_pending_ || out_.empty()) return;
    writing_.swap(out_);
    out_.clear();
    write_pending_ = true;
    asio::async_write(
        socket_, asio::buffer(writing_),
        [this, alive = std::weak_ptr<bool>(alive_), c = conn_](const error_code& ec, std::size_t) {
            if (alive.expired() || c != conn_) return;
            on_write(ec);
        });
}

void redis_sharded_link::on_write(const error_code& ec) {
    write_pending_ = false;
    writing_.clear();
    if (ec) {
        drop("write failed");
        return;
    }
    do_write();
}

void redis_sharded_link::do_read() {
    socket_.async_read_some(asio::buffer(in_), [this, alive = std::weak_ptr<bool>(alive_),
                                                c = conn_](const error_code& ec, std::size_t n) {
        if (alive.expired() || c != conn_) return;
        on_read(ec, n);
    });
}

void redis_sharded_link::on_read(const error_code& ec, std::size_t n) {
    if (ec) {
        drop(ec == asio::error::eof ? "closed by the server" : "read failed");
        return;
    }
    if (redisReaderFeed(reader_, in_.data(), n) != REDIS_OK) {
        drop("protocol error");
        return;
    }
    const auto c = conn_;
    for (;;) {
        void* r = nullptr;
        if (redisReaderGetReply(reader_, &r) != REDIS_OK) {
            drop("protocol error");
            return;
        }
        if (r == nullptr) break;
        last_reply_ = clock::now();
        auto* reply = static_cast<redisReply*>(r);
        on_reply(reply);
        freeReplyObject(reply);
        // A callback may have dropped or moved the link: this connection's replies are void.
        if (c != conn_ || state_ == state::waiting || state_ == state::idle) return;
    }
    if (reader_->len - reader_->pos > opt_.max_buffer) {
        drop("a reply over the buffer bound");
        return;
    }
    do_read();
}

void redis_sharded_link::on_reply(redisReply* r) {
    if (is_push(r, "smessage")) {
        if (on_push) on_push(r);
        return;
    }
    const bool unsub = is_push(r, "sunsubscribe");
    // An unasked sunsubscribe (the node lost the slot) matches no command.
    if (unsub && (sent_.empty() || sent_.front().k != kind::sunsub ||
                  sent_.front().channel != str(r->element[1]))) {
        if (on_push) on_push(r);
        return;
    }
    if (sent_.empty()) {
        drop("a reply nobody asked for");
        return;
    }
    auto w = std::move(sent_.front());
    sent_.pop_front();
    switch (w.k) {
        case kind::handshake:
            if (r->type == REDIS_REPLY_ERROR) {
                spdlog::warn("redis sharded link {}: {}", opt_.endpoint.name(), str(r));
                drop(nullptr);
            }
            return;
        case kind::ping:
            if (r->type == REDIS_REPLY_ERROR) {
                spdlog::warn("redis sharded link {}: PING: {}", opt_.endpoint.name(), str(r));
                drop(nullptr);
                return;
            }
            if (state_ == state::handshaking) {
                state_ = state::up;
                up_since_ = clock::now();
                quiet_ = false;
                if (was_up_) ++reconnects_;
                was_up_ = true;
                spdlog::info("redis sharded link {} up", opt_.endpoint.name());
                arm_timer(clock::now() + opt_.ping_interval);
                if (on_up) on_up();
            }
            return;
        case kind::ssub:
            if (r->type == REDIS_REPLY_ERROR) {
                if (on_refused) on_refused(w.channel, r);
                return;
            }
            if (on_push) on_push(r);
            return;
        case kind::sunsub:
            if (on_push && r->type != REDIS_REPLY_ERROR) on_push(r);
            return;
    }
}

bool redis_sharded_link::subscribe(const std::vector<std::string>& channels) {
    if (state_ != state::up) return false;
    for (const auto& ch : channels)
        if (!send({"SSUBSCRIBE", ch}, kind::ssub, ch)) return false;
    return true;
}

bool redis_sharded_link::unsubscribe(const std::vector<std::string>& channels) {
    if (state_ != state::up) return false;
    for (const auto& ch : channels)
        if (!send({"SUNSUBSCRIBE", ch}, kind::sunsub, ch)) return false;
    return true;
}

void redis_sharded_link::arm_timer(time_point at) {
    timer_.expires_at(at);
    timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_), c = conn_](error_code ec) {
        if (ec || alive.expired() || c != conn_) return;
        on_timer();
    });
}

void redis_sharded_link::on_timer() {
    const auto now = clock::now();
    switch (state_) {
        case state::connecting:
        case state::handshaking:
            if (!quiet_)
                spdlog::warn("redis sharded link {}: connect timed out", opt_.endpoint.name());
            quiet_ = true;
            drop(nullptr, true);
            return;
        case state::up: {
            // Redis answers in order: only the oldest unanswered command's age matters, and only
            // while Redis sent nothing at all in that time.
            if (!sent_.empty() && now - sent_.front().sent >= opt_.command_timeout &&
                now - last_reply_ >= opt_.command_timeout) {
                drop("no answer within redis.command_timeout", true);
                return;
            }
            if (sent_.empty() && now - last_reply_ >= opt_.ping_interval)
                send({"PING"}, kind::ping);
            if (state_ != state::up) return;
            const auto step = std::min(opt_.ping_interval, opt_.command_timeout) / 2;
            arm_timer(now + std::max(step, milliseconds(10)));
            return;
        }
        case state::idle:
        case state::waiting: return;
    }
}

void redis_sharded_link::drop(const char* why, bool timed_out) {
    const bool was_up = state_ == state::up;
    if (why != nullptr && was_up)
        spdlog::warn("redis sharded link {} down: {}", opt_.endpoint.name(), why);
    ++conn_;  // every completion of this connection is void from now on
    timed_out_ = timed_out;
    error_code ignored;
    resolver_.cancel();
    socket_.close(ignored);
    socket_ = tcp::socket(ioc_);
    timer_.cancel();
    sent_.clear();
    out_.clear();
    writing_.clear();
    write_pending_ = false;
    // Only a connection that stayed up a while earns a fresh back-off.
    if (was_up && clock::now() - up_since_ >= opt_.stable) backoff_ = opt_.min_backoff;
    schedule_reconnect();
    if (was_up && on_down) on_down();
}

void redis_sharded_link::schedule_reconnect() {
    state_ = state::waiting;
    if (stopped_) return;
    timer_.expires_after(next_backoff(backoff_, opt_.max_backoff, rng_));
    timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_), c = conn_](error_code ec) {
        if (ec || alive.expired() || c != conn_ || stopped_ || state_ != state::waiting) return;
        do_connect();
    });
}

}  // namespace herald::broker
