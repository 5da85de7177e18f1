#include "broker/redis_presence.hpp"

#include "broker/redis_codec.hpp"

#include <gtest/gtest.h>

using namespace herald;

// A presence event travels on the topic's channel beside the messages: the relay must never take
// it for a message entry, whatever the connection id or the JSON hold.
TEST(RedisPresence, EventsOnTheChannelNeverDecodeAsMessages) {
    for (bool join : {true, false}) {
        const auto e = broker::redis_presence::encode_event(
            join, "abcd1234-0-7", R"({"type":"join","topic":"t","client":{}})");
        EXPECT_TRUE(e.starts_with(join ? "!p\nj\nabcd1234-0-7\n{" : "!p\nl\nabcd1234-0-7\n{"));
        EXPECT_FALSE(broker::redis::decode_entry(e).has_value());
    }
    // ...and a message entry never looks like a presence event (an epoch is [0-9a-z]).
    broker::redis::entry m;
    m.epoch = "abcdefgh";
    m.offset = 1;
    m.payload = "!p\nj\nx\n{}";
    EXPECT_FALSE(broker::redis::encode_entry(m).starts_with("!p\n"));
}
