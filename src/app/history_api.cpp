// GET /history/<topic>?since=&limit=: the messages a topic's stream still holds.
#include "api.hpp"

#include "herald/common/text.hpp"
#include "herald/wire/position.hpp"

#include <algorithm>

namespace herald::app {

using metrics::reject;

void api::history(net::worker_context& w, const net::http_request& req, const std::string& topic,
                  net::responder r) {
    // `topic` is valid and readable by this client: the router checked both.
    std::optional<wire::stream_pos> since;
    if (auto s = req.target.get("since"); s && !s->empty()) {
        if (auto off = parse_u64(*s))
            since = wire::stream_pos{"", *off};
        else if (auto pos = wire::parse_position(*s))
            since = std::move(pos);
        else {
            r.error(reject::bad_cursor, "since must be an offset or epoch:offset");
            return;
        }
    }
    // At most what the topic's stream can hold (its history.namespaces rule, else history.size).
    std::size_t limit = broker::policy_for(w.cfg, topic).size;
    if (auto l = req.target.get("limit")) {
        auto v = parse_u64(*l);
        if (!v) {
            r.error(reject::bad_request, "limit must be an unsigned integer");
            return;
        }
        limit = std::min<std::size_t>(*v, limit);
    }
    // An answer stays within half the connection's output budget (the other half is room for
    // answers already owed); the client pages on with since=<the last offset>.
    const std::size_t max_body = w.cfg.limits.max_queued_bytes / 2;
    broker_.history(w.id, topic, since, limit, [r, topic, max_body](broker::history_result h) {
        if (h.unavailable) {
            r.error(reject::unavailable, "the broker is unavailable; retry", "Retry-After: 1\r\n");
            return;
        }
        if (h.epoch_mismatch) {
            r.error(reject::bad_cursor,
                    "since names another epoch of this topic (current: " + h.epoch + ")");
            return;
        }
        std::string body = "{\"topic\":\"" + topic + "\",\"epoch\":\"" + h.epoch +
                           "\",\"offset\":" + std::to_string(h.top) + ",\"messages\":";
        if (hub::append_messages_json(body, h.messages, max_body) < h.messages.size())
            body += ",\"more\":true";
        body += '}';
        r.send(200, "application/json", body);
    });
}

}  // namespace herald::app
