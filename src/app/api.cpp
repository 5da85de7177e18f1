// The router's handlers (net::http_api): one switch from the endpoint row to its handler; the
// handlers live in publish_api.cpp, history_api.cpp, admin_api.cpp and health_api.cpp.
#include "api.hpp"

#include "client_js.hpp"

namespace herald::app {

using metrics::reject;

api::api(const config::settings& cfg, metrics::registry& metrics, broker::broker& broker,
         net::process_state& state)
    : cfg_(cfg), metrics_(metrics), broker_(broker), state_(state) {}

void api::handle(net::worker_context& w, net::http_request& req, net::responder r) {
    // The router (net/endpoints.hpp) has matched the row, its method and its authorization.
    using net::endpoint_id;
    const auto& path = req.target.path;
    switch (req.route ? req.route->id : endpoint_id::ws) {
        case endpoint_id::healthz:
        case endpoint_id::readyz: health(req.route->id, r); return;
        case endpoint_id::metrics: metrics_text(r); return;
        case endpoint_id::admin_disconnect: admin_disconnect(w, req, r); return;
        case endpoint_id::admin_reload: admin_reload(w, req, r); return;
        case endpoint_id::admin_page:
        case endpoint_id::admin_login:
        case endpoint_id::admin_stats:
            if (!cfg_.admin.enabled || !w.auth) break;  // 404: the page is off
            if (req.route->id == endpoint_id::admin_page)
                admin_page(w, req, r);
            else if (req.route->id == endpoint_id::admin_login)
                admin_login(w, req, r);
            else
                admin_stats(w, r);
            return;
        case endpoint_id::publish:
            w.counters.publish_requests.add();
            publish_json(w, req, r);
            return;
        case endpoint_id::publish_topic:
            w.counters.publish_requests.add();
            publish_one(w, req, path.substr(req.route->path.size()), r);
            return;
        case endpoint_id::history: history(w, req, path.substr(req.route->path.size()), r); return;
        case endpoint_id::presence: presence(w, path.substr(req.route->path.size()), r); return;
        case endpoint_id::client_js:
            // The ETag names the client's version and content; a page may cache it for an hour.
            r.send(200, "text/javascript; charset=utf-8", client_js(),
                   "Cache-Control: public, max-age=3600\r\nETag: " + std::string(client_js_etag()) +
                       "\r\n");
            return;
        case endpoint_id::ws:
        case endpoint_id::sse:
        case endpoint_id::poll: break;  // served by the HTTP session
    }
    r.error(reject::not_found, "no such endpoint: " + path);
}

}  // namespace herald::app
