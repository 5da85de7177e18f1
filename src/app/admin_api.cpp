// POST /admin/disconnect {"user": "<sub>"}: revocation, on this instance and, through the broker,
// on every other one. POST /admin/reload: the config file read again (see reload.hpp).
#include "api.hpp"

#include "herald/auth/context.hpp"

#include <nlohmann/json.hpp>

namespace herald::app {

using json = nlohmann::json;
using metrics::reject;

namespace {
// Collects the two halves of a revocation; both callbacks run on the same worker.
struct revocation {
    explicit revocation(net::responder r) : resp(std::move(r)) {}
    net::responder resp;
    std::size_t local = 0;
    broker::broadcast_result remote;
    int remaining = 2;

    void arrive() {
        if (--remaining > 0) return;
        if (!remote.delivered) {
            resp.error(reject::unavailable,
                       "closed " + std::to_string(local) +
                           " connections on this instance, but the broker is unavailable and "
                           "other instances were not told; retry",
                       "Retry-After: 1\r\n");
            return;
        }
        resp.send(200, "application/json",
                  "{\"disconnected\":" + std::to_string(local) +
                      ",\"instances\":" + std::to_string(remote.instances) + "}");
    }
};

// The API key an admin request came with, as its index ("key#0"), or "session" for the admin
// page's cookie: the router let it through, so it carries a valid one.
std::string admin_key(const net::worker_context& w, const net::http_request& req) {
    const auto bearer = auth::parse_bearer(req.header("Authorization"));
    if (!bearer && w.auth) return "session";
    const auto key = bearer && w.auth ? w.auth->publish_keys.match(*bearer) : std::nullopt;
    return key ? "key#" + std::to_string(*key) : "";
}

}  // namespace

void api::admin_disconnect(net::worker_context& w, const net::http_request& req, net::responder r) {
    json body = json::parse(req.body(), nullptr, false);
    auto u = body.is_object() ? body.find("user") : body.end();
    if (body.is_discarded() || !body.is_object() || u == body.end() || !u->is_string() ||
        u->get_ref<const std::string&>().empty()) {
        r.error(reject::bad_request, "body must be {\"user\": \"<sub of the user's tokens>\"}");
        return;
    }
    // This instance closes its connections itself, whatever the broker's state; the broker tells
    // the others. The answer waits for both (their callbacks run on this worker).
    auto t = std::make_shared<revocation>(r);
    auto user = u->get<std::string>();
    if (w.auth)
        w.auth->audit->admin_action("disconnect", "requested", admin_key(w, req), req.client_ip,
                                    user);
    broker_.broadcast_disconnect(w.id, user, [t](broker::broadcast_result b) {
        t->remote = b;
        t->arrive();
    });
    auto local = [t](std::size_t n) {
        t->local = n;
        t->arrive();
    };
    if (disconnect_)
        disconnect_(w.id, std::move(user), std::move(local));
    else
        local(0);
}

void api::admin_reload(net::worker_context& w, const net::http_request& req, net::responder r) {
    if (!reload_) {
        r.error(reject::unavailable, "reload is not available in this process");
        return;
    }
    // Audited once the outcome is known, naming the key the request came with.
    reload_(w.id,
            [r, &w, by = admin_key(w, req), client = req.client_ip](bool ok, std::string text) {
                if (w.auth)
                    w.auth->audit->admin_action("reload", ok ? "ok" : "bad_config", by, client);
                if (ok)
                    r.send(200, "application/json", text);
                else
                    r.error(reject::bad_config, "the config was not reloaded: " + text);
            });
}

}  // namespace herald::app
