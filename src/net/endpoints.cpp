#include "herald/net/endpoints.hpp"
#include "herald/wire/envelope.hpp"

#include "herald/net/http_util.hpp"

#include <array>

namespace herald::net {

namespace {
using verb = boost::beast::http::verb;
using auth::access_class;

// No path matches two rows (a unit test checks), so their order does not matter.
constexpr std::array k_endpoints{
    endpoint{endpoint_id::healthz, "/healthz", false, verb::get, access_class::open,
             topic_source::none, "liveness"},
    endpoint{endpoint_id::readyz, "/readyz", false, verb::get, access_class::open,
             topic_source::none, "readiness"},
    endpoint{endpoint_id::metrics, "/metrics", false, verb::get, access_class::open,
             topic_source::none, "Prometheus metrics"},
    endpoint{endpoint_id::ws, "/ws", false, verb::get, access_class::read,
             topic_source::query_optional, "WebSocket upgrade; the subscribe op is a read too"},
    endpoint{endpoint_id::sse, "/sse", false, verb::get, access_class::read, topic_source::query,
             "Server-Sent Events stream"},
    endpoint{endpoint_id::poll, "/poll", false, verb::get, access_class::read, topic_source::query,
             "long-poll"},
    endpoint{endpoint_id::history, "/history/", true, verb::get, access_class::read,
             topic_source::path, "a topic's history"},
    endpoint{endpoint_id::publish, "/publish", false, verb::post, access_class::publish,
             topic_source::none, "publish (JSON, batches)"},
    endpoint{endpoint_id::publish_topic, "/publish/", true, verb::post, access_class::publish,
             topic_source::none, "publish one message"},
    endpoint{endpoint_id::admin_disconnect, "/admin/disconnect", false, verb::post,
             access_class::admin, topic_source::none, "revoke a user's connections"},
    endpoint{endpoint_id::admin_reload, "/admin/reload", false, verb::post, access_class::admin,
             topic_source::none, "re-read the config file and apply what can change live"},
    endpoint{endpoint_id::client_js, "/client/herald.js", false, verb::get, access_class::open,
             topic_source::none, "the JavaScript client (clients/js/herald.js)"},
    // Who is subscribed, with user ids and `info`: keyed, never opened to clients (they read it
    // with the WebSocket op, under presence.client_read).
    endpoint{endpoint_id::presence, "/presence/", true, verb::get, access_class::admin,
             topic_source::none, "a topic's presence ({topic} or {topic}/count)"},
    // The admin page (admin.enabled, else 404). Open rows because a browser navigates without a
    // Bearer header: the handler shows the login form unless the request carries a valid admin
    // session (the same check authorize() makes), and the login checks the API key itself.
    endpoint{endpoint_id::admin_page, "/admin", false, verb::get, access_class::open,
             topic_source::none, "the admin page; a login form without an admin session"},
    endpoint{endpoint_id::admin_login, "/admin/login", false, verb::post, access_class::open,
             topic_source::none, "admin login: an API key (form field `key`) for a session cookie"},
    endpoint{endpoint_id::admin_stats, "/admin/stats", false, verb::get, access_class::admin,
             topic_source::none, "the admin page's live figures (JSON)"},
};

std::string_view topics_name(topic_source t) noexcept {
    switch (t) {
        case topic_source::none: return "none";
        case topic_source::query: return "query";
        case topic_source::query_optional: return "query_optional";
        case topic_source::path: return "path";
    }
    return "?";
}
}  // namespace

std::span<const endpoint> endpoints() noexcept {
    return k_endpoints;
}

const endpoint* find_endpoint(std::string_view path) noexcept {
    for (const auto& e : k_endpoints)
        if (e.prefix ? path.starts_with(e.path) : path == e.path) return &e;
    return nullptr;
}

std::string endpoint_json(const endpoint& e) {
    const auto method = boost::beast::http::to_string(e.method);
    return "{\"path\":" + wire::json_quote(e.path) + ",\"match\":\"" +
           (e.prefix ? "prefix" : "exact") + "\",\"methods\":[" +
           wire::json_quote(std::string_view(method.data(), method.size())) + "],\"access\":\"" +
           std::string(auth::to_string(e.access)) + "\",\"topics\":\"" +
           std::string(topics_name(e.topics)) + "\",\"summary\":" + wire::json_quote(e.summary) +
           "}";
}

}  // namespace herald::net
