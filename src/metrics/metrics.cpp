#include "herald/metrics/metrics.hpp"

#include <sstream>

namespace herald::metrics {

const char* to_string(transport t) noexcept {
    switch (t) {
        case transport::http: return "http";
        case transport::ws: return "ws";
        case transport::sse: return "sse";
        case transport::poll: return "poll";
        case transport::count_: break;
    }
    return "unknown";
}

const char* to_string(reject r) noexcept {
    static constexpr const char* names[] = {
        "bad_topic",
        "bad_json",
        "bad_request",
        "bad_event",
        "bad_encoding",
        "bad_last_event_id",
        "bad_cursor",
        "bad_idempotency_key",
        "too_many_topics",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "headers_too_large",
        "header_timeout",
        "over_capacity",
        "draining",
        "unavailable",
        "unknown",
        "forbidden",
        "unauthorized",
        "rate_limited",
        "quota_exceeded",
        "disconnected",
        "ws_protocol_error",
        "ws_invalid_utf8",
        "ws_message_too_big",
        "ws_bad_op",
        "tls_required",
        "unknown_op",
        "not_subscribed",
        "bad_since",
        "binary_not_supported",
    };
    static_assert(std::size(names) == static_cast<std::size_t>(reject::count_));
    auto i = static_cast<std::size_t>(r);
    return i < std::size(names) ? names[i] : "unknown";
}

std::optional<reject> reject_named(std::string_view code) noexcept {
    for (std::size_t r = 0; r < static_cast<std::size_t>(reject::count_); ++r)
        if (code == to_string(static_cast<reject>(r))) return static_cast<reject>(r);
    return std::nullopt;
}

registry::registry(unsigned workers) {
    for (unsigned i = 0; i < workers; ++i) workers_.push_back(std::make_unique<worker_counters>());
}

std::int64_t registry::open_connections(transport t) const noexcept {
    std::int64_t n = 0;
    for (const auto& w : workers_) n += w->connections[static_cast<std::size_t>(t)].get();
    return n;
}

std::string registry::render(const std::vector<gauge>& extra) const {
    std::ostringstream o;
    auto sum = [this](auto field) {
        std::int64_t n = 0;
        for (const auto& w : workers_) n += field(*w).get();
        return n;
    };
    auto header = [&o](const char* name, const char* type, const char* help) {
        o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    };
    auto per_transport = [&](const char* name, const char* type, const char* help, auto member) {
        header(name, type, help);
        for (std::size_t t = 0; t < static_cast<std::size_t>(transport::count_); ++t)
            o << name << "{transport=\"" << to_string(static_cast<transport>(t)) << "\"} "
              << sum([&](worker_counters& w) -> counter& { return (w.*member)[t]; }) << '\n';
    };
    per_transport("herald_connections", "gauge", "Open client connections by transport.",
                  &worker_counters::connections);
    per_transport("herald_connections_total", "counter", "Client connections opened, by transport.",
                  &worker_counters::connections_total);
    per_transport("herald_slow_consumers_total", "counter",
                  "Connections closed because their send queue passed limits.max_queued_bytes.",
                  &worker_counters::slow_consumers);
    header("herald_rejected_requests_total", "counter",
           "Requests, ops and frames rejected, by reason.");
    for (std::size_t r = 0; r < static_cast<std::size_t>(reject::count_); ++r)
        o << "herald_rejected_requests_total{reason=\"" << to_string(static_cast<reject>(r))
          << "\"} " << sum([&](worker_counters& w) -> counter& { return w.rejected[r]; }) << '\n';
    auto scalar = [&](const char* name, const char* type, const char* help,
                      counter worker_counters::*member) {
        header(name, type, help);
        o << name << ' ' << sum([&](worker_counters& w) -> counter& { return w.*member; }) << '\n';
    };
    scalar("herald_publish_requests_total", "counter", "Publish requests (HTTP and WebSocket).",
           &worker_counters::publish_requests);
    scalar("herald_messages_published_total", "counter", "Messages accepted and given an offset.",
           &worker_counters::messages_published);
    scalar("herald_duplicate_publishes_total", "counter",
           "Publishes answered from the idempotency window.", &worker_counters::duplicates);
    scalar("herald_frames_delivered_total", "counter", "Messages handed to client connections.",
           &worker_counters::frames_delivered);
    scalar("herald_slow_consumer_dropped_total", "counter",
           "Messages a backlogged subscriber (slow_consumer drop_oldest or conflate) never got "
           "(the client was sent a reset).",
           &worker_counters::messages_dropped);
    scalar("herald_slow_consumer_conflated_total", "counter",
           "Messages a backlogged subscriber (slow_consumer conflate) got a newer one of the same "
           "key instead of.",
           &worker_counters::messages_conflated);
    scalar("herald_bytes_out_total", "counter", "Bytes written to client sockets.",
           &worker_counters::bytes_out);
    scalar("herald_socket_writes_total", "counter",
           "Socket write calls (corking makes these fewer than frames).",
           &worker_counters::write_calls);
    scalar("herald_corked_flushes_total", "counter",
           "Flush passes a busy worker delayed so that more frames share each write.",
           &worker_counters::corked_flushes);
    scalar("herald_pong_timeouts_total", "counter",
           "WebSocket connections closed for a missing pong.", &worker_counters::pong_timeouts);
    scalar("herald_resumes_recovered_total", "counter", "Resumes that replayed the whole gap.",
           &worker_counters::resumes_recovered);
    scalar("herald_resumes_failed_total", "counter", "Resumes answered recovered=false / reset.",
           &worker_counters::resumes_failed);
    scalar("herald_subscriptions", "gauge", "Active subscriptions.",
           &worker_counters::subscriptions);
    scalar("herald_tls_handshakes_total", "counter", "TLS handshakes completed.",
           &worker_counters::tls_handshakes);
    scalar("herald_tls_errors_total", "counter",
           "TLS failures: bad handshakes or records, peers gone before finishing the handshake.",
           &worker_counters::tls_errors);
    // Integral values (bytes, counts) print every digit, not a rounded exponent form.
    auto number = [&o](double v) {
        if (v == static_cast<double>(static_cast<std::int64_t>(v)))
            o << static_cast<std::int64_t>(v);
        else
            o << v;
    };
    for (const auto& g : extra) {
        header(g.name.c_str(), g.type.c_str(), g.help.c_str());
        if (g.samples.empty()) {
            o << g.name << ' ';
            number(g.value);
            o << '\n';
        }
        for (const auto& [suffix, v] : g.samples) {
            o << g.name << suffix << ' ';
            number(v);
            o << '\n';
        }
    }
    return o.str();
}

}  // namespace herald::metrics
