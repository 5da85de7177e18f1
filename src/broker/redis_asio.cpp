#include "herald/broker/redis_asio.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <charconv>

namespace herald::broker {

std::optional<redis_endpoint> parse_endpoint(std::string_view text) {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
        return std::nullopt;
    auto host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    auto port = text.substr(colon + 1);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || end != port.data() + port.size() || p == 0 || p > 65535)
        return std::nullopt;
    return redis_endpoint{std::string(host), static_cast<std::uint16_t>(p)};
}

namespace {

// The adapter: hiredis asks for readiness notifications through the hooks below, and this
// object turns them into async_wait calls. hiredis owns the file descriptor (it closes it after
// `cleanup`), so the descriptor is released, never closed, here. Pending waits hold a shared_ptr,
// so the object outlives a cleanup that runs inside one of its own handlers.
struct asio_events {
    asio_events(asio::io_context& ioc, redisAsyncContext* c) : ac(c), sd(ioc, c->c.fd) {}

    redisAsyncContext* ac;
    asio::posix::stream_descriptor sd;
    bool want_read = false;
    bool want_write = false;
    bool reading = false;  // an async_wait for read is pending
    bool writing = false;
    std::shared_ptr<asio_events> self;  // held by hiredis (ev.data) until cleanup
};

void arm_read(const std::shared_ptr<asio_events>& e) {
    if (e->reading || !e->ac) return;
    e->reading = true;
    e->sd.async_wait(asio::posix::stream_descriptor::wait_read, [e](error_code ec) {
        e->reading = false;
        if (ec || !e->ac || !e->want_read) return;
        redisAsyncHandleRead(e->ac);  // may end in cleanup (e->ac becomes null)
        if (e->ac && e->want_read) arm_read(e);
    });
}

void arm_write(const std::shared_ptr<asio_events>& e) {
    if (e->writing || !e->ac) return;
    e->writing = true;
    e->sd.async_wait(asio::posix::stream_descriptor::wait_write, [e](error_code ec) {
        e->writing = false;
        if (ec || !e->ac || !e->want_write) return;
        redisAsyncHandleWrite(e->ac);
        if (e->ac && e->want_write) arm_write(e);
    });
}

void hook_add_read(void* p) {
    auto* e = static_cast<asio_events*>(p);
    e->want_read = true;
    arm_read(e->self);
}
void hook_del_read(void* p) {
    static_cast<asio_events*>(p)->want_read = false;
}
void hook_add_write(void* p) {
    auto* e = static_cast<asio_events*>(p);
    e->want_write = true;
    arm_write(e->self);
}
void hook_del_write(void* p) {
    static_cast<asio_events*>(p)->want_write = false;
}
void hook_cleanup(void* p) {
    auto* e = static_cast<asio_events*>(p);
    e->ac = nullptr;
    e->want_read = e->want_write = false;
    if (e->sd.is_open()) e->sd.release();  // cancels pending waits; hiredis closes the fd
    auto keep = std::move(e->self);        // may free `e` when no wait is pending
}

void attach(asio::io_context& ioc, redisAsyncContext* ac) {
    auto e = std::make_shared<asio_events>(ioc, ac);
    e->self = e;
    ac->ev.data = e.get();
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    // hiredis 0.14 only learns that a non-blocking connect finished from a write event.
    hook_add_write(e.get());
}

}  // namespace

redis_link::redis_link(asio::io_context& ioc, options opt, std::uint64_t seed)
    : ioc_(ioc), opt_(std::move(opt)), timer_(ioc), backoff_(opt_.min_backoff), rng_(seed) {}

redis_link::~redis_link() {
    stop();
    *alive_ = false;
}

void redis_link::start() {
    stopped_ = false;
    if (state_ == state::idle) do_connect();
}

void redis_link::stop() {
    stopped_ = true;
    timer_.cancel();
    if (ac_) {
        auto* ac = ac_;
        ac_ = nullptr;
        redisAsyncFree(ac);  // pending callbacks get a null reply (posted)
    }
    state_ = state::idle;
}

void redis_link::do_connect() {
    state_ = state::connecting;
    ++attempt_;
    redisAsyncContext* ac = redisAsyncConnect(opt_.endpoint.host.c_str(), opt_.endpoint.port);
    if (ac == nullptr) {
        schedule_reconnect();
        return;
    }
    if (ac->err) {
        spdlog::debug("redis {}: connect: {}", opt_.endpoint.name(), ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect();
        return;
    }
    ac_ = ac;
    ac->data = this;
    redisAsyncSetConnectCallback(ac, &redis_link::on_connect_cb);
    redisAsyncSetDisconnectCallback(ac, &redis_link::on_disconnect_cb);
    attach(ioc_, ac);

    timer_.expires_after(opt_.connect_timeout);
    timer_.async_wait([this, alive = alive_, attempt = attempt_](error_code ec) {
        if (ec || !*alive || attempt != attempt_ || state_ != state::connecting) return;
        spdlog::debug("redis {}: connect timed out", opt_.endpoint.name());
        auto* c = ac_;
        ac_ = nullptr;
        if (c) redisAsyncFree(c);  // not connected: no disconnect callback
        schedule_reconnect();
    });
}

void redis_link::on_connect_cb(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<redis_link*>(ac->data);
    if (self == nullptr) return;
    if (status != REDIS_OK) {
        // hiredis frees the context right after this returns.
        spdlog::debug("redis {}: connect: {}", self->opt_.endpoint.name(),
                      ac->errstr ? ac->errstr : "failed");
        self->ac_ = nullptr;
        self->schedule_reconnect();
        return;
    }
    self->on_connected(true);
}

void redis_link::on_connected(bool) {
    timer_.cancel();
    state_ = state::up;
    backoff_ = opt_.min_backoff;
    if (was_up_) ++reconnects_;
    was_up_ = true;
    spdlog::info("redis {}: connected", opt_.endpoint.name());
    if (!opt_.client_name.empty())
        command({"CLIENT", "SETNAME", opt_.client_name}, [](redisReply*) {});
    if (on_up) on_up();
}

void redis_link::on_disconnect_cb(const redisAsyncContext* ac, int) {
    auto* self = static_cast<redis_link*>(ac->data);
    if (self == nullptr) return;
    // hiredis frees the context right after this returns.
    self->ac_ = nullptr;
    self->on_lost();
}

void redis_link::on_lost() {
    const bool was = state_ == state::up;
    if (stopped_) {
        state_ = state::idle;
        return;
    }
    if (was) spdlog::warn("redis {}: connection lost", opt_.endpoint.name());
    schedule_reconnect();
    if (was && on_down) on_down();
}

void redis_link::schedule_reconnect() {
    state_ = state::waiting;
    if (stopped_) return;
    // Full backoff doubles up to the cap; the wait is uniformly jittered in [backoff/2, backoff]
    // so instances that lost the same server do not come back in lockstep.
    const auto b = backoff_.count();
    std::uniform_int_distribution<long long> jitter(b / 2, b);
    const auto wait = milliseconds(jitter(rng_));
    backoff_ = std::min(opt_.max_backoff, backoff_ * 2);
    timer_.expires_after(wait);
    timer_.async_wait([this, alive = alive_](error_code ec) {
        if (ec || !*alive || stopped_ || state_ != state::waiting) return;
        do_connect();
    });
}

void redis_link::on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* fn = static_cast<reply_fn*>(privdata);
    if (reply == nullptr) {
        // Failed or freed: never call back from inside hiredis's teardown.
        auto* self = static_cast<redis_link*>(ac->data);
        if (self) asio::post(self->ioc_, [f = std::move(*fn)]() mutable { f(nullptr); });
        delete fn;
        return;
    }
    (*fn)(static_cast<redisReply*>(reply));
    delete fn;
}

void redis_link::on_push_cb(redisAsyncContext*, void* reply, void* privdata) {
    auto* self = static_cast<redis_link*>(privdata);
    if (reply == nullptr || self == nullptr || !self->on_push) return;
    self->on_push(static_cast<redisReply*>(reply));
}

bool redis_link::command(const std::vector<std::string_view>& argv, reply_fn fn) {
    if (state_ != state::up || ac_ == nullptr) return false;
    std::vector<const char*> args;
    std::vector<std::size_t> lens;
    args.reserve(argv.size());
    lens.reserve(argv.size());
    for (auto a : argv) {
        args.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* box = new reply_fn(std::move(fn));
    if (redisAsyncCommandArgv(ac_, &redis_link::on_reply_cb, box, static_cast<int>(args.size()),
                              args.data(), lens.data()) != REDIS_OK) {
        delete box;
        return false;
    }
    return true;
}

bool redis_link::channels_command(const char* verb, const std::vector<std::string>& channels) {
    if (state_ != state::up || ac_ == nullptr || channels.empty()) return false;
    std::vector<const char*> args{verb};
    std::vector<std::size_t> lens{std::char_traits<char>::length(verb)};
    for (const auto& c : channels) {
        args.push_back(c.data());
        lens.push_back(c.size());
    }
    return redisAsyncCommandArgv(ac_, &redis_link::on_push_cb, this, static_cast<int>(args.size()),
                                 args.data(), lens.data()) == REDIS_OK;
}

bool redis_link::subscribe(const std::vector<std::string>& channels) {
    return channels_command("SUBSCRIBE", channels);
}

bool redis_link::unsubscribe(const std::vector<std::string>& channels) {
    return channels_command("UNSUBSCRIBE", channels);
}

}  // namespace herald::broker
