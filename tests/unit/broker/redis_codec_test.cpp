#include "broker/redis_codec.hpp"

#include "broker/redis_asio.hpp"
#include "broker/redis_sentinel.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

using namespace herald;
using namespace herald::broker;

namespace {

// Hand-built hiredis replies (the parser only reads them).
struct fake_reply {
    std::vector<std::unique_ptr<fake_reply>> kids;
    std::vector<redisReply*> ptrs;
    std::string text;
    redisReply r{};

    static std::unique_ptr<fake_reply> str(std::string s, int type = REDIS_REPLY_STRING) {
        auto f = std::make_unique<fake_reply>();
        f->text = std::move(s);
        f->r.type = type;
        f->r.str = f->text.data();
        f->r.len = f->text.size();
        return f;
    }
    static std::unique_ptr<fake_reply> integer(long long v) {
        auto f = std::make_unique<fake_reply>();
        f->r.type = REDIS_REPLY_INTEGER;
        f->r.integer = v;
        return f;
    }
    static std::unique_ptr<fake_reply> array(std::vector<std::unique_ptr<fake_reply>> items) {
        auto f = std::make_unique<fake_reply>();
        f->kids = std::move(items);
        for (auto& k : f->kids) f->ptrs.push_back(&k->r);
        f->r.type = REDIS_REPLY_ARRAY;
        f->r.elements = f->ptrs.size();
        f->r.element = f->ptrs.data();
        return f;
    }
};

template <class... T>
std::vector<std::unique_ptr<fake_reply>> items(T&&... t) {
    std::vector<std::unique_ptr<fake_reply>> v;
    (v.push_back(std::forward<T>(t)), ...);
    return v;
}

redis::entry sample(std::uint64_t offset, std::string payload = "hello") {
    redis::entry e;
    e.epoch = "k3v9x0aa";
    e.offset = offset;
    e.kind = hub::payload_kind::text;
    e.unix_ms = 1'700'000'000'123;
    e.payload = std::move(payload);
    return e;
}

}  // namespace

TEST(RedisCodec, EntryRoundTripsAnyPayloadByte) {
    std::string bin;
    for (int i = 0; i < 256; ++i) bin += static_cast<char>(i);
    bin += "\n\n\r\n";
    for (auto kind :
         {hub::payload_kind::text, hub::payload_kind::json, hub::payload_kind::binary}) {
        auto e = sample(42, bin);
        e.kind = kind;
        e.event = "tick";
        auto d = redis::decode_entry(redis::encode_entry(e));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->epoch, e.epoch);
        EXPECT_EQ(d->offset, 42u);
        EXPECT_EQ(d->kind, kind);
        EXPECT_EQ(d->event, "tick");
        EXPECT_EQ(d->unix_ms, e.unix_ms);
        EXPECT_EQ(d->payload, bin);
    }
    auto empty = sample(1, "");
    auto d = redis::decode_entry(redis::encode_entry(empty));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->payload, "");
    EXPECT_EQ(d->event, "");
}

TEST(RedisCodec, EntryMatchesTheLuaLayout) {
    // The publish script concatenates exactly these fields; keep both in step.
    EXPECT_EQ(redis::encode_entry(sample(7, "a\nb")), "k3v9x0aa\n7\n0\n\n1700000000123\na\nb");
}

TEST(RedisCodec, ATraceIdTravelsAfterTheTimeAndOldEntriesStillDecode) {
    auto e = sample(7, "a\nb");
    e.trace = *wire::trace_from_hex("4bf92f3577b34da6a3ce929d0e0e4736");
    const auto bytes = redis::encode_entry(e);
    EXPECT_EQ(bytes, "k3v9x0aa\n7\n0\n\n1700000000123;4bf92f3577b34da6a3ce929d0e0e4736\na\nb");
    auto d = redis::decode_entry(bytes);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->trace, e.trace);
    EXPECT_EQ(d->unix_ms, e.unix_ms);
    EXPECT_EQ(d->payload, "a\nb");
    // The format before trace ids: no trace, same message.
    auto old = redis::decode_entry("k3v9x0aa\n7\n0\n\n1700000000123\na\nb");
    ASSERT_TRUE(old);
    EXPECT_TRUE(old->trace.empty());
    EXPECT_EQ(old->payload, "a\nb");
    // A malformed trace costs only the trace; a malformed time still fails.
    auto junk = redis::decode_entry("k3v9x0aa\n7\n0\n\n1700000000123;zz\np");
    ASSERT_TRUE(junk);
    EXPECT_TRUE(junk->trace.empty());
    EXPECT_EQ(junk->unix_ms, e.unix_ms);
    EXPECT_FALSE(redis::decode_entry("k3v9x0aa\n7\n0\n\nx;4bf92f3577b34da6a3ce929d0e0e4736\np"));
}

TEST(RedisCodec, MalformedEntriesAreRejected) {
    for (const char* bad :
         {"", "k3v9x0aa", "k3v9x0aa\n", "k3v9x0aa\nx\n0\n\n1\np", "k3v9x0aa\n0\n0\n\n1\np",
          "k3v9x0aa\n1\n3\n\n1\np", "k3v9x0aa\n1\n0\n\nnow\np", "\n1\n0\n\n1\np",
          "k3v9x0aa\n1\n0\n\n1", "k3v9x0aa\n-1\n0\n\n1\np", "k3v9x0aa\n1\n00\n\n1\np"}) {
        EXPECT_FALSE(redis::decode_entry(bad)) << bad;
    }
}

TEST(RedisCodec, KeysAndChannels) {
    EXPECT_EQ(redis::meta_key("herald:", "chat:1"), "herald:{chat:1}:s");
    EXPECT_EQ(redis::history_key("herald:", "chat:1"), "herald:{chat:1}:h");
    EXPECT_EQ(redis::idempotency_key("herald:", "a", "k"), "herald:{a}:i:k");
    EXPECT_EQ(redis::channel("herald:", "chat:1"), "herald:c:chat:1");
    EXPECT_EQ(redis::topic_of_channel("herald:", "herald:c:chat:1"), "chat:1");
    EXPECT_EQ(redis::topic_of_channel("herald:", "herald:c:"), "");
    EXPECT_EQ(redis::topic_of_channel("herald:", "other:c:x"), "");
    EXPECT_EQ(redis::topic_of_channel("", "c:x"), "x");
}

TEST(RedisCodec, ControlChannelIsNoTopicChannel) {
    EXPECT_EQ(redis::control_channel("herald:"), "herald:control");
    EXPECT_EQ(redis::topic_of_channel("herald:", redis::control_channel("herald:")), "");
    EXPECT_EQ(redis::topic_of_channel("", redis::control_channel("")), "");
}

TEST(RedisCodec, ControlRoundTripsAnyUserByte) {
    std::string user = "alice\n\r\0x";
    user += std::string(1, '\0');
    user += "\xff";
    redis::control c;
    c.origin = "0123456789abcdef";
    c.user = user;
    const auto bytes = redis::encode_control(c);
    EXPECT_EQ(bytes.substr(0, 28), "disconnect\n0123456789abcdef\n");
    auto d = redis::decode_control(bytes);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->kind, redis::control::type::disconnect);
    EXPECT_EQ(d->origin, c.origin);
    EXPECT_EQ(d->user, user);
}

TEST(RedisCodec, MalformedOrUnknownControlIsRejected) {
    for (const char* bad :
         {"", "disconnect", "disconnect\n", "disconnect\nabc", "disconnect\nabc\n",
          "disconnect\n\nalice", "ban\nabc\nalice", "Disconnect\nabc\nalice"}) {
        EXPECT_FALSE(redis::decode_control(bad)) << bad;
    }
}

TEST(RedisHash, PicksOneShardStablyAndIgnoresListOrder) {
    std::vector<std::string> s{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"};
    std::vector<std::string> r{"10.0.0.3:6379", "10.0.0.1:6379", "10.0.0.2:6379"};
    std::map<std::size_t, int> count;
    for (int i = 0; i < 3000; ++i) {
        auto t = "topic-" + std::to_string(i);
        auto a = redis::pick_shard(t, s);
        EXPECT_EQ(a, redis::pick_shard(t, s));
        EXPECT_EQ(s[a], r[redis::pick_shard(t, r)]);
        ++count[a];
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
        EXPECT_GT(count[i], 800) << i;  // about 1000 each
        EXPECT_LT(count[i], 1200) << i;
    }
    EXPECT_EQ(redis::pick_shard("x", {"only:1"}), 0u);
}

TEST(RedisHash, AddingAShardMovesOnlyTopicsToIt) {
    std::vector<std::string> three{"a:1", "b:1", "c:1"};
    auto four = three;
    four.push_back("d:1");
    int moved = 0;
    const int n = 4000;
    for (int i = 0; i < n; ++i) {
        auto t = "room:" + std::to_string(i);
        auto before = three[redis::pick_shard(t, three)];
        auto now = four[redis::pick_shard(t, four)];
        if (before != now) {
            EXPECT_EQ(now, "d:1") << t;  // a topic only ever moves to the new shard
            ++moved;
        }
    }
    EXPECT_GT(moved, n / 4 - n / 20);  // about 1/4
    EXPECT_LT(moved, n / 4 + n / 20);
}

TEST(RedisReply, Publish) {
    auto ok = fake_reply::array(items(fake_reply::integer(1), fake_reply::str("k3v9x0aa"),
                                      fake_reply::integer(17), fake_reply::integer(2)));
    auto p = redis::parse_publish_reply(&ok->r);
    ASSERT_TRUE(p);
    EXPECT_FALSE(p->duplicate);
    EXPECT_EQ(p->epoch, "k3v9x0aa");
    EXPECT_EQ(p->offset, 17u);
    EXPECT_EQ(p->receivers, 2u);

    auto dup = fake_reply::array(items(fake_reply::integer(0), fake_reply::str("k3v9x0aa"),
                                       fake_reply::integer(5), fake_reply::integer(0)));
    auto d = redis::parse_publish_reply(&dup->r);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->duplicate);
    EXPECT_EQ(d->offset, 5u);

    auto err = fake_reply::str("NOSCRIPT No matching script", REDIS_REPLY_ERROR);
    EXPECT_FALSE(redis::parse_publish_reply(&err->r));
    EXPECT_TRUE(redis::is_error(&err->r, "NOSCRIPT"));
    EXPECT_FALSE(redis::is_error(&ok->r));
    EXPECT_FALSE(redis::parse_publish_reply(nullptr));
    auto short_ = fake_reply::array(items(fake_reply::integer(1)));
    EXPECT_FALSE(redis::parse_publish_reply(&short_->r));
}

TEST(RedisReply, ReadWithEntries) {
    auto r = fake_reply::array(items(fake_reply::str("k3v9x0aa"), fake_reply::integer(9),
                                     fake_reply::integer(5),
                                     fake_reply::str(redis::encode_entry(sample(8, "x"))),
                                     fake_reply::str(redis::encode_entry(sample(9, "y")))));
    auto p = redis::parse_read_reply(&r->r);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->epoch, "k3v9x0aa");
    EXPECT_EQ(p->top, 9u);
    EXPECT_EQ(p->first, 5u);
    ASSERT_EQ(p->entries.size(), 2u);
    EXPECT_EQ(p->entries[0].payload, "x");
    EXPECT_EQ(p->entries[1].offset, 9u);

    auto none = fake_reply::array(
        items(fake_reply::str(""), fake_reply::integer(0), fake_reply::integer(1)));
    auto n = redis::parse_read_reply(&none->r);
    ASSERT_TRUE(n);
    EXPECT_TRUE(n->epoch.empty());
    EXPECT_TRUE(n->entries.empty());
}

TEST(RedisReply, ReadRejectsHolesAndForeignEpochs) {
    auto hole = fake_reply::array(items(fake_reply::str("k3v9x0aa"), fake_reply::integer(9),
                                        fake_reply::integer(5),
                                        fake_reply::str(redis::encode_entry(sample(7))),
                                        fake_reply::str(redis::encode_entry(sample(9)))));
    EXPECT_FALSE(redis::parse_read_reply(&hole->r));
    auto other = sample(9);
    other.epoch = "zzzzzzzz";
    auto foreign = fake_reply::array(items(fake_reply::str("k3v9x0aa"), fake_reply::integer(9),
                                           fake_reply::integer(5),
                                           fake_reply::str(redis::encode_entry(other))));
    EXPECT_FALSE(redis::parse_read_reply(&foreign->r));
    auto junk = fake_reply::array(items(fake_reply::str("k3v9x0aa"), fake_reply::integer(9),
                                        fake_reply::integer(5), fake_reply::str("junk")));
    EXPECT_FALSE(redis::parse_read_reply(&junk->r));
}

TEST(RedisReply, Push) {
    auto m = fake_reply::array(items(fake_reply::str("message"), fake_reply::str("herald:c:a"),
                                     fake_reply::str("payload")));
    auto p = redis::parse_push(&m->r);
    EXPECT_EQ(p.kind, redis::push::type::message);
    EXPECT_EQ(p.channel, "herald:c:a");
    EXPECT_EQ(p.payload, "payload");
    auto s = fake_reply::array(
        items(fake_reply::str("subscribe"), fake_reply::str("herald:c:a"), fake_reply::integer(1)));
    EXPECT_EQ(redis::parse_push(&s->r).kind, redis::push::type::subscribe);
    auto u = fake_reply::array(items(fake_reply::str("unsubscribe"), fake_reply::str("herald:c:a"),
                                     fake_reply::integer(0)));
    EXPECT_EQ(redis::parse_push(&u->r).kind, redis::push::type::unsubscribe);
    EXPECT_EQ(redis::parse_push(nullptr).kind, redis::push::type::other);
}

TEST(RedisScripts, ShaIsSha1Hex) {
    EXPECT_EQ(redis::script_sha(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    EXPECT_EQ(redis::script_sha(redis::publish_script).size(), 40u);
    EXPECT_NE(redis::script_sha(redis::publish_script), redis::script_sha(redis::read_script));
}

TEST(RedisEndpoint, Parse) {
    auto e = parse_endpoint("127.0.0.1:6379");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->host, "127.0.0.1");
    EXPECT_EQ(e->port, 6379);
    auto v6 = parse_endpoint("[::1]:7000");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->host, "::1");
    for (const char* bad : {"", "host", ":6379", "h:", "h:0", "h:65536", "h:12x"})
        EXPECT_FALSE(parse_endpoint(bad)) << bad;
}

TEST(RedisCodec, HeartbeatPatternMatchesOnlyItsOwnChannel) {
    EXPECT_EQ(redis::heartbeat_pattern("herald:"), "herald:ping");
    // Glob characters of the prefix are escaped: the pattern stays literal.
    EXPECT_EQ(redis::heartbeat_pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:ping");
    // Never a topic channel or the control channel.
    EXPECT_NE(redis::heartbeat_pattern("h:"), redis::channel("h:", "ping"));
    EXPECT_NE(redis::heartbeat_pattern("h:"), redis::control_channel("h:"));
}

TEST(RedisSentinel, MasterAnswerGivesAddressAndConfigEpoch) {
    auto r = fake_reply::array(items(fake_reply::str("name"), fake_reply::str("herald-a"),
                                     fake_reply::str("ip"), fake_reply::str("10.0.0.4"),
                                     fake_reply::str("port"), fake_reply::str("6380"),
                                     fake_reply::str("flags"), fake_reply::str("master"),
                                     fake_reply::str("config-epoch"), fake_reply::str("7")));
    auto m = redis::parse_sentinel_master(&r->r);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->endpoint.name(), "10.0.0.4:6380");
    EXPECT_EQ(m->config_epoch, 7);
}

TEST(RedisSentinel, MalformedMasterAnswersAreRejected) {
    auto no_epoch = fake_reply::array(items(fake_reply::str("ip"), fake_reply::str("10.0.0.4"),
                                            fake_reply::str("port"), fake_reply::str("6380")));
    EXPECT_FALSE(redis::parse_sentinel_master(&no_epoch->r));
    auto port0 = fake_reply::array(items(fake_reply::str("ip"), fake_reply::str("h"),
                                         fake_reply::str("port"), fake_reply::str("0"),
                                         fake_reply::str("config-epoch"), fake_reply::str("1")));
    EXPECT_FALSE(redis::parse_sentinel_master(&port0->r));
    auto odd = fake_reply::array(items(fake_reply::str("ip")));
    EXPECT_FALSE(redis::parse_sentinel_master(&odd->r));
    auto err = fake_reply::str("ERR No such master with that name", REDIS_REPLY_ERROR);
    EXPECT_FALSE(redis::parse_sentinel_master(&err->r));
    EXPECT_FALSE(redis::parse_sentinel_master(nullptr));
}

TEST(RedisSentinel, SwitchMasterNamesTheNewAddressOfOurMasterOnly) {
    auto ep = redis::parse_switch_master("herald-a 10.0.0.4 6379 10.0.0.5 6380", "herald-a");
    ASSERT_TRUE(ep);
    EXPECT_EQ(ep->name(), "10.0.0.5:6380");
    EXPECT_FALSE(redis::parse_switch_master("other 10.0.0.4 6379 10.0.0.5 6380", "herald-a"));
    EXPECT_FALSE(redis::parse_switch_master("herald-a 10.0.0.4 6379 10.0.0.5", "herald-a"));
    EXPECT_FALSE(redis::parse_switch_master("herald-a 1 2 3 4 5", "herald-a"));
    EXPECT_FALSE(redis::parse_switch_master("herald-a 1 2 h x", "herald-a"));
    EXPECT_FALSE(redis::parse_switch_master("", "herald-a"));
}

TEST(RedisCodec, PublishReplyWithTheEntryToConfirm) {
    auto r = fake_reply::array(items(fake_reply::integer(1), fake_reply::str("k3v9x0aa"),
                                     fake_reply::integer(5), fake_reply::integer(0),
                                     fake_reply::str(redis::encode_entry(sample(5)))));
    auto p = redis::parse_publish_reply(&r->r);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->offset, 5u);
    EXPECT_EQ(p->entry, redis::encode_entry(sample(5)));
}
