#include "broker/redis_cluster.hpp"

#include "broker/redis_codec.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <initializer_list>
#include <memory>
#include <string>

using namespace herald::broker;

namespace {

// A reply parsed from RESP bytes by hiredis's own reader, as the links get them.
struct parsed {
    redisReply* r = nullptr;
    explicit parsed(const std::string& resp) {
        redisReader* rd = redisReaderCreate();
        EXPECT_EQ(redisReaderFeed(rd, resp.data(), resp.size()), REDIS_OK);
        void* out = nullptr;
        EXPECT_EQ(redisReaderGetReply(rd, &out), REDIS_OK);
        r = static_cast<redisReply*>(out);
        redisReaderFree(rd);
    }
    ~parsed() {
        if (r) freeReplyObject(r);
    }
    parsed(const parsed&) = delete;
    parsed& operator=(const parsed&) = delete;
};

// RESP pieces, joined with += (GCC 12's -Wrestrict misreads chains of operator+).
std::string bulk(const std::string& s) {
    std::string out = "$";
    out += std::to_string(s.size());
    out += "\r\n";
    out += s;
    out += "\r\n";
    return out;
}

std::string node(const std::string& ip, int port, const std::string& id) {
    std::string out = "*3\r\n";
    out += bulk(ip);
    out += ":";
    out += std::to_string(port);
    out += "\r\n";
    out += bulk(id);
    return out;
}

std::string cat(std::initializer_list<std::string> parts) {
    std::string out;
    for (const auto& p : parts) out += p;
    return out;
}

}  // namespace

TEST(RedisCluster, Crc16MatchesTheClusterSpecVector) {
    EXPECT_EQ(redis::crc16("123456789"), 0x31C3);
    EXPECT_EQ(redis::crc16(""), 0);
}

TEST(RedisCluster, KeySlotUsesTheHashTag) {
    // Values from redis-cli CLUSTER KEYSLOT.
    EXPECT_EQ(redis::key_slot("foo"), 12182);
    EXPECT_EQ(redis::key_slot("bar"), 5061);
    EXPECT_EQ(redis::key_slot("{user1000}.following"), redis::key_slot("user1000"));
    EXPECT_EQ(redis::key_slot("{user1000}.followers"), redis::key_slot("{user1000}.following"));
    // An empty tag hashes the whole key; only the first {...} counts.
    EXPECT_EQ(redis::key_slot("foo{}{bar}"), redis::crc16("foo{}{bar}") % 16384);
    EXPECT_EQ(redis::key_slot("foo{{bar}}zap"), redis::crc16("{bar") % 16384);
    EXPECT_EQ(redis::key_slot("foo{bar}{zap}"), redis::key_slot("bar"));
}

TEST(RedisCluster, ATopicsKeysAndClusterChannelShareASlot) {
    const std::string p = "herald:";
    const auto slot = redis::key_slot(redis::meta_key(p, "news"));
    EXPECT_EQ(redis::key_slot(redis::history_key(p, "news")), slot);
    EXPECT_EQ(redis::key_slot(redis::idempotency_key(p, "news", "k1")), slot);
    EXPECT_EQ(redis::key_slot(redis::channel(p, "news", true)), slot);
    EXPECT_EQ(redis::channel(p, "news", true), "herald:c:{news}");
    EXPECT_EQ(redis::topic_of_channel(p, "herald:c:{news}"), "news");
    EXPECT_EQ(redis::topic_of_channel(p, "herald:c:news"), "news");
}

TEST(RedisCluster, ShardedScriptsUseSpublish) {
    const auto s =
        redis::sharded("local n = redis.call('PUBLISH', a, b)\nredis.call('PUBLISH', c, d)");
    EXPECT_EQ(s, "local n = redis.call('SPUBLISH', a, b)\nredis.call('SPUBLISH', c, d)");
    EXPECT_EQ(redis::sharded(redis::publish_script).find("'PUBLISH'"), std::string::npos);
    EXPECT_EQ(redis::sharded(redis::confirm_script).find("'PUBLISH'"), std::string::npos);
}

TEST(RedisCluster, ParsesClusterSlotsAndMergesAMastersRanges) {
    // Two masters; the first serves two ranges; each has a replica. Redis 7 adds a map of
    // hostnames after the id, as a fourth element.
    const std::string resp =
        cat({"*3\r\n*4\r\n:0\r\n:5460\r\n", node("127.0.0.1", 7000, "aaa"),
             node("127.0.0.1", 7003, "ddd"), "*4\r\n:5461\r\n:10922\r\n",
             node("127.0.0.1", 7001, "bbb"), "*4\r\n", bulk("127.0.0.1"), ":7004\r\n", bulk("eee"),
             "*0\r\n", "*3\r\n:10923\r\n:16383\r\n", node("127.0.0.1", 7000, "aaa")});
    parsed p(resp);
    ASSERT_NE(p.r, nullptr);
    auto m = redis::parse_cluster_slots(p.r);
    ASSERT_TRUE(m);
    ASSERT_EQ(m->size(), 2u);
    EXPECT_EQ((*m)[0].endpoint.name(), "127.0.0.1:7000");
    EXPECT_EQ((*m)[0].id, "aaa");
    ASSERT_EQ((*m)[0].ranges.size(), 2u);
    EXPECT_EQ((*m)[0].ranges[1].first, 10923);
    EXPECT_EQ((*m)[0].ranges[1].second, 16383);
    ASSERT_EQ((*m)[0].nodes.size(), 2u);
    EXPECT_EQ((*m)[0].nodes[1], "ddd");
    EXPECT_EQ((*m)[1].endpoint.port, 7001);
    ASSERT_EQ((*m)[1].replicas.size(), 1u);
    EXPECT_EQ((*m)[1].replicas[0].port, 7004);
}

TEST(RedisCluster, RejectsMalformedClusterSlots) {
    EXPECT_FALSE(redis::parse_cluster_slots(nullptr));
    parsed err("-ERR This instance has cluster support disabled\r\n");
    EXPECT_FALSE(redis::parse_cluster_slots(err.r));
    parsed bad_range(cat({"*1\r\n*3\r\n:10\r\n:5\r\n", node("127.0.0.1", 7000, "a")}));
    EXPECT_FALSE(redis::parse_cluster_slots(bad_range.r));
    parsed past_end(cat({"*1\r\n*3\r\n:0\r\n:16384\r\n", node("127.0.0.1", 7000, "a")}));
    EXPECT_FALSE(redis::parse_cluster_slots(past_end.r));
    parsed no_port(cat({"*1\r\n*3\r\n:0\r\n:1\r\n", node("127.0.0.1", 0, "a")}));
    // A master without an address yet (port 0) is left out: its slots stay unserved.
    auto none = redis::parse_cluster_slots(no_port.r);
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
    parsed empty("*0\r\n");
    auto m = redis::parse_cluster_slots(empty.r);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->empty());
}

TEST(RedisCluster, ParsesMovedAndAsk) {
    parsed moved("-MOVED 3999 127.0.0.1:6381\r\n");
    auto r = redis::parse_redirect(moved.r);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->ask);
    EXPECT_EQ(r->slot, 3999);
    EXPECT_EQ(r->to.name(), "127.0.0.1:6381");
    parsed ask("-ASK 16383 10.0.0.5:7002\r\n");
    r = redis::parse_redirect(ask.r);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->ask);
    EXPECT_EQ(r->slot, 16383);
    EXPECT_EQ(r->to.port, 7002);
    for (const char* bad :
         {"-MOVED 16384 127.0.0.1:1\r\n", "-MOVED x 127.0.0.1:1\r\n", "-MOVED 1\r\n",
          "-ASK 1 127.0.0.1\r\n", "-ERR MOVED 1 a:1\r\n", "+MOVED 1 127.0.0.1:1\r\n"}) {
        parsed p(bad);
        EXPECT_FALSE(redis::parse_redirect(p.r)) << bad;
    }
}

TEST(RedisCluster, ShardedPushesParseLikeClassicOnes) {
    parsed m(cat({"*3\r\n", bulk("smessage"), bulk("herald:c:{t}"), bulk("payload")}));
    auto p = redis::parse_push(m.r);
    EXPECT_EQ(p.kind, redis::push::type::message);
    EXPECT_EQ(p.channel, "herald:c:{t}");
    EXPECT_EQ(p.payload, "payload");
    parsed s(cat({"*3\r\n", bulk("ssubscribe"), bulk("herald:c:{t}"), ":1\r\n"}));
    EXPECT_EQ(redis::parse_push(s.r).kind, redis::push::type::subscribe);
    parsed u(cat({"*3\r\n", bulk("sunsubscribe"), bulk("herald:c:{t}"), ":0\r\n"}));
    EXPECT_EQ(redis::parse_push(u.r).kind, redis::push::type::unsubscribe);
}
