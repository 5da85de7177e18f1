// The backend client: keep-alive pools per target, a deadline per call, a circuit breaker.
#include "herald/net/http_client.hpp"

#include "herald/common/text.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <deque>

namespace herald::net {

namespace beast = boost::beast;
namespace http = beast::http;

const char* to_string(call_status s) noexcept {
    switch (s) {
        case call_status::ok: return "ok";
        case call_status::timeout: return "timeout";
        case call_status::failed: return "failed";
        case call_status::overloaded: return "overloaded";
        case call_status::breaker_open: return "breaker_open";
        case call_status::too_large: return "too_large";
    }
    return "failed";
}

std::optional<http_target> parse_http_url(std::string_view url) {
    constexpr std::string_view scheme = "http://";
    if (url.substr(0, scheme.size()) != scheme) return std::nullopt;
    url.remove_prefix(scheme.size());
    const auto slash = url.find('/');
    const auto authority = url.substr(0, slash);
    if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
    http_target t;
    if (slash != std::string_view::npos) t.path = std::string(url.substr(slash));
    for (char c : t.path)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
    // Without a port, host:80; parse_host_port takes "host:port" and "[v6]:port".
    const bool has_port = authority.back() != ']' && authority.rfind(':') != std::string_view::npos;
    auto hp = parse_host_port(has_port ? std::string(authority) : std::string(authority) + ":80");
    if (!hp || hp->port == 0) return std::nullopt;
    t.host = std::move(hp->host);
    t.port = hp->port;
    return t;
}

namespace {
struct conn {
    explicit conn(asio::io_context& ioc) : stream(ioc) {}
    beast::tcp_stream stream;
    beast::flat_buffer buf;
};
}  // namespace

struct http_client::pool : std::enable_shared_from_this<pool> {
    pool(asio::io_context& c, const client_limits& l, http_target t)
        : ioc(c), lim(l), target(std::move(t)) {}

    struct waiter {
        http_call call;
        std::string path;
        callback done;
        time_point start;
    };

    asio::io_context& ioc;
    const client_limits& lim;
    http_target target;
    std::vector<std::unique_ptr<conn>> idle;
    std::size_t in_flight = 0;
    std::deque<waiter> waiting;
    // Breaker: `failures` in a row; open until `open_until`, then one trial call at a time.
    unsigned failures = 0;
    bool open = false;
    bool trial_in_flight = false;
    time_point open_until{};

    // May a call start now? Sets `trial` for the one call that probes an open breaker.
    bool admit(time_point now, bool& trial) {
        trial = false;
        if (!open) return true;
        if (now < open_until || trial_in_flight) return false;
        trial_in_flight = trial = true;
        return true;
    }
    void record(bool success, bool trial, time_point now) {
        if (trial) trial_in_flight = false;
        if (success) {
            failures = 0;
            open = false;
            return;
        }
        if (trial || ++failures >= lim.breaker_failures) {
            open = true;
            open_until = now + lim.breaker_cooldown;
        }
    }
    // Runs a call whose connection slot (in_flight) the caller took.
    void start(waiter w, bool trial);
    // Starts waiting calls while connections allow; answers those whose deadline passed.
    void pump();
};

namespace {
void answer_later(asio::io_context& ioc, http_client::callback done, call_status st,
                  time_point start) {
    asio::post(ioc, [done = std::move(done), st, start] {
        http_answer a;
        a.status = st;
        a.took = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - start);
        done(std::move(a));
    });
}

// One call on one connection: connect (or reuse), write, read, hand the connection back.
struct exchange : std::enable_shared_from_this<exchange> {
    exchange(std::shared_ptr<http_client::pool> p, http_client::pool::waiter w, bool trial)
        : pool(std::move(p)),
          done(std::move(w.done)),
          start(w.start),
          deadline(w.start + w.call.timeout),
          trial(trial) {
        req.method(http::verb::post);
        req.target(w.path);
        req.version(11);
        req.set(http::field::host, pool->target.host + ":" + std::to_string(pool->target.port));
        req.set(http::field::user_agent, "herald");
        req.set(http::field::content_type, "application/json");
        for (auto& [k, v] : w.call.headers) req.set(k, v);
        req.body() = std::move(w.call.body);
        req.prepare_payload();
        req.keep_alive(true);
    }

    void run() {
        if (!pool->idle.empty()) {
            c = std::move(pool->idle.back());
            pool->idle.pop_back();
            reused = true;
            do_write();
            return;
        }
        do_connect();
    }

    void do_connect() {
        reused = false;
        c = std::make_unique<conn>(pool->ioc);
        error_code ec;
        auto addr = asio::ip::make_address(pool->target.host, ec);
        if (!ec) {
            c->stream.expires_at(deadline);
            c->stream.async_connect(
                tcp::endpoint(addr, pool->target.port),
                [self = shared_from_this()](error_code e) { self->on_connect(e); });
            return;
        }
        // A name: the resolver runs on Asio's own thread; the timer bounds it like the rest.
        resolver = std::make_unique<tcp::resolver>(pool->ioc);
        timer = std::make_unique<asio::steady_timer>(pool->ioc, deadline);
        timer->async_wait([self = shared_from_this()](error_code e) {
            if (!e && self->resolver) self->resolver->cancel();
        });
        resolver->async_resolve(
            pool->target.host, std::to_string(pool->target.port),
            [self = shared_from_this()](error_code e, const tcp::resolver::results_type& r) {
                self->timer->cancel();
                if (e) {
                    self->finish(e == asio::error::operation_aborted ? call_status::timeout
                                                                     : call_status::failed);
                    return;
                }
                self->c->stream.expires_at(self->deadline);
                self->c->stream.async_connect(
                    r, [self](error_code e2, const tcp::endpoint&) { self->on_connect(e2); });
            });
    }

    void on_connect(error_code ec) {
        if (ec) {
            finish(ec == beast::error::timeout ? call_status::timeout : call_status::failed);
            return;
        }
        // A request is small and waits for its answer: Nagle would hold a short last segment
        // for the backend's delayed ACK (40 ms a call on Linux).
        c->stream.socket().set_option(tcp::no_delay(true), ec);
        do_write();
    }

    void do_write() {
        c->stream.expires_at(deadline);
        http::async_write(c->stream, req, [self = shared_from_this()](error_code ec, std::size_t) {
            self->on_write(ec);
        });
    }

    void on_write(error_code ec) {
        if (ec) {
            if (retry_fresh(ec)) return;
            finish(ec == beast::error::timeout ? call_status::timeout : call_status::failed);
            return;
        }
        parser.emplace();
        parser->body_limit(pool->lim.max_response_bytes);
        parser->header_limit(16 * 1024);
        http::async_read(
            c->stream, c->buf, *parser,
            [self = shared_from_this()](error_code e, std::size_t) { self->on_read(e); });
    }

    // A kept-alive connection the backend closed meanwhile fails before any answer: the call
    // goes again once on a fresh connection (the backend saw nothing of it).
    bool retry_fresh(error_code ec) {
        if (!reused || ec == beast::error::timeout || (parser && parser->got_some())) return false;
        c.reset();
        parser.reset();
        do_connect();
        return true;
    }

    void on_read(error_code ec) {
        if (ec == http::error::body_limit || ec == http::error::header_limit) {
            finish(call_status::too_large);
            return;
        }
        if (ec) {
            if (retry_fresh(ec)) return;
            finish(ec == beast::error::timeout ? call_status::timeout : call_status::failed);
            return;
        }
        auto res = parser->release();
        const bool keep = res.keep_alive();
        finish(call_status::ok, res.result_int(), std::move(res.body()), keep);
    }

    void finish(call_status st, unsigned code = 0, std::string body = {}, bool keep = false) {
        auto& p = *pool;
        const auto now = clock::now();
        --p.in_flight;
        if (keep && c && p.idle.size() < p.lim.max_connections) {
            c->stream.expires_never();
            c->buf.clear();
            p.idle.push_back(std::move(c));
        }
        c.reset();
        p.record(st == call_status::ok && code < 500, trial, now);
        http_answer a;
        a.status = st;
        a.code = code;
        a.body = std::move(body);
        a.took = std::chrono::duration_cast<std::chrono::microseconds>(now - start);
        auto cb = std::move(done);
        auto keep_pool = pool;
        cb(std::move(a));
        keep_pool->pump();
    }

    std::shared_ptr<http_client::pool> pool;
    http_client::callback done;
    time_point start;
    time_point deadline;
    bool trial;
    bool reused = false;
    std::unique_ptr<conn> c;
    http::request<http::string_body> req;
    std::optional<http::response_parser<http::string_body>> parser;
    std::unique_ptr<tcp::resolver> resolver;
    std::unique_ptr<asio::steady_timer> timer;
};
}  // namespace

void http_client::pool::start(waiter w, bool trial) {
    std::make_shared<exchange>(shared_from_this(), std::move(w), trial)->run();
}

void http_client::pool::pump() {
    while (!waiting.empty() && in_flight < lim.max_connections) {
        auto w = std::move(waiting.front());
        waiting.pop_front();
        const auto now = clock::now();
        if (now >= w.start + w.call.timeout) {
            answer_later(ioc, std::move(w.done), call_status::timeout, w.start);
            continue;
        }
        bool trial = false;
        if (!admit(now, trial)) {
            answer_later(ioc, std::move(w.done), call_status::breaker_open, w.start);
            continue;
        }
        ++in_flight;
        start(std::move(w), trial);
    }
}

http_client::http_client(asio::io_context& ioc, client_limits limits)
    : ioc_(ioc), limits_(limits) {}

http_client::~http_client() = default;

void http_client::post(const http_target& t, http_call call, callback done) {
    auto key = t.key();
    auto it = pools_.find(key);
    if (it == pools_.end())
        it = pools_.emplace(std::move(key), std::make_shared<pool>(ioc_, limits_, t)).first;
    auto& p = *it->second;
    const auto now = clock::now();
    pool::waiter w{std::move(call), t.path, std::move(done), now};
    bool trial = false;
    if (!p.admit(now, trial)) {
        answer_later(ioc_, std::move(w.done), call_status::breaker_open, now);
        return;
    }
    if (p.in_flight < limits_.max_connections) {
        // Started from a posted handler so that `done` never runs inside post().
        ++p.in_flight;  // the connection slot is taken now
        asio::post(ioc_, [pp = it->second, w = std::move(w), trial]() mutable {
            pp->start(std::move(w), trial);
        });
        return;
    }
    if (trial) p.trial_in_flight = false;
    if (p.waiting.size() >= limits_.max_pending) {
        answer_later(ioc_, std::move(w.done), call_status::overloaded, now);
        return;
    }
    p.waiting.push_back(std::move(w));
}

std::size_t http_client::open_breakers() const noexcept {
    std::size_t n = 0;
    for (const auto& [_, p] : pools_) n += p->open ? 1 : 0;
    return n;
}

}  // namespace herald::net
