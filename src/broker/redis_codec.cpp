#include "redis_codec.hpp"
#include "herald/wire/topic.hpp"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <charconv>
#include <initializer_list>

namespace herald::broker::redis {

namespace {

template <class T>
bool parse_int(std::string_view s, T& out) {
    if (s.empty()) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

// The layout of entries and control messages: each field followed by '\n', then the rest as is.
std::string join_fields(std::initializer_list<std::string_view> fields, std::string_view rest) {
    std::size_t n = rest.size();
    for (auto f : fields) n += f.size() + 1;
    std::string out;
    out.reserve(n);
    for (auto f : fields) {
        out += f;
        out += '\n';
    }
    out += rest;
    return out;
}

// Next '\n'-terminated field of `in`, advancing it.
bool field(std::string_view& in, std::string_view& out) {
    auto nl = in.find('\n');
    if (nl == std::string_view::npos) return false;
    out = in.substr(0, nl);
    in.remove_prefix(nl + 1);
    return true;
}

std::uint64_t mix64(std::uint64_t x) noexcept {  // splitmix64's finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

std::string_view str(const redisReply* r) {
    return std::string_view(r->str, r->len);
}

bool as_u64(const redisReply* r, std::uint64_t& out) {
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) return false;
        out = static_cast<std::uint64_t>(r->integer);
        return true;
    }
    if (r->type == REDIS_REPLY_STRING) return parse_int(str(r), out);
    return false;
}

}  // namespace

std::string trace_suffix(const wire::trace_id& t) {
    std::string out;
    if (t.empty()) return out;
    out += ';';
    out += wire::to_hex(t);
    return out;
}

std::string encode_entry(const entry& e) {
    const char kind = static_cast<char>('0' + static_cast<int>(e.kind));
    return join_fields({e.epoch, std::to_string(e.offset), std::string_view(&kind, 1), e.event,
                        std::to_string(e.unix_ms) + trace_suffix(e.trace)},
                       e.payload);
}

std::optional<entry> decode_entry(std::string_view in) {
    entry e;
    std::string_view f;
    if (!field(in, f) || f.empty()) return std::nullopt;
    e.epoch = std::string(f);
    if (!field(in, f) || !parse_int(f, e.offset) || e.offset == 0) return std::nullopt;
    if (!field(in, f) || f.size() != 1 || f[0] < '0' || f[0] > '2') return std::nullopt;
    e.kind = static_cast<hub::payload_kind>(f[0] - '0');
    if (!field(in, f)) return std::nullopt;
    e.event = std::string(f);
    if (!field(in, f)) return std::nullopt;
    if (auto semi = f.find(';'); semi != std::string_view::npos) {
        // A malformed trace id costs the message nothing but its trace.
        e.trace = wire::trace_from_hex(f.substr(semi + 1)).value_or(wire::trace_id{});
        f = f.substr(0, semi);
    }
    if (!parse_int(f, e.unix_ms)) return std::nullopt;
    e.payload = std::string(in);
    return e;
}

std::string meta_key(std::string_view prefix, std::string_view topic) {
    return std::string(prefix) + "{" + std::string(topic) + "}:s";
}
std::string history_key(std::string_view prefix, std::string_view topic) {
    return std::string(prefix) + "{" + std::string(topic) + "}:h";
}
std::string idempotency_key(std::string_view prefix, std::string_view topic, std::string_view key) {
    return std::string(prefix) + "{" + std::string(topic) + "}:i:" + std::string(key);
}
std::string channel(std::string_view prefix, std::string_view topic, bool cluster) {
    if (cluster) return std::string(prefix) + "c:{" + std::string(topic) + "}";
    return std::string(prefix) + "c:" + std::string(topic);
}
std::string_view topic_of_channel(std::string_view prefix, std::string_view ch) {
    if (ch.size() <= prefix.size() + 2 || ch.substr(0, prefix.size()) != prefix ||
        ch.substr(prefix.size(), 2) != "c:")
        return {};
    auto t = ch.substr(prefix.size() + 2);
    // A topic never holds '{' or '}': braces around it are the cluster form's hash tag.
    if (t.size() > 2 && t.front() == '{' && t.back() == '}') t = t.substr(1, t.size() - 2);
    return t;
}

std::string control_channel(std::string_view prefix) {
    return std::string(prefix) + "control";
}

std::string heartbeat_pattern(std::string_view prefix) {
    std::string p;
    for (char c : prefix) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') p += '\\';
        p += c;
    }
    return p + "ping";
}

std::string encode_control(const control& c) {
    return join_fields({"disconnect", c.origin}, c.user);
}

std::optional<control> decode_control(std::string_view in) {
    control c;
    std::string_view f;
    if (!field(in, f) || f != "disconnect") return std::nullopt;
    if (!field(in, f) || f.empty()) return std::nullopt;
    c.origin = std::string(f);
    if (in.empty()) return std::nullopt;
    c.user = std::string(in);
    return c;
}

std::uint64_t hrw_score(std::string_view topic, std::string_view shard) noexcept {
    return mix64(wire::topic_hash(shard) ^ mix64(wire::topic_hash(topic)));  // FNV-1a 64
}

std::size_t pick_shard(std::string_view topic, const std::vector<std::string>& shards) noexcept {
    std::size_t best = 0;
    std::uint64_t best_score = 0;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        const auto s = hrw_score(topic, shards[i]);
        if (i == 0 || s > best_score || (s == best_score && shards[i] < shards[best])) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

// Offsets stay below 2^53, so Lua's doubles hold them exactly; '%d' keeps them out of
// exponent notation.
// Both scripts open the stream through the same prologue. Field r of the meta hash is the
// replication id (INFO's master_replid) of the master that last wrote the stream. A different
// one means another server took over (a promoted replica, a restart): replication is
// asynchronous, so the tail the old master acknowledged may be missing here, and offsets after
// the local top could be handed out again to other messages. Without replicas_ack the stream
// therefore goes on in a new epoch (subscribers get a reset, never a replaced message). With
// replicas_ack (ARGV ack = '1') nothing was made visible before N replicas had it, so the stream
// keeps its epoch, and what this server holds (up to t) becomes the confirmed tail c. A stream
// without r (written before r existed) adopts the current id.
// Redis Cluster: `replid` may be "<this master's id>,<id>,...", the ids of the other masters
// serving now. A stream last written by one of them came here by slot migration (MIGRATE moves
// the keys synchronously, from a master that is still up), so its tail is intact: it keeps its
// epoch and confirmed tail. A dead master's id is never in the list (a failover).
#define HERALD_OPEN_STREAM                                                                \
    "local function open_stream(meta, hist, new_epoch, ids, ack)\n"                       \
    "  local replid = string.match(ids, '^[^,]*')\n"                                      \
    "  local epoch = redis.call('HGET', meta, 'e')\n"                                     \
    "  if epoch then\n"                                                                   \
    "    local r = redis.call('HGET', meta, 'r')\n"                                       \
    "    local migrated = false\n"                                                        \
    "    if r and r ~= replid then\n"                                                     \
    "      for id in string.gmatch(ids, '[^,]+') do\n"                                    \
    "        if id == r then migrated = true end\n"                                       \
    "      end\n"                                                                         \
    "    end\n"                                                                           \
    "    if migrated then\n"                                                              \
    "      redis.call('HSET', meta, 'r', replid)\n"                                       \
    "    elseif r ~= replid then\n"                                                       \
    "      if r and ack ~= '1' then\n"                                                    \
    "        epoch = false\n"                                                             \
    "      else\n"                                                                        \
    "        redis.call('HSET', meta, 'r', replid, 'c', redis.call('HGET', meta, 't'))\n" \
    "      end\n"                                                                         \
    "    end\n"                                                                           \
    "  end\n"                                                                             \
    "  if not epoch then\n"                                                               \
    "    if new_epoch == '' then return false end\n"                                      \
    "    epoch = new_epoch\n"                                                             \
    "    redis.call('HSET', meta, 'e', epoch, 't', 0, 'r', replid, 'c', 0)\n"             \
    "    redis.call('DEL', hist)\n"                                                       \
    "  end\n"                                                                             \
    "  return epoch\n"                                                                    \
    "end\n"

// Offsets stay below 2^53, so Lua's doubles hold them exactly; '%d' keeps them out of
// exponent notation. With ack = '1' the entry is not PUBLISHed here but returned: the broker
// PUBLISHes it with confirm_script once WAIT says enough replicas have it.
const char* const publish_script = HERALD_OPEN_STREAM R"lua(
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = open_stream(KEYS[1], KEYS[2], ARGV[1], ARGV[10], ARGV[11])
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then
    redis.call('PEXPIRE', KEYS[1], ARGV[9])
    return {0, epoch, tonumber(first), 0}
  end
end
local off = redis.call('HINCRBY', KEYS[1], 't', 1)
local entry = epoch .. '\n' .. string.format('%d', off) .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] ..
  '\n' .. string.format('%d', ms) .. ARGV[12] .. '\n' .. ARGV[4]
local size = tonumber(ARGV[5])
if size > 0 then
  redis.call('RPUSH', KEYS[2], entry)
  redis.call('LTRIM', KEYS[2], -size, -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
if KEYS[3] then
  redis.call('SET', KEYS[3], string.format('%d', off), 'PX', ARGV[7])
end
if ARGV[11] == '1' then return {1, epoch, off, 0, entry} end
redis.call('HSET', KEYS[1], 'c', off)
local n = redis.call('PUBLISH', ARGV[8], entry)
return {1, epoch, off, n}
)lua";

// After WAIT: the confirmed tail moves up to the entry (never down: confirmations of one topic
// may come back out of order from several links), then the entry is PUBLISHed. A duplicate
// (an Idempotency-Key retry, entry '') of a publish that never got confirmed (its WAIT fell
// short) is published from history now; one already visible is not published again.
const char* const confirm_script = R"lua(
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return -1 end
local off = tonumber(ARGV[2])
local c = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
local entry = ARGV[4]
if entry == '' then
  if off <= c then return 0 end
  local top = tonumber(redis.call('HGET', KEYS[1], 't'))
  local idx = off - (top - redis.call('LLEN', KEYS[2]) + 1)
  if idx < 0 then return -1 end
  entry = redis.call('LINDEX', KEYS[2], idx)
  if not entry then return -1 end
end
if off > c then redis.call('HSET', KEYS[1], 'c', ARGV[2]) end
return redis.call('PUBLISH', ARGV[3], entry)
)lua";

// With ack = '1' only the confirmed tail (c) is visible: top is c, entries after it wait.
const char* const read_script = HERALD_OPEN_STREAM R"lua(
local epoch = open_stream(KEYS[1], KEYS[2], ARGV[1], ARGV[7], ARGV[8])
if not epoch then return {'', 0, 1} end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local top = tonumber(redis.call('HGET', KEYS[1], 't'))
local t = redis.call('TIME')
local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[6])
local n = redis.call('LLEN', KEYS[2])
while n > 0 do
  local head = redis.call('LINDEX', KEYS[2], 0)
  local ms = tonumber(string.match(head, '^[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n(%d+)\n'))
  if not ms or ms > oldest then break end
  redis.call('LPOP', KEYS[2])
  n = n - 1
end
local first = top - n + 1
if ARGV[8] == '1' then
  local c = tonumber(redis.call('HGET', KEYS[1], 'c') or top)
  if c < top then
    top = c
    if first > top + 1 then first = top + 1 end
  end
end
local res = {epoch, top, first}
local limit = tonumber(ARGV[3])
local from = math.max(tonumber(ARGV[2]) + 1, first)
if ARGV[5] == '1' then from = math.max(first, top - limit + 1) end
local to = math.min(from + limit - 1, top)
if n > 0 and from <= to then
  local items = redis.call('LRANGE', KEYS[2], from - first, to - first)
  for i = 1, #items do res[#res + 1] = items[i] end
end
return res
)lua";

#undef HERALD_OPEN_STREAM

std::string sharded(std::string_view script) {
    static constexpr std::string_view from = "redis.call('PUBLISH'";
    static constexpr std::string_view to = "redis.call('SPUBLISH'";
    std::string out(script);
    for (auto at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size()))
        out.replace(at, from.size(), to);
    return out;
}

std::string script_sha(std::string_view script) {
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), md);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : md) {
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    return out;
}

std::optional<publish_reply> parse_publish_reply(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || (r->elements != 4 && r->elements != 5))
        return std::nullopt;
    publish_reply p;
    std::uint64_t status = 0;
    if (!as_u64(r->element[0], status) || r->element[1]->type != REDIS_REPLY_STRING ||
        !as_u64(r->element[2], p.offset) || !as_u64(r->element[3], p.receivers))
        return std::nullopt;
    p.duplicate = status == 0;
    p.epoch = std::string(str(r->element[1]));
    if (r->elements == 5) {
        if (r->element[4]->type != REDIS_REPLY_STRING) return std::nullopt;
        p.entry = std::string(str(r->element[4]));
    }
    return p;
}

std::optional<read_reply> parse_read_reply(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return std::nullopt;
    read_reply out;
    if (r->element[0]->type != REDIS_REPLY_STRING || !as_u64(r->element[1], out.top) ||
        !as_u64(r->element[2], out.first))
        return std::nullopt;
    out.epoch = std::string(str(r->element[0]));
    out.entries.reserve(r->elements - 3);
    for (std::size_t i = 3; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) return std::nullopt;
        auto d = decode_entry(str(e));
        if (!d || d->epoch != out.epoch) return std::nullopt;
        if (!out.entries.empty() && d->offset != out.entries.back().offset + 1) return std::nullopt;
        out.entries.push_back(std::move(*d));
    }
    return out;
}

push parse_push(const redisReply* r) {
    push p;
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return p;
    const redisReply* k = r->element[0];
    const redisReply* c = r->element[1];
    if (k->type != REDIS_REPLY_STRING || c->type != REDIS_REPLY_STRING) return p;
    const auto kind = str(k);
    p.channel = str(c);
    if ((kind == "message" || kind == "smessage") && r->element[2]->type == REDIS_REPLY_STRING) {
        p.kind = push::type::message;
        p.payload = str(r->element[2]);
    } else if (kind == "subscribe" || kind == "ssubscribe") {
        p.kind = push::type::subscribe;
    } else if (kind == "unsubscribe" || kind == "sunsubscribe") {
        p.kind = push::type::unsubscribe;
    }
    return p;
}

bool is_error(const redisReply* r, std::string_view prefix) {
    if (r == nullptr || r->type != REDIS_REPLY_ERROR) return false;
    return str(r).substr(0, prefix.size()) == prefix;
}

}  // namespace herald::broker::redis
