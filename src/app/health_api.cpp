// GET /healthz (the process answers), GET /readyz (it takes traffic: started, not draining, the
// broker ready) and GET /metrics (Prometheus text).
#include "api.hpp"

#include "herald/wire/envelope.hpp"

#ifndef HERALD_VERSION
#define HERALD_VERSION "0.1.0"
#endif
#ifndef HERALD_COMMIT
#define HERALD_COMMIT "unknown"
#endif

namespace herald::app {

namespace {
// /readyz while a broker link is down: {"status":"unavailable","error":{"code":"broker_down",...}}
std::string broker_down_body(std::string reason) {
    if (reason.empty()) reason = "the broker is not ready";  // it recovered meanwhile
    return "{\"status\":\"unavailable\",\"error\":{\"code\":\"broker_down\",\"message\":" +
           wire::json_quote(reason) + "}}";
}

}  // namespace

std::pair<int, std::string> api::readiness() const {
    if (state_.draining.load(std::memory_order_relaxed))
        return {503,
                "{\"status\":\"draining\",\"error\":{\"code\":\"draining\",\"message\":"
                "\"shutting down\"}}"};
    if (!state_.ready.load(std::memory_order_relaxed))
        return {503,
                "{\"status\":\"starting\",\"error\":{\"code\":\"not_ready\",\"message\":\"not "
                "ready\"}}"};
    if (!broker_.ready()) return {503, broker_down_body(broker_.not_ready_reason())};
    return {200, "{\"status\":\"ready\"}"};
}

void api::health(net::endpoint_id id, net::responder r) {
    if (id == net::endpoint_id::healthz) {
        r.send(200, "application/json", "{\"status\":\"ok\"}");
        return;
    }
    const auto [status, body] = readiness();
    r.send(status, "application/json", body);
}

void api::metrics_text(net::responder r) {
    std::vector<metrics::registry::gauge> extra = {
        {"herald_ready", "1 when /readyz answers 200.",
         state_.ready.load() && !state_.draining.load() && broker_.ready() ? 1.0 : 0.0},
        {"herald_draining", "1 while shutting down.", state_.draining.load() ? 1.0 : 0.0},
        {"herald_history_bytes", "Bytes held by message history.",
         static_cast<double>(broker_.history_bytes())},
        {"herald_open_sockets", "TCP connections open (all transports).",
         static_cast<double>(state_.connections.load())},
    };
    {
        metrics::registry::gauge info{"herald_build_info",
                                      "1, labelled with the version and commit of this binary.", 1};
        info.samples.emplace_back("{version=\"" HERALD_VERSION "\",commit=\"" HERALD_COMMIT "\"}",
                                  1.0);
        extra.push_back(std::move(info));
    }
    for (auto& g : broker_.metrics()) extra.push_back(std::move(g));
    if (extra_metrics_)
        for (auto& g : extra_metrics_()) extra.push_back(std::move(g));
    r.send(200, "text/plain; version=0.0.4", metrics_.render(extra));
}

}  // namespace herald::app
