#pragma once
// The parts of the redis broker that need no connection: the key and channel layout, the
// encoding of a message in history and on pub/sub and of a control message, the Lua scripts, the
// shard choice, and the parsing of the scripts' replies. Pure functions, tested without a server.
#include "herald/hub/message.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisReply;

namespace herald::broker::redis {

// One message as stored in a topic's history list and as PUBLISHed on its channel:
//   "<epoch>\n<offset>\n<kind digit>\n<event>\n<unix ms>[;<trace id>]\n<payload bytes>"
// Epoch, offset, kind, event and time never contain '\n', so the payload is simply the rest and
// may hold any byte. The Lua publish script builds the same bytes. A traced publish (W3C
// `traceparent`) appends ";<32 hex>" to the time; entries without it are the older format and
// still decode. (An instance older than the trace suffix fails to decode a traced entry: see
// docs/operations.md on mixed versions.)
struct entry {
    std::string epoch;
    std::uint64_t offset = 0;
    hub::payload_kind kind = hub::payload_kind::text;
    std::string event;
    std::int64_t unix_ms = 0;
    std::string payload;
    wire::trace_id trace;  // empty: no ";<trace id>" suffix
};

[[nodiscard]] std::string encode_entry(const entry& e);
[[nodiscard]] std::optional<entry> decode_entry(std::string_view bytes);
// ";<32 hex>" for a trace id, "" for none: what follows the time in an entry.
[[nodiscard]] std::string trace_suffix(const wire::trace_id& t);

// Keys of a topic. The topic sits in a {hash tag}, so one topic's keys share a Redis Cluster
// slot should the shards ever be cluster nodes. Topic names cannot contain '{' or '}'.
[[nodiscard]] std::string meta_key(std::string_view prefix, std::string_view topic);     // hash e,t
[[nodiscard]] std::string history_key(std::string_view prefix, std::string_view topic);  // list
[[nodiscard]] std::string idempotency_key(std::string_view prefix, std::string_view topic,
                                          std::string_view key);
// With `cluster` the topic sits in a {hash tag} ("<prefix>c:{<topic>}"), so the channel shares
// the slot of the topic's keys and the publish script may SPUBLISH it.
[[nodiscard]] std::string channel(std::string_view prefix, std::string_view topic,
                                  bool cluster = false);
// The topic of a channel (either form), or empty when the channel is not one of ours.
[[nodiscard]] std::string_view topic_of_channel(std::string_view prefix, std::string_view channel);

// Control messages between instances travel on one channel, `<prefix>control`, which every
// instance subscribes to once (it cannot collide with a topic channel, `<prefix>c:<topic>`):
//   "disconnect\n<origin>\n<user>"
// `origin` is the sending instance's id (no '\n'), so the sender can skip its own message; the
// user is the rest and may hold any byte.
struct control {
    enum class type { disconnect } kind = type::disconnect;
    std::string origin;
    std::string user;
};

[[nodiscard]] std::string control_channel(std::string_view prefix);

// The pattern every pub/sub link PSUBSCRIBEs for its heartbeat (see redis_asio.hpp):
// `<prefix>ping` with glob characters escaped, so it matches only that channel, where nobody
// publishes.
[[nodiscard]] std::string heartbeat_pattern(std::string_view prefix);
[[nodiscard]] std::string encode_control(const control& c);
// nullopt for an unknown kind (a newer instance's) or a malformed message.
[[nodiscard]] std::optional<control> decode_control(std::string_view bytes);

// Rendezvous (highest-random-weight) hashing: a topic goes to the shard whose
// score(topic, shard address) is highest, score = mix64(fnv1a64(address) ^ fnv1a64(topic)).
// Adding a shard moves only the topics the new shard now wins (about 1/N of them); removing one
// moves only that shard's topics; the order of `shards` in the config does not matter.
[[nodiscard]] std::uint64_t hrw_score(std::string_view topic, std::string_view shard) noexcept;
[[nodiscard]] std::size_t pick_shard(std::string_view topic,
                                     const std::vector<std::string>& shards) noexcept;

// Lua. publish: KEYS meta, history[, idempotency]; ARGV new_epoch, kind, event, payload,
// history_size, history_ttl_ms, window_ms, channel, meta_ttl_ms, replid (see open_stream: the
// master's replication id), ack ('1': replicas_ack is on), trace (trace_suffix(), '' for most).
// Returns {1|0 (0 = duplicate), epoch, offset, receivers}, and with ack = '1' the entry as a
// fifth element, not yet PUBLISHed. Meta hash fields: e epoch, t top, r replid, c confirmed top.
extern const char* const publish_script;
// confirm: KEYS meta, history; ARGV epoch, offset, channel, entry ('' for a duplicate: taken
// from history unless already visible). Raises the confirmed top to offset and PUBLISHes the
// entry; returns the receivers, or -1 when the stream is in another epoch now (or the entry left
// history).
extern const char* const confirm_script;
// read: KEYS meta, history; ARGV new_epoch ('' = do not create), after, limit, meta_ttl_ms,
// newest ('1': the newest `limit`, else the oldest `limit` after `after`), ttl_ms, replid, ack.
// With ack = '1' top is the confirmed top (entries after it are not visible). Messages older
// than ttl_ms (by Redis's clock, as they were stamped) first leave the list, so what it holds
// is what a reader may get. The selection is history_window()'s rule (history.hpp), which the
// broker applies again to the answer.
// Returns {epoch ('' = no stream), top, first offset held, the selected entries}.
extern const char* const read_script;
// A script's Redis Cluster form: every PUBLISH becomes SPUBLISH (sharded pub/sub, Redis 7).
[[nodiscard]] std::string sharded(std::string_view script);
// SHA1 hex of a script, for EVALSHA.
[[nodiscard]] std::string script_sha(std::string_view script);

struct publish_reply {
    bool duplicate = false;
    std::string epoch;
    std::uint64_t offset = 0;
    std::uint64_t receivers = 0;
    std::string entry;  // with ack: the entry to PUBLISH once confirmed
};
[[nodiscard]] std::optional<publish_reply> parse_publish_reply(const redisReply* r);

struct read_reply {
    std::string epoch;  // empty: no stream
    std::uint64_t top = 0;
    std::uint64_t first = 0;  // oldest offset still in the history list (top + 1 when empty)
    std::vector<entry> entries;
};
[[nodiscard]] std::optional<read_reply> parse_read_reply(const redisReply* r);

// A pub/sub push: ["message", channel, payload], ["subscribe", channel, n], ["unsubscribe", ...],
// and their sharded forms (smessage, ssubscribe, sunsubscribe).
struct push {
    enum class type { message, subscribe, unsubscribe, other } kind = type::other;
    std::string_view channel;
    std::string_view payload;
};
[[nodiscard]] push parse_push(const redisReply* r);

// True for an error reply starting with `prefix` (e.g. "NOSCRIPT").
[[nodiscard]] bool is_error(const redisReply* r, std::string_view prefix = {});

}  // namespace herald::broker::redis
