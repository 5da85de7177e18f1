#pragma once
// Presence with broker: redis (hub/presence.hpp). Every instance writes the entries of its own
// connections to Redis and keeps them alive; every instance reads all of them.
//
//   <prefix>{topic}:p             sorted set: instance id -> the unix ms its entries expire at
//   <prefix>{topic}:p:<instance>  hash: connection id -> "<json-quoted sub>\n<client json>"
//
// A join or leave runs one script on the topic's shard (from the topic's owner worker, so one
// instance's changes to a topic reach Redis in order): it updates the instance's hash, refreshes
// both expiries, PUBLISHes the event on the topic's channel and answers the topic's total, from
// which the instance whose change took it from 0 to 1 (or 1 to 0) reports occupied (vacated).
// Every owner worker following the channel hands the event to the hub (dispatch_presence), so
// every instance delivers the same events in Redis's order, the sender included.
// Each instance refreshes its score and its hash's TTL every presence.ttl / 3, so a crashed
// instance's entries stop counting within presence.ttl (readers ignore members whose score
// passed) and its keys expire. A refresh that finds its hash gone (Redis restarted or flushed)
// writes the instance's entries again, as does a command link coming back up.
// Everything here runs on the owner worker of the topic concerned.
#include "herald/config/config.hpp"
#include "herald/hub/hub.hpp"
#include "redis_asio.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {

class redis_presence final : public hub::presence_backend {
public:
    using link_fn = std::function<redis_link&(unsigned worker, std::size_t shard)>;
    // The topic's shard as worker `w` sees it (a Redis Cluster's slot map is per worker).
    using shard_fn = std::function<std::size_t(unsigned w, std::string_view topic)>;

    redis_presence(hub::hub& h, const config::settings& cfg, std::string instance_id,
                   link_fn cmd_link, shard_fn shard_of);

    void join(unsigned owner, const std::string& topic, const hub::presence_client& c,
              const hub::presence_table& table) override;
    void leave(unsigned owner, const std::string& topic, const hub::presence_client& c,
               const hub::presence_table& table) override;
    void query(unsigned owner, const std::string& topic, const hub::presence_table* table,
               bool counts_only, hub::presence_handler done) override;

    // A message on `topic`'s channel, on its owner worker `w`: true when it was a presence event
    // (delivered here), false when it is a message for the relay.
    bool on_channel_message(unsigned w, const std::string& topic, std::string_view payload);
    // Once a second on every worker: refreshes, every presence.ttl / 3, the topics it owns.
    void on_tick(unsigned w);
    // `w`'s command link to `shard` is (back) up: writes `w`'s entries on that shard again.
    void on_cmd_up(unsigned w, std::size_t shard);

    // "!p\n<j|l>\n<connection id>\n<event json>": never a message entry (an epoch has no '!').
    [[nodiscard]] static std::string encode_event(bool join, std::string_view client,
                                                  std::string_view json);

private:
    // Writes one entry (no event): a resync after Redis lost the instance's hash.
    void rewrite(unsigned w, const std::string& topic, const hub::presence_table& table);
    void change(unsigned owner, const std::string& topic, bool join, const hub::presence_client& c);

    hub::hub& hub_;
    const config::settings& cfg_;
    std::string instance_;
    link_fn cmd_link_;
    shard_fn shard_of_;
    std::vector<unsigned> ticks_;  // per worker
};

}  // namespace herald::broker
