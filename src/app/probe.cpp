#include "herald/app/probe.hpp"

// GCC 12 warns falsely about asio's recycling allocator freeing a coroutine frame's timer wait
// (its allocation goes through ::operator new, its free through the same helper).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "herald/auth/dev_token.hpp"
#include "herald/config/config.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <optional>
#include <type_traits>
#include <random>
#include <stdexcept>

namespace herald::app {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::use_awaitable;
using clock_type = std::chrono::steady_clock;

struct endpoint {
    std::string host;
    std::string port;
    bool tls = false;
};

// http://, ws:// (plain TCP) or https://, wss:// (TLS) host[:port][/...].
endpoint parse_url(std::string_view url) {
    endpoint ep;
    bool scheme = false;
    for (std::string_view s : {"http://", "ws://", "https://", "wss://"}) {
        if (!url.starts_with(s)) continue;
        ep.tls = s == "https://" || s == "wss://";
        url.remove_prefix(s.size());
        scheme = true;
        break;
    }
    if (!scheme && url.find("://") != std::string_view::npos)
        throw std::runtime_error("only http://, https://, ws:// and wss:// URLs are supported");
    url = url.substr(0, url.find('/'));
    if (url.empty()) throw std::runtime_error("no host in the URL");
    const auto colon = url.rfind(':');
    ep.host = std::string(url.substr(0, colon));
    ep.port = colon == std::string_view::npos ? (ep.tls ? "443" : "80")
                                              : std::string(url.substr(colon + 1));
    return ep;
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct outcome {
    double connect_ms = 0;
    std::vector<double> latency_ms;
    std::optional<double> refresh_ms;  // the refresh op's round trip, when it ran
};

using tls_stream = beast::ssl_stream<beast::tcp_stream>;

// The TLS client context: the server's certificate must chain to --cacert (else the system's
// CAs) and name the URL's host.
std::unique_ptr<ssl::context> client_context(const probe_options& o) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (o.cacert.empty())
        ctx->set_default_verify_paths(ec);
    else
        ctx->load_verify_file(o.cacert, ec);
    if (ec) throw std::runtime_error("cannot read CA file '" + o.cacert + "': " + ec.message());
    ctx->set_verify_mode(ssl::verify_peer);
    return ctx;
}

// Connects `s` (its TCP layer) and, on TLS, shakes hands verifying the host name.
template <class Stream>
asio::awaitable<void> open(Stream& s, const endpoint& ep, const tcp::resolver::results_type& addrs,
                           std::chrono::milliseconds timeout) {
    auto& sock = beast::get_lowest_layer(s);
    sock.expires_after(timeout);
    co_await sock.async_connect(addrs, use_awaitable);
    if constexpr (std::is_same_v<Stream, tls_stream>) {
        if (!SSL_set_tlsext_host_name(s.native_handle(), ep.host.c_str()))
            throw std::runtime_error("TLS: cannot set the server name");
        s.set_verify_callback(ssl::host_name_verification(ep.host));
        co_await s.async_handshake(ssl::stream_base::client, use_awaitable);
    }
}

template <class Stream>
asio::awaitable<void> publish_on(Stream& s, const probe_options& o, const endpoint& ep,
                                 const tcp::resolver::results_type& addrs,
                                 const std::string& body) {
    co_await open(s, ep, addrs, o.timeout);
    http::request<http::string_body> req{http::verb::post, "/publish/" + o.topic, 11};
    req.set(http::field::host, ep.host);
    req.set(http::field::content_type, "text/plain");
    if (!o.api_key.empty()) req.set(http::field::authorization, "Bearer " + o.api_key);
    req.body() = body;
    req.prepare_payload();
    co_await http::async_write(s, req, use_awaitable);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    co_await http::async_read(s, buf, res, use_awaitable);
    if (res.result() != http::status::ok)
        throw std::runtime_error("publish answered " + std::to_string(res.result_int()) + ": " +
                                 res.body());
}

asio::awaitable<void> publish(const probe_options& o, const endpoint& ep,
                              const tcp::resolver::results_type& addrs, ssl::context* ctx,
                              const std::string& body) {
    auto ex = co_await asio::this_coro::executor;
    if (ctx) {
        tls_stream s(ex, *ctx);
        co_await publish_on(s, o, ep, addrs, body);
    } else {
        beast::tcp_stream s(ex);
        co_await publish_on(s, o, ep, addrs, body);
    }
}

// With --jwt-secret: a token the probe signs itself, for its topic, living token_ttl.
std::string sign_token(const probe_options& o) {
    config::settings cfg;
    cfg.auth.jwt.keys.push_back({"HS256", o.jwt_secret, {}, {}, {}});
    auth::dev_token_request r;
    r.sub = "herald-probe";
    r.topics = {o.topic};
    r.ttl = std::chrono::duration_cast<std::chrono::seconds>(o.token_ttl);
    return auth::make_dev_token(cfg, r, std::chrono::system_clock::now());
}

// Reads frames until `done(frame)` says so; an error frame ends the probe with its text.
template <class WS, class Done>
asio::awaitable<void> read_until(WS& ws, beast::flat_buffer& buf, std::chrono::milliseconds timeout,
                                 Done done) {
    for (;;) {
        beast::get_lowest_layer(ws).expires_after(timeout);
        co_await ws.async_read(buf, use_awaitable);
        auto j = nlohmann::json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
        buf.consume(buf.size());
        if (!j.is_object()) continue;
        if (j.value("type", "") == "error") throw std::runtime_error("refused: " + j.dump());
        if (done(j)) co_return;
    }
}

template <class WS>
asio::awaitable<void> send_op(WS& ws, std::string text, std::chrono::milliseconds timeout) {
    beast::get_lowest_layer(ws).expires_after(timeout);
    co_await ws.async_write(asio::buffer(text), use_awaitable);
}

// One message: published over HTTP, read back here. Latency: publish sent -> message read (read
// after the publish's answer, so an upper bound when delivery beats the answer).
template <class WS>
asio::awaitable<void> round_trip(WS& ws, beast::flat_buffer& buf, const probe_options& o,
                                 const endpoint& ep, const tcp::resolver::results_type& addrs,
                                 ssl::context* ctx, std::string nonce, outcome& out) {
    const auto sent = clock_type::now();
    co_await publish(o, ep, addrs, ctx, nonce);
    co_await read_until(ws, buf, o.timeout, [&nonce](const nlohmann::json& j) {
        return j.value("type", "") == "message" && j.contains("data") && j["data"] == nonce;
    });
    out.latency_ms.push_back(ms_since(sent));
}

template <class WS>
asio::awaitable<void> session(WS& ws, const probe_options& o, const endpoint& ep,
                              const tcp::resolver::results_type& addrs, ssl::context* ctx,
                              clock_type::time_point t0, outcome& out) {
    co_await open(ws.next_layer(), ep, addrs, o.timeout);
    const auto signed_at = std::chrono::system_clock::now();
    const std::string bearer = !o.jwt_secret.empty() ? sign_token(o)
                               : !o.token.empty()    ? o.token
                                                     : o.api_key;
    ws.set_option(websocket::stream_base::decorator([&bearer](websocket::request_type& req) {
        if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
    }));
    co_await ws.async_handshake(ep.host + ":" + ep.port, "/ws", use_awaitable);
    beast::flat_buffer buf;
    nlohmann::json sub;
    sub["op"] = "subscribe";
    sub["id"] = "probe";
    sub["topic"] = o.topic;
    co_await send_op(ws, sub.dump(), o.timeout);
    // Subscribed once the server confirms the topic (an error frame is the refusal).
    co_await read_until(ws, buf, o.timeout, [](const nlohmann::json& j) {
        return j.value("type", "") == "ok" && j.value("op", "") == "subscribe";
    });
    out.connect_ms = ms_since(t0);
    std::random_device rd;
    const auto run = std::to_string(rd());
    for (int i = 0; i < o.count; ++i)
        co_await round_trip(ws, buf, o, ep, addrs, ctx,
                            "herald-probe " + run + " " + std::to_string(i), out);
    if (!o.jwt_secret.empty()) {
        // Token renewal: refresh at half the token's life, then prove the stream outlived the
        // first token (the server closes 4001 at its exp) with one more message.
        asio::steady_timer timer(co_await asio::this_coro::executor);
        const auto wait_until = [&](std::chrono::system_clock::time_point at) {
            timer.expires_after(std::max(at - std::chrono::system_clock::now(),
                                         std::chrono::system_clock::duration::zero()));
            return timer.async_wait(use_awaitable);
        };
        const auto expiry = signed_at + o.token_ttl;
        co_await wait_until(signed_at + o.token_ttl / 2);
        const auto asked = clock_type::now();
        nlohmann::json refresh;
        refresh["op"] = "refresh";
        refresh["id"] = "probe-refresh";
        refresh["token"] = sign_token(o);
        co_await send_op(ws, refresh.dump(), o.timeout);
        co_await read_until(ws, buf, o.timeout, [](const nlohmann::json& j) {
            return j.value("type", "") == "ok" && j.value("op", "") == "refresh";
        });
        out.refresh_ms = ms_since(asked);
        // Past the first token's exp (the server checks every 250 ms), before the new one's:
        // that is at least 1.5 * token_ttl - 1 s after signed_at (exp is in whole seconds).
        co_await wait_until(expiry + std::chrono::milliseconds(500));
        co_await round_trip(ws, buf, o, ep, addrs, ctx, "herald-probe " + run + " renewed", out);
    }
    beast::get_lowest_layer(ws).expires_after(o.timeout);
    co_await ws.async_close(websocket::close_code::normal, use_awaitable);
}

asio::awaitable<void> probe(const probe_options& o, outcome& out) {
    auto ex = co_await asio::this_coro::executor;
    const auto ep = parse_url(o.url);
    const auto t0 = clock_type::now();
    tcp::resolver resolver(ex);
    const auto addrs = co_await resolver.async_resolve(ep.host, ep.port, use_awaitable);
    if (ep.tls) {
        const auto ctx = client_context(o);
        websocket::stream<tls_stream> ws(ex, *ctx);
        co_await session(ws, o, ep, addrs, ctx.get(), t0, out);
    } else {
        websocket::stream<beast::tcp_stream> ws(ex);
        co_await session(ws, o, ep, addrs, nullptr, t0, out);
    }
}

}  // namespace

int run_probe(const probe_options& o) {
    asio::io_context ioc;
    outcome out;
    std::string error;
    asio::co_spawn(ioc, probe(o, out), [&error](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const beast::system_error& se) {
            error = se.code() == beast::error::timeout ? "timeout" : se.code().message();
        } catch (const std::exception& ex) {
            error = ex.what();
        }
    });
    ioc.run();
    nlohmann::json line{{"ok", error.empty()}, {"url", o.url}, {"topic", o.topic}};
    if (!error.empty()) {
        line["error"] = error;
        std::cout << line.dump() << std::endl;
        std::cerr << "herald: probe failed: " << error << '\n';
        return 1;
    }
    line["connect_ms"] = out.connect_ms;
    line["latency_ms"] = out.latency_ms;
    double max = 0;
    for (double v : out.latency_ms) max = std::max(max, v);
    line["max_latency_ms"] = max;
    if (out.refresh_ms) {
        line["refreshed"] = true;
        line["refresh_ms"] = *out.refresh_ms;
    }
    std::cout << line.dump() << std::endl;
    return 0;
}

}  // namespace herald::app
