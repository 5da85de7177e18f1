#pragma once
// Presence: who is subscribed to a topic that matches presence.patterns (docs/integration.md).
//
// Each subscription to such a topic carries a client entry (its connection id, the `sub` of its
// token and the token's `info` claim). The topic's owner worker keeps this process's entries in a
// presence_table and turns the first subscription of a connection into a `join`, the last into a
// `leave`. Where the entries live for readers is the presence_backend's business: the hub's own
// (one process: the owner's table), or Redis's (broker/redis_presence.cpp: every instance's).
// Presence runs on subscribe and unsubscribe only; the per-message path never looks at it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace herald::hub {

// One connection's entry in a topic's presence.
struct presence_client {
    std::string client;  // connection id, unique across instances
    std::string sub;     // the token's user id; empty for an anonymous client
    std::string info;    // the token's `info` claim as compact JSON; empty when none
};

// {"client":"...","sub":"...","info":{...}} (`info` is null when absent).
[[nodiscard]] std::string presence_client_json(const presence_client& c);

// One topic's entries on its owner worker, for this process. A connection may hold the topic more
// than once (an SSE stream naming it twice): it joins with its first hold, leaves with its last.
class presence_table {
public:
    // True when `c.client` was not there (a join).
    bool add(const presence_client& c);
    // True when this was `client`'s last hold (a leave); `out` is then its entry.
    bool remove(std::string_view client, presence_client& out);

    [[nodiscard]] bool empty() const noexcept { return clients_.empty(); }
    [[nodiscard]] std::size_t connections() const noexcept { return clients_.size(); }
    // Distinct non-empty `sub`s: anonymous connections are not users.
    [[nodiscard]] std::size_t users() const noexcept { return users_.size(); }
    // `[{...},...]`, in no particular order.
    [[nodiscard]] std::string clients_json() const;
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (const auto& [id, e] : clients_) fn(e.who);
    }

private:
    struct entry {
        presence_client who;
        std::uint32_t holds = 0;
    };
    std::unordered_map<std::string, entry> clients_;
    std::unordered_map<std::string, std::uint32_t> users_;  // sub -> connections
};

// A join or leave, encoded once for every recipient (like hub::message).
struct presence_event {
    std::string topic;
    bool join = true;
    std::string client;     // the connection id, so a subscriber is not told of itself
    std::string ws_frame;   // {"type":"join"|"leave","topic":"...","client":{...}} in a text frame
    std::string sse_event;  // "event: join|leave\ndata: {...}\n\n"
};
using presence_event_ptr = std::shared_ptr<const presence_event>;

// From the JSON of the event object (what travels between instances).
[[nodiscard]] presence_event_ptr make_presence_event(std::string topic, bool join,
                                                     std::string client, std::string_view json);
[[nodiscard]] presence_event_ptr make_presence_event(const std::string& topic, bool join,
                                                     const presence_client& c);
// The event object's JSON.
[[nodiscard]] std::string presence_event_json(std::string_view topic, bool join,
                                              const presence_client& c);

// What GET /presence/{topic} and the WebSocket `presence` op answer.
struct presence_result {
    bool available = true;  // false: the backend (Redis) could not be asked
    std::size_t users = 0;
    std::size_t connections = 0;
    bool clients_omitted = false;  // over presence.max_clients, or counts were asked for
    std::string clients;           // `[...]` unless omitted
};
using presence_handler = std::function<void(presence_result)>;

// The members of the JSON answer, without braces: "clients":[...],"users":N,"connections":M
// (`"clients_omitted":true` instead of the list when omitted).
[[nodiscard]] std::string presence_result_members(const presence_result& r);

// For the webhooks: what happened to a presence topic. join/leave come from the instance the
// client is connected to; occupied/vacated once per topic across instances (the instance whose
// change took the count from 0 to 1, or from 1 to 0).
enum class presence_change_kind : std::uint8_t { occupied, vacated, join, leave };
[[nodiscard]] std::string_view to_string(presence_change_kind k) noexcept;
struct presence_change {
    presence_change_kind kind;
    std::string topic;
    presence_client client;  // join/leave, and the client whose change occupied/vacated it
};
// Runs on the topic's owner worker; must not block (post heavy work elsewhere).
using presence_observer = std::function<void(unsigned worker, const presence_change&)>;

// Where entries are published and read. Every call runs on the topic's owner worker; `table` is
// this process's entries for the topic after the change.
class presence_backend {
public:
    virtual ~presence_backend() = default;
    // Make the join/leave known and deliver it (shard::dispatch_presence on each instance's owner).
    virtual void join(unsigned owner, const std::string& topic, const presence_client& c,
                      const presence_table& table) = 0;
    virtual void leave(unsigned owner, const std::string& topic, const presence_client& c,
                       const presence_table& table) = 0;
    // Answer a read; `done` runs on `owner` (or any worker: the hub posts the answer on).
    virtual void query(unsigned owner, const std::string& topic, const presence_table* table,
                       bool counts_only, presence_handler done) = 0;
};

}  // namespace herald::hub
