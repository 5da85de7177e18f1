#include "herald/metrics/metrics.hpp"

#include <iomanip>
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
        "bad_config",
        "unknown_op",
        "not_subscribed",
        "bad_since",
        "binary_not_supported",
    };
    static_assert(std::size(names) == static_cast<std::size_t>(reject::count_));
    auto i = static_cast<std::size_t>(r);
    return i < std::size(names) ? names[i] : "unknown";
}

const char* to_string(resume_outcome o) noexcept {
    switch (o) {
        case resume_outcome::recovered: return "recovered";
        case resume_outcome::reset: return "reset";
        case resume_outcome::too_old: return "too_old";
        case resume_outcome::count_: break;
    }
    return "unknown";
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

void registry::append_histogram(std::vector<std::pair<std::string, double>>& samples,
                                std::string_view labels, const histogram_totals& h) {
    // Built with append: GCC 12 reports a false -Wrestrict on chained string operator+.
    std::int64_t cumulative = 0;
    for (std::size_t b = 0; b < h.buckets.size(); ++b) {
        cumulative += h.buckets[b];
        std::string s = "_bucket{";
        if (!labels.empty()) s.append(labels).append(",");
        s.append("le=\"");
        s.append(b < histogram::k_bounds_text.size() ? histogram::k_bounds_text[b] : "+Inf");
        s.append("\"}");
        samples.emplace_back(std::move(s), static_cast<double>(cumulative));
    }
    std::string braces;
    if (!labels.empty()) braces.append("{").append(labels).append("}");
    samples.emplace_back("_sum" + braces, static_cast<double>(h.sum_ns) / 1e9);
    samples.emplace_back("_count" + braces, static_cast<double>(cumulative));
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
    scalar("herald_delivery_held_total", "counter",
           "Messages held back for a subscriber (slow_consumer backlog or delivery_interval).",
           &worker_counters::messages_held);
    scalar("herald_delivery_interval_flushes_total", "counter",
           "Batches a subscription's delivery_interval released (one gathered write each).",
           &worker_counters::interval_flushes);
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
    header("herald_resumes_total", "counter",
           "Resumes (subscribes with a position) by outcome: recovered, reset, too_old.");
    for (std::size_t r = 0; r < static_cast<std::size_t>(resume_outcome::count_); ++r)
        o << "herald_resumes_total{outcome=\"" << to_string(static_cast<resume_outcome>(r))
          << "\"} " << sum([&](worker_counters& w) -> counter& { return w.resumes[r]; }) << '\n';
    per_transport("herald_reconnections_total", "counter",
                  "Connections that resumed with a position (Last-Event-ID, since).",
                  &worker_counters::reconnections);
    // Operations: histograms and per-worker gauges, rendered after the app's `extra` below.
    std::vector<gauge> ops;
    auto totals = [this](auto field) {
        histogram_totals t;
        for (const auto& w : workers_) t.add(field(*w));
        return t;
    };
    {
        gauge g{"herald_delivery_latency_seconds",
                "Publish to the socket write that sent a message (poll: the answer), by transport.",
                0, "histogram"};
        for (auto t : {transport::ws, transport::sse, transport::poll})
            append_histogram(g.samples, std::string("transport=\"") + to_string(t) + "\"",
                             totals([t](worker_counters& w) -> histogram& {
                                 return w.delivery_latency[static_cast<std::size_t>(t)];
                             }));
        ops.push_back(std::move(g));
    }
    auto single = [&](const char* name, const char* help, histogram worker_counters::*member) {
        gauge g{name, help, 0, "histogram"};
        append_histogram(g.samples, {},
                         totals([&](worker_counters& w) -> histogram& { return w.*member; }));
        ops.push_back(std::move(g));
    };
    single("herald_publish_duration_seconds", "HTTP publish requests: request read to answer.",
           &worker_counters::publish_duration);
    single("herald_subscribe_duration_seconds",
           "Subscribes and resumes: asked to answered by the topic's owner (with the replay).",
           &worker_counters::subscribe_duration);
    {
        gauge lag{"herald_event_loop_lag_seconds",
                  "How late each worker's 250 ms sweep timer ran (event-loop lag), by worker.", 0,
                  "histogram"};
        gauge queued{"herald_queued_bytes",
                     "Bytes waiting in client send queues, per worker, at its last sweep.", 0};
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            histogram_totals t;
            t.add(workers_[i]->loop_lag);
            const std::string label = "worker=\"" + std::to_string(i) + "\"";
            append_histogram(lag.samples, label, t);
            queued.samples.emplace_back("{" + label + "}",
                                        static_cast<double>(workers_[i]->queued_bytes.get()));
        }
        ops.push_back(std::move(lag));
        ops.push_back(std::move(queued));
    }
    // Integral values (bytes, counts) print every digit, not a rounded exponent form.
    auto number = [&o](double v) {
        if (v == static_cast<double>(static_cast<std::int64_t>(v)))
            o << static_cast<std::int64_t>(v);
        else  // sums of seconds: 12 digits keep microseconds of a day-long total
            o << std::setprecision(12) << v << std::setprecision(6);
    };
    for (const std::vector<gauge>* list : {&extra, static_cast<const std::vector<gauge>*>(&ops)})
        for (const auto& g : *list) {
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
