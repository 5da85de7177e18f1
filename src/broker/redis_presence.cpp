#include "redis_presence.hpp"

#include "herald/wire/envelope.hpp"
#include "redis_codec.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::broker {

namespace {

// Shared head of every script: Redis's clock (one clock for every instance), `ttl`, and the
// topic's total over live instances. KEYS[1] is the instance set, KEYS[2] this instance's hash.
constexpr std::string_view k_head = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function total()
  local n = 0
  for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
    n = n + redis.call('HLEN', KEYS[1] .. ':' .. inst)
  end
  return n
end
local function keep(ttl)
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
)lua";

// ARGV: instance, ttl ms, connection id, entry, channel, event ('' = none). -> {added, total}
constexpr std::string_view k_join = R"lua(
local added = redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
keep(tonumber(ARGV[2]))
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return {added, total()}
)lua";

// ARGV: instance, ttl ms, connection id, channel, event. -> {removed, total}
constexpr std::string_view k_leave = R"lua(
local removed = redis.call('HDEL', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  keep(tonumber(ARGV[2]))
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {removed, total()}
)lua";

// ARGV: instance, ttl ms. -> 1, or 0 when the hash is gone (Redis lost it: write it again).
constexpr std::string_view k_refresh = R"lua(
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
keep(tonumber(ARGV[2]))
return 1
)lua";

// ARGV: max clients, counts only ('1'). -> {connections, users, omitted, {client json...}}
constexpr std::string_view k_read = R"lua(
local conns, nusers, users, out = 0, 0, {}, {}
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  for _, e in ipairs(redis.call('HVALS', KEYS[1] .. ':' .. inst)) do
    conns = conns + 1
    local nl = string.find(e, '\n', 1, true)
    local sub = string.sub(e, 1, nl - 1)
    if sub ~= '""' and not users[sub] then
      users[sub] = true
      nusers = nusers + 1
    end
    out[#out + 1] = string.sub(e, nl + 1)
  end
end
local omitted = 0
if ARGV[2] == '1' or conns > tonumber(ARGV[1]) then
  omitted = 1
  out = {}
end
return {conns, nusers, omitted, out}
)lua";

// Built once each; EVAL sends the body (well under 1 KiB) and Redis caches its compilation.
// Redis Cluster (`cluster`): the events go out with SPUBLISH (redis::sharded).
const std::string& script(std::string_view body, bool cluster = false) {
    static const std::string join = std::string(k_head) + std::string(k_join);
    static const std::string leave = std::string(k_head) + std::string(k_leave);
    static const std::string refresh = std::string(k_head) + std::string(k_refresh);
    static const std::string read = std::string(k_head) + std::string(k_read);
    static const std::string cjoin = redis::sharded(join);
    static const std::string cleave = redis::sharded(leave);
    if (body.data() == k_join.data()) return cluster ? cjoin : join;
    if (body.data() == k_leave.data()) return cluster ? cleave : leave;
    if (body.data() == k_refresh.data()) return refresh;
    return read;
}

std::string set_key(std::string_view prefix, std::string_view topic) {
    return std::string(prefix) + "{" + std::string(topic) + "}:p";
}

std::string entry_value(const hub::presence_client& c) {
    return wire::json_quote(c.sub) + "\n" + hub::presence_client_json(c);
}

// Two integers at the head of a script's array answer.
bool two_ints(const redisReply* r, long long& a, long long& b) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2) return false;
    if (r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return false;
    a = r->element[0]->integer;
    b = r->element[1]->integer;
    return true;
}

}  // namespace

redis_presence::redis_presence(hub::hub& h, const config::settings& cfg, std::string instance_id,
                               link_fn cmd_link, shard_fn shard_of)
    : hub_(h),
      cfg_(cfg),
      instance_(std::move(instance_id)),
      cmd_link_(std::move(cmd_link)),
      shard_of_(std::move(shard_of)),
      ticks_(h.workers(), 0) {}

std::string redis_presence::encode_event(bool join, std::string_view client,
                                         std::string_view json) {
    std::string out = join ? "!p\nj\n" : "!p\nl\n";
    out += client;
    out += '\n';
    out += json;
    return out;
}

void redis_presence::change(unsigned owner, const std::string& topic, bool join,
                            const hub::presence_client& c) {
    auto& link = cmd_link_(owner, shard_of_(owner, topic));
    const auto set = set_key(cfg_.redis.key_prefix, topic);
    const auto own = set + ":" + instance_;
    const auto ttl = std::to_string(cfg_.presence.ttl.count());
    const bool cluster = !cfg_.redis.cluster.empty();
    const auto channel = redis::channel(cfg_.redis.key_prefix, topic, cluster);
    const auto event = encode_event(join, c.client, hub::presence_event_json(topic, join, c));
    std::vector<std::string_view> argv{
        "EVAL", script(join ? k_join : k_leave, cluster), "2", set, own, instance_, ttl, c.client};
    const auto value = join ? entry_value(c) : std::string();
    if (join) argv.emplace_back(value);
    argv.emplace_back(channel);
    argv.emplace_back(event);
    // On a link that is down the entry waits in the owner's table: on_cmd_up writes it (the
    // event is then lost: best effort, docs/integration.md).
    link.command(argv, [this, owner, topic, join, c](redisReply* r, no_reply) {
        long long changed = 0;
        long long total = 0;
        if (!two_ints(r, changed, total)) {
            if (redis::is_error(r))
                spdlog::warn("redis presence '{}': {}", topic, std::string_view(r->str, r->len));
            return;
        }
        if (changed != 1) return;
        if (join && total == 1)
            hub_.notify(owner, {hub::presence_change_kind::occupied, topic, c});
        else if (!join && total == 0)
            hub_.notify(owner, {hub::presence_change_kind::vacated, topic, c});
    });
}

void redis_presence::join(unsigned owner, const std::string& topic, const hub::presence_client& c,
                          const hub::presence_table&) {
    change(owner, topic, true, c);
}

void redis_presence::leave(unsigned owner, const std::string& topic, const hub::presence_client& c,
                           const hub::presence_table&) {
    change(owner, topic, false, c);
}

void redis_presence::query(unsigned owner, const std::string& topic, const hub::presence_table*,
                           bool counts_only, hub::presence_handler done) {
    auto& link = cmd_link_(owner, shard_of_(owner, topic));
    const auto set = set_key(cfg_.redis.key_prefix, topic);
    const auto max = std::to_string(cfg_.presence.max_clients);
    auto on_reply = [done](redisReply* r, no_reply) {
        hub::presence_result res;
        long long conns = 0;
        long long users = 0;
        if (!two_ints(r, conns, users) || r->elements < 4 ||
            r->element[2]->type != REDIS_REPLY_INTEGER ||
            r->element[3]->type != REDIS_REPLY_ARRAY) {
            res.available = false;
            done(std::move(res));
            return;
        }
        res.connections = static_cast<std::size_t>(std::max(0LL, conns));
        res.users = static_cast<std::size_t>(std::max(0LL, users));
        res.clients_omitted = r->element[2]->integer != 0;
        if (!res.clients_omitted) {
            res.clients = "[";
            const auto* list = r->element[3];
            for (std::size_t i = 0; i < list->elements; ++i) {
                const auto* e = list->element[i];
                if (e->type != REDIS_REPLY_STRING) continue;
                if (res.clients.size() > 1) res.clients += ',';
                res.clients.append(e->str, e->len);
            }
            res.clients += ']';
        }
        done(std::move(res));
    };
    // The dummy second key keeps every script's KEYS layout; the read never touches it.
    if (!link.command({"EVAL", script(k_read), "2", set, set, max, counts_only ? "1" : "0"},
                      on_reply)) {
        hub::presence_result res;
        res.available = false;
        done(std::move(res));
    }
}

bool redis_presence::on_channel_message(unsigned w, const std::string& topic,
                                        std::string_view payload) {
    if (!payload.starts_with("!p\n")) return false;
    payload.remove_prefix(3);
    if (payload.size() < 2 || payload[1] != '\n') return true;  // not ours to relay either
    const bool join = payload[0] == 'j';
    payload.remove_prefix(2);
    const auto nl = payload.find('\n');
    if (nl == std::string_view::npos) return true;
    hub_.at(w).dispatch_presence(hub::make_presence_event(
        topic, join, std::string(payload.substr(0, nl)), payload.substr(nl + 1)));
    return true;
}

void redis_presence::rewrite(unsigned w, const std::string& topic,
                             const hub::presence_table& table) {
    auto& link = cmd_link_(w, shard_of_(w, topic));
    const auto set = set_key(cfg_.redis.key_prefix, topic);
    const auto own = set + ":" + instance_;
    const auto ttl = std::to_string(cfg_.presence.ttl.count());
    table.for_each([&](const hub::presence_client& c) {
        const auto value = entry_value(c);
        link.command(
            {"EVAL", script(k_join), "2", set, own, instance_, ttl, c.client, value, "", ""},
            [](redisReply*, no_reply) {});
    });
}

void redis_presence::on_cmd_up(unsigned w, std::size_t shard) {
    for (const auto& [topic, table] : hub_.at(w).presence_tables())
        if (shard_of_(w, topic) == shard) rewrite(w, topic, table);
}

void redis_presence::on_tick(unsigned w) {
    const auto every = std::max<long long>(1, cfg_.presence.ttl.count() / 3000);
    if (++ticks_[w] % static_cast<unsigned>(every) != 0) return;
    const auto ttl = std::to_string(cfg_.presence.ttl.count());
    for (const auto& entry : hub_.at(w).presence_tables()) {
        const std::string& topic = entry.first;
        auto& link = cmd_link_(w, shard_of_(w, topic));
        const auto set = set_key(cfg_.redis.key_prefix, topic);
        link.command({"EVAL", script(k_refresh), "2", set, set + ":" + instance_, instance_, ttl},
                     [this, w, topic](redisReply* r, no_reply) {
                         if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 0) return;
                         // Redis lost this instance's entries: write them again.
                         if (const auto* t = hub_.at(w).presence_of(topic)) rewrite(w, topic, *t);
                     });
    }
}

}  // namespace herald::broker
