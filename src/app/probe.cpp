#include "herald/app/probe.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <random>
#include <stdexcept>

namespace herald::app {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::use_awaitable;
using clock_type = std::chrono::steady_clock;

struct endpoint {
    std::string host;
    std::string port;
};

// http://host[:port][/...] or ws://...; TLS is not supported by the probe.
endpoint parse_url(std::string_view url) {
    for (std::string_view scheme : {"http://", "ws://"})
        if (url.starts_with(scheme)) url.remove_prefix(scheme.size());
    if (url.find("://") != std::string_view::npos)
        throw std::runtime_error("only http:// and ws:// URLs (no TLS) are supported");
    url = url.substr(0, url.find('/'));
    if (url.empty()) throw std::runtime_error("no host in the URL");
    const auto colon = url.rfind(':');
    if (colon == std::string_view::npos) return {std::string(url), "80"};
    return {std::string(url.substr(0, colon)), std::string(url.substr(colon + 1))};
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct outcome {
    double connect_ms = 0;
    std::vector<double> latency_ms;
};

asio::awaitable<void> publish(const probe_options& o, const endpoint& ep,
                              const tcp::resolver::results_type& addrs, const std::string& body) {
    beast::tcp_stream s(co_await asio::this_coro::executor);
    s.expires_after(o.timeout);
    co_await s.async_connect(addrs, use_awaitable);
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

asio::awaitable<void> probe(const probe_options& o, outcome& out) {
    auto ex = co_await asio::this_coro::executor;
    const auto ep = parse_url(o.url);
    const auto t0 = clock_type::now();
    tcp::resolver resolver(ex);
    const auto addrs = co_await resolver.async_resolve(ep.host, ep.port, use_awaitable);
    websocket::stream<beast::tcp_stream> ws(ex);
    auto& sock = beast::get_lowest_layer(ws);
    sock.expires_after(o.timeout);
    co_await sock.async_connect(addrs, use_awaitable);
    const std::string bearer = !o.token.empty() ? o.token : o.api_key;
    ws.set_option(websocket::stream_base::decorator([&bearer](websocket::request_type& req) {
        if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
    }));
    co_await ws.async_handshake(ep.host + ":" + ep.port, "/ws", use_awaitable);
    sock.expires_after(o.timeout);
    nlohmann::json sub;
    sub["op"] = "subscribe";
    sub["id"] = "probe";
    sub["topic"] = o.topic;
    const std::string sub_text = sub.dump();
    co_await ws.async_write(asio::buffer(sub_text), use_awaitable);
    beast::flat_buffer buf;
    // Subscribed once the server confirms the topic (an error frame is the refusal).
    for (;;) {
        sock.expires_after(o.timeout);
        co_await ws.async_read(buf, use_awaitable);
        auto j = nlohmann::json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
        buf.consume(buf.size());
        if (!j.is_object()) continue;
        if (j.value("type", "") == "error")
            throw std::runtime_error("subscribe refused: " + j.dump());
        if (j.value("type", "") == "ok" && j.value("op", "") == "subscribe") break;
    }
    out.connect_ms = ms_since(t0);
    std::random_device rd;
    const auto run = std::to_string(rd());
    for (int i = 0; i < o.count; ++i) {
        const std::string nonce = "herald-probe " + run + " " + std::to_string(i);
        const auto sent = clock_type::now();
        co_await publish(o, ep, addrs, nonce);
        // Latency: publish sent -> message read here (read after the publish's answer, so an
        // upper bound when delivery beats the answer).
        for (;;) {
            sock.expires_after(o.timeout);
            co_await ws.async_read(buf, use_awaitable);
            auto j = nlohmann::json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
            buf.consume(buf.size());
            if (j.is_object() && j.value("type", "") == "message" && j.contains("data") &&
                j["data"] == nonce)
                break;
        }
        out.latency_ms.push_back(ms_since(sent));
    }
    sock.expires_after(o.timeout);
    co_await ws.async_close(websocket::close_code::normal, use_awaitable);
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
    std::cout << line.dump() << std::endl;
    return 0;
}

}  // namespace herald::app
