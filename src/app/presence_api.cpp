// GET /presence/<topic> and GET /presence/<topic>/count (docs/integration.md, "Presence").
#include "api.hpp"

#include "herald/wire/envelope.hpp"
#include "herald/wire/topic.hpp"

namespace herald::app {

using metrics::reject;

void api::presence(net::worker_context& w, std::string_view rest, net::responder r) {
    // The router checked the API key (access class admin); the topic is ours to check.
    constexpr std::string_view k_count = "/count";
    const bool counts_only = rest.ends_with(k_count);
    if (counts_only) rest.remove_suffix(k_count.size());
    std::string topic(rest);
    if (!wire::is_valid_topic(topic)) {
        r.error(reject::bad_topic, wire::k_topic_rule);
        return;
    }
    if (!wire::any_match(cfg_.presence.patterns, topic)) {
        r.error(reject::not_found, "'" + topic + "' has no presence (see presence.patterns)");
        return;
    }
    w.shard.query_presence(topic, counts_only, [r, topic, counts_only](hub::presence_result p) {
        if (!p.available) {
            r.error(reject::unavailable, "the broker is unavailable; retry", "Retry-After: 1\r\n");
            return;
        }
        std::string body = "{\"topic\":" + wire::json_quote(topic) + ",";
        if (counts_only)
            body += "\"users\":" + std::to_string(p.users) +
                    ",\"connections\":" + std::to_string(p.connections);
        else
            body += hub::presence_result_members(p);
        r.send(200, "application/json", body + "}");
    });
}

}  // namespace herald::app
