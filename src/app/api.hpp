#pragma once
// The HTTP API beside the streams: publish, history, health, readiness and metrics.
#include "herald/broker/broker.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/http_api.hpp"
#include "herald/net/worker_context.hpp"

#include <functional>

namespace herald::app {

class api final : public net::http_api {
public:
    // Closes `user`'s connections on every worker of this instance; `done(count)` runs on worker
    // `from`. The broker tells the other instances.
    using disconnect_fn =
        std::function<void(unsigned from, std::string user, std::function<void(std::size_t)> done)>;
    void set_disconnect(disconnect_fn fn) { disconnect_ = std::move(fn); }
    // More series for /metrics (hooks, webhooks), read when /metrics is asked for.
    using metrics_fn = std::function<std::vector<metrics::registry::gauge>()>;
    void set_extra_metrics(metrics_fn fn) { extra_metrics_ = std::move(fn); }
    // Reloads the config (server.cpp); `done` runs on worker `from` with the report (JSON) or,
    // when the file has errors and nothing changed, the error.
    using reload_fn = std::function<void(
        unsigned from, std::function<void(bool ok, std::string report_or_error)> done)>;
    void set_reload(reload_fn fn) { reload_ = std::move(fn); }
    // The busiest topics of every owner shard, merged (server.cpp); `done` runs on worker `from`.
    using busiest_fn =
        std::function<void(unsigned from, std::function<void(hub::busiest_topics)> done)>;
    void set_busiest(busiest_fn fn) { busiest_ = std::move(fn); }

    api(const config::settings& cfg, metrics::registry& metrics, broker::broker& broker,
        net::process_state& state);
    void handle(net::worker_context& w, net::http_request& req, net::responder r) override;

private:
    void publish_one(net::worker_context& w, net::http_request& req, const std::string& topic,
                     net::responder r);
    // A checked message of POST /publish/<topic> to the broker, and its answer.
    // Takes `p` and `r` (moved from once, into the broker's completion).
    void send_one(net::worker_context& w, hub::publish_request&& p, net::responder&& r,
                  time_point t0);
    void publish_json(net::worker_context& w, const net::http_request& req, net::responder r);
    // The checked messages of a POST /publish, to the broker; one answer with every result.
    void publish_batch(net::worker_context& w, std::vector<hub::publish_request> out,
                       net::responder r);
    void history(net::worker_context& w, const net::http_request& req, const std::string& topic,
                 net::responder r);
    void presence(net::worker_context& w, std::string_view rest, net::responder r);
    void health(net::endpoint_id id, net::responder r);
    // /readyz's status and body.
    [[nodiscard]] std::pair<int, std::string> readiness() const;
    // The admin page (admin_page.cpp).
    void admin_page(net::worker_context& w, const net::http_request& req, net::responder r);
    void admin_login(net::worker_context& w, const net::http_request& req, net::responder r);
    void admin_stats(net::worker_context& w, net::responder r);
    void admin_stats_answer(net::responder r, hub::busiest_topics busiest);
    void metrics_text(net::responder r);
    void admin_disconnect(net::worker_context& w, const net::http_request& req, net::responder r);
    void admin_reload(net::worker_context& w, const net::http_request& req, net::responder r);

    const config::settings& cfg_;
    metrics::registry& metrics_;
    broker::broker& broker_;
    net::process_state& state_;
    disconnect_fn disconnect_;
    metrics_fn extra_metrics_;
    reload_fn reload_;
    busiest_fn busiest_;
};

}  // namespace herald::app
