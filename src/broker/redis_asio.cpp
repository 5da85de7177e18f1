// One cohesive thing, so one file (about 500 lines): the Redis link, a state machine over one
// hiredis connection (connect, handshake, command deadlines and PINGs, reconnect with back-off),
// and the five-hook hiredis adapter it installs on the worker's io_context, which nothing else
// uses.
#include "redis_asio.hpp"

#include "herald/common/text.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

namespace herald::broker {

std::optional<redis_endpoint> parse_endpoint(std::string_view text) {
    auto hp = parse_host_port(text);
    if (!hp || hp->port == 0) return std::nullopt;
    return redis_endpoint{std::move(hp->host), hp->port};
}

milliseconds next_backoff(milliseconds& backoff, milliseconds max, std::mt19937_64& rng) {
    const auto b = backoff.count();
    std::uniform_int_distribution<long long> jitter(b / 2, b);
    const auto wait = milliseconds(jitter(rng));
    backoff = std::min(max, backoff * 2);
    return wait;
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

// Bytes hiredis appends for a command: the RESP multi-bulk it formats, "*<n>\r\n" then
// "$<len>\r\n<arg>\r\n" per argument.
std::size_t resp_length(const std::vector<std::string_view>& argv) {
    auto digits = [](std::size_t n) {
        std::size_t d = 1;
        for (; n >= 10; n /= 10) ++d;
        return d;
    };
    std::size_t len = 1 + digits(argv.size()) + 2;
    for (auto a : argv) len += 1 + digits(a.size()) + 2 + a.size() + 2;
    return len;
}

// hiredis takes arguments as parallel C arrays of pointers and lengths.
struct c_argv {
    explicit c_argv(const std::vector<std::string_view>& argv) {
        args.reserve(argv.size());
        lens.reserve(argv.size());
        for (auto a : argv) {
            args.push_back(a.data());
            lens.push_back(a.size());
        }
    }
    [[nodiscard]] int argc() const { return static_cast<int>(args.size()); }
    std::vector<const char*> args;
    std::vector<std::size_t> lens;
};

int async_command(redisAsyncContext* ac, redisCallbackFn* fn, void* privdata,
                  const std::vector<std::string_view>& argv) {
    c_argv a(argv);
    return redisAsyncCommandArgv(ac, fn, privdata, a.argc(), a.args.data(), a.lens.data());
}

bool is_pong(const redisReply* r) {
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
           r->element[0]->type == REDIS_REPLY_STRING &&
           std::string_view(r->element[0]->str, r->element[0]->len) == "pong";
}

}  // namespace

struct redis_link::pending {
    reply_fn fn;
    std::uint64_t end = 0;  // the link's appended_ once this command was appended
};

redis_link::redis_link(asio::io_context& ioc, options opt, std::uint64_t seed)
    : ioc_(ioc),
      opt_(std::move(opt)),
      timer_(ioc),
      watchdog_(ioc),
      backoff_(opt_.min_backoff),
      rng_(seed) {}

redis_link::~redis_link() {
    stop();
    *alive_ = false;
}

void redis_link::start() {
    stopped_ = false;
    if (state_ == state::idle && opt_.endpoint.known()) do_connect();
}

void redis_link::stop() {
    stopped_ = true;
    drop(nullptr);
}

void redis_link::retry_now() {
    if (stopped_ || state_ != state::waiting) return;
    timer_.cancel();
    backoff_ = opt_.min_backoff;
    do_connect();
}

void redis_link::do_connect() {
    state_ = state::connecting;
    ++attempt_;
    appended_ = 0;
    sent_.clear();
    expired_ = 0;
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

    // One deadline for TCP and the first PING: a frozen server completes the TCP handshake
    // (the kernel does) but never answers.
    timer_.expires_after(opt_.connect_timeout);
    timer_.async_wait([this, alive = alive_, attempt = attempt_](error_code ec) {
        if (ec || !*alive || attempt != attempt_) return;
        if (state_ != state::connecting && state_ != state::handshaking) return;
        const auto what = state_ == state::connecting ? "connect" : "no answer to PING";
        if (!quiet_)
            spdlog::warn("redis {}: {} within {} ms; retrying", opt_.endpoint.name(), what,
                         opt_.connect_timeout.count());
        quiet_ = true;
        drop(nullptr);
    });
}

void redis_link::on_connect_cb(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<redis_link*>(ac->data);
    if (self == nullptr) return;
    if (status != REDIS_OK) {
        // hiredis frees the context right after this returns.
        const auto* err = ac->errstr[0] ? ac->errstr : "failed";
        if (!self->quiet_)
            spdlog::warn("redis {}: connect: {}; retrying", self->opt_.endpoint.name(), err);
        else
            spdlog::debug("redis {}: connect: {}", self->opt_.endpoint.name(), err);
        self->quiet_ = true;
        self->ac_ = nullptr;
        self->schedule_reconnect();
        return;
    }
    self->on_tcp_connected();
}

void redis_link::on_tcp_connected() {
    state_ = state::handshaking;
    handshake_failed_ = false;
    role_master_ = false;
    replid_.clear();
    auto current = [this, alive = alive_, attempt = attempt_] {
        return *alive && attempt == attempt_ && state_ == state::handshaking && !handshake_failed_;
    };
    if (!opt_.password.empty()) {
        std::vector<std::string_view> argv{"AUTH"};
        if (!opt_.username.empty()) argv.emplace_back(opt_.username);
        argv.emplace_back(opt_.password);
        send(argv, [this, current](redisReply* r, no_reply) {
            if (!current() || r == nullptr || r->type != REDIS_REPLY_ERROR) return;
            // A wrong password for a named user would leave the link as the default user.
            if (!quiet_)
                spdlog::warn("redis {}: AUTH refused: '{}'; retrying", opt_.endpoint.name(),
                             std::string_view(r->str, r->len));
            quiet_ = true;
            handshake_failed_ = true;
            drop_later(nullptr);
        });
    }
    if (!opt_.client_name.empty())
        send({"CLIENT", "SETNAME", opt_.client_name}, [](redisReply*, no_reply) {});
    send({"PING"}, [this, current](redisReply* r, no_reply) {
        if (!current()) return;
        // With require_master the handshake ends at the INFO answer, unless PING failed.
        if (!opt_.require_master || r == nullptr || r->type == REDIS_REPLY_ERROR) on_handshake(r);
    });
    if (!opt_.require_master) return;
    send({"ROLE"}, [this, current](redisReply* r, no_reply) {
        if (!current() || r == nullptr) return;
        role_master_ = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                       r->element[0]->type == REDIS_REPLY_STRING &&
                       std::string_view(r->element[0]->str, r->element[0]->len) == "master";
    });
    send({"INFO", "replication"}, [this, current](redisReply* r, no_reply) {
        if (!current() || r == nullptr) return;
        on_role_checked(r);
    });
}

void redis_link::on_handshake(redisReply* reply) {
    if (reply == nullptr) return;  // the context is going away; its owner reconnects
    if (reply->type == REDIS_REPLY_ERROR) {
        // LOADING, NOAUTH...: try again later.
        if (!quiet_)
            spdlog::warn("redis {}: PING answered '{}'; retrying", opt_.endpoint.name(),
                         std::string_view(reply->str, reply->len));
        quiet_ = true;
        handshake_failed_ = true;
        drop_later(nullptr);
        return;
    }
    on_connected();
}

// Never write to a replica: a stale address (a Sentinel answer from before a switch, an old
// master back from a partition) is refused here, and the owner asks the sentinels again.
void redis_link::on_role_checked(redisReply* info) {
    std::string_view text;
    if (info->type == REDIS_REPLY_STRING || info->type == REDIS_REPLY_STATUS)
        text = std::string_view(info->str, info->len);
    constexpr std::string_view key = "master_replid:";
    if (const auto at = text.find(key); at != std::string_view::npos) {
        auto rest = text.substr(at + key.size());
        replid_ =
            std::string(rest.substr(0, std::min(rest.find_first_of("\r\n"), std::size_t{64})));
    }
    if (!role_master_ || replid_.empty()) {
        if (!quiet_)
            spdlog::warn("redis {}: not a master (ROLE); not using it, retrying",
                         opt_.endpoint.name());
        quiet_ = true;
        handshake_failed_ = true;
        drop_later(nullptr);
        if (on_not_master) on_not_master();
        return;
    }
    on_connected();
}

void redis_link::set_endpoint(const redis_endpoint& ep) {
    if (ep == opt_.endpoint) return;
    spdlog::info("redis {}: now {}", opt_.endpoint.known() ? opt_.endpoint.name() : "(unknown)",
                 ep.name());
    opt_.endpoint = ep;
    if (stopped_) return;
    if (state_ == state::idle) {
        do_connect();
        return;
    }
    if (state_ != state::waiting) drop("the master moved");
    retry_now();
}

void redis_link::on_connected() {
    timer_.cancel();
    timed_out_ = false;
    state_ = state::up;
    backoff_ = opt_.min_backoff;
    if (was_up_) ++reconnects_;
    was_up_ = true;
    quiet_ = false;
    last_reply_ = clock::now();
    spdlog::info("redis {}: connected", opt_.endpoint.name());
    if (!opt_.heartbeat_pattern.empty()) {
        const std::vector<std::string_view> argv{"PSUBSCRIBE", opt_.heartbeat_pattern};
        if (async_command(ac_, &redis_link::on_heartbeat_cb, this, argv) != REDIS_OK)
            drop_later("cannot subscribe its heartbeat");
        appended_ += resp_length(argv);
    }
    arm_watchdog(last_reply_ + opt_.ping_interval);
    if (on_up) on_up();
}

void redis_link::on_disconnect_cb(const redisAsyncContext* ac, int) {
    auto* self = static_cast<redis_link*>(ac->data);
    if (self == nullptr || self->dropping_) return;
    // hiredis frees the context right after this returns.
    self->ac_ = nullptr;
    self->on_lost();
}

void redis_link::on_lost() {
    const bool was = state_ == state::up;
    watchdog_.cancel();
    watchdog_armed_ = false;
    sent_.clear();
    expired_ = 0;
    if (stopped_) {
        state_ = state::idle;
        return;
    }
    if (was) spdlog::warn("redis {}: connection lost", opt_.endpoint.name());
    schedule_reconnect();
    if (was && on_down) on_down();
}

// Tears the connection down from outside hiredis's callbacks: every pending command is answered
// (posted) with a null reply, then the link reconnects unless stopped.
void redis_link::drop(const char* why) {
    const bool was_up = state_ == state::up;
    if (why && was_up) spdlog::warn("redis {}: {}; reconnecting", opt_.endpoint.name(), why);
    timer_.cancel();
    watchdog_.cancel();
    watchdog_armed_ = false;
    if (auto* ac = std::exchange(ac_, nullptr)) {
        dropping_ = true;
        redisAsyncFree(ac);
        dropping_ = false;
    }
    sent_.clear();
    expired_ = 0;
    if (stopped_) {
        state_ = state::idle;
        return;
    }
    schedule_reconnect();
    if (was_up && on_down) on_down();
}

// hiredis frees a context only after the callback that asked for it returns, and then calls
// the disconnect callback; drop() must run outside, on this connection only.
void redis_link::drop_later(const char* why) {
    asio::post(ioc_, [this, alive = alive_, attempt = attempt_, why] {
        if (*alive && attempt == attempt_ && ac_ != nullptr) drop(why);
    });
}

void redis_link::schedule_reconnect() {
    state_ = state::waiting;
    if (stopped_) return;
    timer_.expires_after(next_backoff(backoff_, opt_.max_backoff, rng_));
    timer_.async_wait([this, alive = alive_](error_code ec) {
        if (ec || !*alive || stopped_ || state_ != state::waiting) return;
        do_connect();
    });
}

// ---------------------------------------------------------------------------------------------
// Liveness

void redis_link::note_sent(std::size_t bytes, pending* p) {
    appended_ += bytes;
    const auto now = clock::now();
    if (sent_.empty() && state_ == state::up) arm_watchdog(now + opt_.command_timeout);
    sent_.push_back({now, p});
}

// Redis answers a connection in order: the answer that just arrived is the oldest command's.
void redis_link::note_answered() {
    if (!sent_.empty()) {
        sent_.pop_front();
        if (expired_ > 0) --expired_;
    }
    last_reply_ = clock::now();
}

void redis_link::arm_watchdog(time_point at) {
    if (watchdog_armed_ && watchdog_at_ <= at) return;
    watchdog_armed_ = true;
    watchdog_at_ = at;
    watchdog_.expires_at(at);  // an earlier wait completes with operation_aborted
    watchdog_.async_wait([this, alive = alive_](error_code ec) {
        if (ec == asio::error::operation_aborted || !*alive) return;
        watchdog_armed_ = false;
        on_watchdog();
    });
}

// Runs at the oldest unanswered command's deadline or when the idle link is due a PING; the
// timer is not moved as commands come and go, only re-armed here for the next due time.
void redis_link::on_watchdog() {
    if (state_ != state::up) return;
    const auto now = clock::now();
    const auto timeout = opt_.command_timeout;
    if (!sent_.empty() && now - std::max(sent_.front().sent, last_reply_) >= timeout) {
        timed_out_ = true;
        const auto why =
            fmt::format("no answer within {} ms (redis.command_timeout)", timeout.count());
        drop(why.c_str());
        return;
    }
    // Redis is answering, but these waited too long (a backlog): answered now, as "may have run".
    for (; expired_ < sent_.size() && now - sent_[expired_].sent >= timeout; ++expired_) {
        auto* p = sent_[expired_].p;
        if (p == nullptr || !p->fn) continue;
        asio::post(ioc_, [f = std::move(p->fn)]() mutable { f(nullptr, no_reply::lost); });
        p->fn = nullptr;
    }
    if (sent_.empty() && now - last_reply_ >= opt_.ping_interval) send_ping();
    if (state_ != state::up) return;
    // While commands wait, wake up at least every ping_interval as well: the link may turn idle
    // well before a deadline, and is then due a PING on time.
    auto next = sent_.empty() ? last_reply_ + opt_.ping_interval : now + opt_.ping_interval;
    if (!sent_.empty()) next = std::min(next, std::max(sent_.front().sent, last_reply_) + timeout);
    if (expired_ < sent_.size()) next = std::min(next, sent_[expired_].sent + timeout);
    arm_watchdog(next);
}

void redis_link::send_ping() {
    if (opt_.heartbeat_pattern.empty()) {
        send({"PING"}, [](redisReply*, no_reply) {});
        return;
    }
    const std::vector<std::string_view> argv{"PING", opt_.heartbeat_pattern};
#if HIREDIS_MAJOR == 0 || (HIREDIS_MAJOR == 1 && HIREDIS_MINOR == 0)
    // A subscribed connection answers PING with the array ["pong", <arg>]. hiredis before 1.1
    // queues the callback of any command sent in subscribed mode on a list that only non-array
    // answers drain (it would grow by one per PING), and looks the array up as a pattern
    // message, its type starting with 'p', under <arg>. So the PING goes out with no callback
    // of its own and its answer reaches the heartbeat pattern's callback. The link never leaves
    // that pattern, hence never subscribed mode, where a bare "+PONG" would abort hiredis.
    if (!(ac_->c.flags & REDIS_SUBSCRIBED)) {  // never expected: the heartbeat is never left
        drop_later("not in subscribed mode");
        return;
    }
    c_argv a(argv);
    if (redisAppendCommandArgv(&ac_->c, a.argc(), a.args.data(), a.lens.data()) != REDIS_OK) {
        drop_later("cannot queue a PING");
        return;
    }
    if (ac_->ev.addWrite) ac_->ev.addWrite(ac_->ev.data);  // as hiredis's own commands do
#else
    // Newer hiredis hands a two-element answer in subscribed mode to the command's callback.
    if (async_command(ac_, &redis_link::on_heartbeat_cb, this, argv) != REDIS_OK) {
        drop_later("cannot queue a PING");
        return;
    }
#endif
    note_sent(resp_length(argv), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Replies

void redis_link::on_reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
    std::unique_ptr<pending> p(static_cast<pending*>(privdata));
    auto* self = static_cast<redis_link*>(ac->data);
    if (reply == nullptr) {
        // The context is being freed: never call back from inside hiredis's teardown. Until it
        // is freed (after these callbacks) obuf holds exactly the bytes not yet written, so a
        // command ending past what was written never reached Redis.
        if (self == nullptr || !p->fn) return;  // !fn: answered at its deadline already
        const std::uint64_t unsent = ac->c.obuf ? sdslen(ac->c.obuf) : 0;
        const auto why = p->end + unsent > self->appended_ ? no_reply::not_sent : no_reply::lost;
        asio::post(self->ioc_, [f = std::move(p->fn), why]() mutable { f(nullptr, why); });
        return;
    }
    if (self) self->note_answered();
    if (p->fn) p->fn(static_cast<redisReply*>(reply), no_reply::lost);
}

void redis_link::on_push_cb(redisAsyncContext*, void* reply, void* privdata) {
    auto* self = static_cast<redis_link*>(privdata);
    if (reply == nullptr || self == nullptr) return;
    self->last_reply_ = clock::now();
    if (self->on_push) self->on_push(static_cast<redisReply*>(reply));
}

void redis_link::on_heartbeat_cb(redisAsyncContext*, void* reply, void* privdata) {
    auto* self = static_cast<redis_link*>(privdata);
    if (reply == nullptr || self == nullptr) return;
    if (const auto* r = static_cast<redisReply*>(reply); r->type == REDIS_REPLY_ERROR) {
        // NOPERM: an ACL user without the heartbeat pattern (docs/deployment.md lists it).
        spdlog::warn("redis {}: PSUBSCRIBE {}: '{}'", self->opt_.endpoint.name(),
                     self->opt_.heartbeat_pattern, std::string_view(r->str, r->len));
        self->drop_later("its heartbeat subscription was refused");
        return;
    }
    if (is_pong(static_cast<redisReply*>(reply)))
        self->note_answered();
    else
        self->last_reply_ = clock::now();  // the PSUBSCRIBE confirmation
}

bool redis_link::command(const std::vector<std::string_view>& argv, reply_fn fn) {
    if (state_ != state::up || ac_ == nullptr) return false;
    return send(argv, std::move(fn));
}

bool redis_link::send(const std::vector<std::string_view>& argv, reply_fn fn) {
    const auto bytes = resp_length(argv);
    auto* p = new pending{std::move(fn), appended_ + bytes};
    if (async_command(ac_, &redis_link::on_reply_cb, p, argv) != REDIS_OK) {
        delete p;
        return false;
    }
    note_sent(bytes, p);
    return true;
}

bool redis_link::channels_command(const char* verb, const std::vector<std::string>& channels) {
    if (state_ != state::up || ac_ == nullptr || channels.empty()) return false;
    std::vector<std::string_view> argv{verb};
    for (const auto& c : channels) argv.emplace_back(c);
    if (async_command(ac_, &redis_link::on_push_cb, this, argv) != REDIS_OK) return false;
    appended_ += resp_length(argv);
    // Answers come as pushes, one per channel; a PING behind them, when none is outstanding,
    // puts a deadline on them.
    if (sent_.empty()) send_ping();
    return true;
}

bool redis_link::subscribe(const std::vector<std::string>& channels) {
    return channels_command("SUBSCRIBE", channels);
}

bool redis_link::unsubscribe(const std::vector<std::string>& channels) {
    return channels_command("UNSUBSCRIBE", channels);
}

}  // namespace herald::broker
