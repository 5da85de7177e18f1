// Backend hooks before a stream starts: the connect hook (with the headers it forwards and the
// URL's topics), then the subscribe hook for every topic, in parallel. Only when all allow does
// the request go on to the WebSocket upgrade, the SSE start or the long-poll, with the user,
// `info` and extra topics the connect hook gave.
#include "herald/auth/context.hpp"
#include "herald/net/hooks.hpp"
#include "herald/wire/envelope.hpp"
#include "sessions.hpp"

#include <algorithm>

namespace herald::net {

using metrics::reject;

namespace {
struct gate {
    std::uint64_t seq = 0;
    http_request req;
    std::vector<std::string> topics;
    std::unique_ptr<auth::token_claims> claims;
    bool keep_alive = false;
    std::string cors;
    std::string transport;
    std::size_t waiting = 0;  // subscribe hooks not answered yet
    std::optional<hook_verdict> refusal;
};

const char* transport_of(endpoint_id id) {
    switch (id) {
        case endpoint_id::ws: return "ws";
        case endpoint_id::sse: return "sse";
        default: return "poll";
    }
}
}  // namespace

void http_session::gate_stream(std::uint64_t seq, http_request req, std::vector<std::string> topics,
                               std::unique_ptr<auth::token_claims> claims, bool keep_alive) {
    std::string ip;
    if (!admit_stream(seq, req, ip)) return;
    hooked_ip_ = std::move(ip);
    hook_pending_ = true;
    auto g = std::make_shared<gate>();
    g->seq = seq;
    g->req = std::move(req);
    g->topics = std::move(topics);
    g->claims = std::move(claims);
    g->keep_alive = keep_alive;
    g->cors = cors_;
    g->transport = transport_of(g->req.route->id);
    auto self = std::static_pointer_cast<http_session>(shared_from_this());

    // Runs once every hook answered (or one refused): the stream starts, or the client gets
    // the refusal. The session may have closed meanwhile (on_close released the slot).
    auto finish = [self, g] {
        auto& s = *self;
        if (s.closed()) return;
        s.hook_pending_ = false;
        s.cors_ = g->cors;
        if (s.w_.state.draining.load(std::memory_order_relaxed)) {
            // The drain began while the backend was asked: no new stream now.
            s.fail_request(g->seq, reject::draining, "the server is shutting down; reconnect",
                           false);
        } else if (g->refusal) {
            const auto& v = *g->refusal;
            if (v.from_error)
                s.fail_request(g->seq, reject::unavailable,
                               "the application's backend did not answer; retry", false,
                               "Retry-After: 1\r\n");
            else
                s.fail_request(g->seq, reject::forbidden, v.message, false);
        } else {
            s.start_stream(g->seq, g->req, g->topics, std::move(g->claims), g->keep_alive);
        }
        // Not consumed (refused, or refused by a check before admission): give it back.
        if (!s.hooked_ip_.empty() && s.w_.auth)
            s.w_.auth->release_stream(std::exchange(s.hooked_ip_, {}));
        s.cors_.clear();
        s.process();
        s.settle();
    };

    auto subscribe_all = [self, g, finish] {
        auto& h = *self->w_.hooks;
        if (!h.enabled(hook_kind::subscribe) || g->topics.empty()) {
            finish();
            return;
        }
        g->waiting = g->topics.size();
        const auto headers = h.forwarded(hook_kind::subscribe, g->req);
        const hook_client_info who{g->req.client_ip, g->transport,
                                   g->claims ? std::string_view(g->claims->sub) : "",
                                   g->claims ? std::string_view(g->claims->info) : ""};
        for (const auto& t : g->topics) {
            h.call(hook_kind::subscribe, hook_caller::subscribe_body(who, headers, t), headers,
                   [g, finish](hook_verdict v) {
                       if (!v.allow && !g->refusal) g->refusal = std::move(v);
                       if (--g->waiting == 0) finish();
                   });
        }
    };

    auto& h = *w_.hooks;
    if (!h.enabled(hook_kind::connect)) {
        subscribe_all();
        return;
    }
    auto headers = h.forwarded(hook_kind::connect, g->req);
    const hook_client_info who{g->req.client_ip, g->transport,
                               g->claims ? std::string_view(g->claims->sub) : "", ""};
    auto body = hook_caller::connect_body(who, headers, g->topics);
    h.call(hook_kind::connect, std::move(body), std::move(headers),
           [self, g, finish, subscribe_all](hook_verdict v) {
               if (self->closed()) return;
               if (!v.allow) {
                   g->refusal = std::move(v);
                   finish();
                   return;
               }
               if (!v.user.empty() || !v.info.empty()) {
                   if (!g->claims) g->claims = std::make_unique<auth::token_claims>();
                   g->claims->from_hook = true;
                   g->claims->token_sub = g->claims->sub;
                   if (!v.user.empty()) g->claims->sub = std::move(v.user);
                   g->claims->info = std::move(v.info);
               }
               // The backend grants these topics itself; they are subscribed like the URL's
               // (a long-poll reads its one topic only).
               if (g->req.route->id == endpoint_id::poll) v.topics.clear();
               for (auto& t : v.topics)
                   if (std::find(g->topics.begin(), g->topics.end(), t) == g->topics.end())
                       g->topics.push_back(std::move(t));
               const auto max = self->w_.cfg.limits.max_topics_per_connection;
               if (g->topics.size() > max) g->topics.resize(max);
               subscribe_all();
           });
}

}  // namespace herald::net
