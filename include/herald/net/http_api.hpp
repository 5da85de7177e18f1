#pragma once
// The seam between transport and application: the HTTP session parses requests, routes them
// through the endpoint table (authorization included) and serves the streaming endpoints
// (/ws, /sse, /poll) itself; every other row goes to an http_api.
#include "herald/net/endpoints.hpp"
#include "herald/net/http_request_head.hpp"
#include "herald/net/http_util.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace herald::net {

class http_session;
class worker_context;

struct http_request {
    request_head raw;
    url target;
    std::string client_ip;  // the TCP peer, or X-Forwarded-For's client behind a trusted proxy
    const endpoint* route = nullptr;  // the table row, set (and authorized) before dispatch

    [[nodiscard]] boost::beast::http::verb method() const { return raw.method(); }
    [[nodiscard]] std::string_view header(std::string_view name) const noexcept {
        return raw.header(name);
    }
    [[nodiscard]] std::string_view header(request_head::known k) const noexcept {
        return raw.header(k);
    }
    [[nodiscard]] const std::string& body() const { return raw.body(); }
};

// Completes one request; safe to call after the connection closed (then it does nothing).
// Runs on the session's worker.
class responder {
public:
    responder(std::weak_ptr<http_session> s, std::uint64_t seq, bool keep_alive,
              std::string extra = {})
        : session_(std::move(s)), seq_(seq), keep_alive_(keep_alive), extra_(std::move(extra)) {}

    void send(int status, std::string_view content_type, std::string_view body,
              std::string_view extra_headers = {}) const;
    void error(metrics::reject reason, std::string_view message,
               std::string_view extra_headers = {}) const;
    [[nodiscard]] bool keep_alive() const noexcept { return keep_alive_; }

private:
    std::weak_ptr<http_session> session_;
    std::uint64_t seq_;
    bool keep_alive_;
    std::string extra_;  // headers every answer carries (CORS)
};

class http_api {
public:
    virtual ~http_api() = default;
    // `req` is the handler's to take from (a publish moves its body into the message).
    virtual void handle(worker_context& w, http_request& req, responder r) = 0;
};

}  // namespace herald::net
