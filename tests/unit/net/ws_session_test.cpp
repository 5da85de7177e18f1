// ws_session over a socketpair (session_fixture.hpp): frames in, bytes out, close codes, ops,
// timers driven by the worker's sweep, and the queue bound.
#include "session_fixture.hpp"

#include <thread>

#include <nlohmann/json.hpp>

using namespace herald;
using herald::test::client_frame;
using herald::test::close_payload;
using json = nlohmann::json;

namespace {

class ws_session_test : public test::session_fixture {
protected:
    // The close frame that ends `p`'s stream, after any other frames (skipped).
    std::optional<test::ws_frame> close_frame(test::peer& p) {
        for (int i = 0; i < 10000; ++i) {
            auto f = frame(p);
            if (!f) return std::nullopt;
            if (f->op == ws::opcode::close) return f;
        }
        return std::nullopt;
    }
};

}  // namespace

TEST_F(ws_session_test, TheUpgradeAnswersTheAcceptKeyAndTheSubprotocol) {
    auto& p = connect();
    auto r = get(p, "/ws",
                 "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: other, herald.v1\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 101);
    // RFC 6455 1.3's example key and answer.
    EXPECT_TRUE(r->has_header("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    EXPECT_TRUE(r->has_header("Sec-WebSocket-Protocol: herald.v1"));
}

TEST_F(ws_session_test, AMessagePublishedToATopicOfTheUrlArrivesAsOneTextFrame) {
    auto& p = ws_connect("?topic=news");
    const auto offset = publish("news", "hello").offset;
    auto m = json::parse(text(p));
    EXPECT_EQ(m["type"], "message");
    EXPECT_EQ(m["topic"], "news");
    EXPECT_EQ(m["offset"], offset);
    EXPECT_EQ(m["data"], "hello");
    EXPECT_EQ(counters().frames_delivered.get(), 1);
}

TEST_F(ws_session_test, PingOpIsAnsweredWithItsId) {
    auto& p = ws_connect();
    send_text(p, R"({"op":"ping","id":7})");
    EXPECT_EQ(json::parse(text(p)), json::parse(R"({"type":"ok","id":7,"op":"ping"})"));
}

TEST_F(ws_session_test, AControlPingIsAnsweredWithAPongCarryingItsPayload) {
    auto& p = ws_connect();
    p.write(client_frame(ws::opcode::ping, "abc"));
    auto f = frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->op, ws::opcode::pong);
    EXPECT_EQ(f->payload, "abc");
}

TEST_F(ws_session_test, SubscribeThenPublishOpsReplyAndDeliver) {
    cfg.ws.client_publish = {"chat.*"};
    auto& p = ws_connect();
    send_text(p, R"({"op":"subscribe","id":"s1","topic":"chat.a"})");
    auto ok = json::parse(text(p));
    EXPECT_EQ(ok["type"], "ok");
    EXPECT_EQ(ok["id"], "s1");
    EXPECT_EQ(ok["op"], "subscribe");
    EXPECT_EQ(ok["topic"], "chat.a");
    EXPECT_EQ(ok["offset"], 0);

    send_text(p, R"({"op":"publish","id":2,"topic":"chat.a","data":{"n":1}})");
    // The message (the client is subscribed) and the publish's ok, in either order.
    json message;
    json reply;
    for (int i = 0; i < 2; ++i) {
        auto f = json::parse(text(p));
        (f["type"] == "message" ? message : reply) = f;
    }
    EXPECT_EQ(message["data"], json::parse(R"({"n":1})"));
    EXPECT_EQ(reply["op"], "publish");
    EXPECT_EQ(reply["id"], 2);
    EXPECT_EQ(reply["offset"], message["offset"]);

    send_text(p, R"({"op":"publish","topic":"news","data":1})");
    EXPECT_EQ(json::parse(text(p))["code"], "forbidden") << "news is not in ws.client_publish";

    send_text(p, R"({"op":"unsubscribe","id":3,"topic":"chat.a"})");
    EXPECT_EQ(json::parse(text(p))["op"], "unsubscribe");
    send_text(p, R"({"op":"unsubscribe","topic":"chat.a"})");
    EXPECT_EQ(json::parse(text(p))["code"], "not_subscribed");
}

TEST_F(ws_session_test, BadOpsGetErrorFramesAndTheConnectionStays) {
    auto& p = ws_connect();
    send_text(p, "not json");
    EXPECT_EQ(json::parse(text(p))["code"], "bad_json");
    send_text(p, R"({"op":"dance"})");
    EXPECT_EQ(json::parse(text(p))["code"], "unknown_op");
    send_text(p, R"({"op":"subscribe","topic":"bad topic"})");
    EXPECT_EQ(json::parse(text(p))["code"], "bad_topic");
    p.write(client_frame(ws::opcode::binary, "\x01\x02"));
    EXPECT_EQ(json::parse(text(p))["code"], "binary_not_supported");
    send_text(p, R"({"op":"ping"})");
    EXPECT_EQ(json::parse(text(p))["op"], "ping");
    EXPECT_EQ(rejected(metrics::reject::ws_bad_op), 3);
    EXPECT_EQ(rejected(metrics::reject::bad_topic), 1);
}

TEST_F(ws_session_test, AClientCloseIsEchoedAndTheConnectionEnds) {
    auto& p = ws_connect();
    p.write(client_frame(ws::opcode::close, close_payload(1000, "bye")));
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), 1000);
    EXPECT_TRUE(server_closed(p));
}

TEST_F(ws_session_test, AProtocolErrorCloses1002) {
    auto& p = ws_connect();
    p.write(client_frame(ws::opcode::cont, "orphan"));  // a continuation without a message
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::protocol_error);
    EXPECT_EQ(rejected(metrics::reject::ws_protocol_error), 1);
    EXPECT_TRUE(server_closed(p));
}

TEST_F(ws_session_test, AnUnmaskedFrameCloses1002) {
    auto& p = ws_connect();
    p.write(std::string("\x81\x02hi", 4));
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::protocol_error);
}

TEST_F(ws_session_test, InvalidUtf8Closes1007) {
    auto& p = ws_connect();
    p.write(client_frame(ws::opcode::text, "\xff\xfe"));
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::invalid_payload);
    EXPECT_EQ(rejected(metrics::reject::ws_invalid_utf8), 1);
}

TEST_F(ws_session_test, AMessageOverTheLimitCloses1009EvenWhenFragmented) {
    cfg.limits.max_client_message_bytes = 1000;
    auto& p = ws_connect();
    p.write(client_frame(ws::opcode::text, std::string(1001, 'x')));
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::too_big);

    auto& q = ws_connect();
    q.write(client_frame(ws::opcode::text, std::string(600, 'x'), false));
    q.write(client_frame(ws::opcode::cont, std::string(600, 'x'), true));
    f = close_frame(q);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::too_big);
    EXPECT_EQ(rejected(metrics::reject::ws_message_too_big), 2);
}

TEST_F(ws_session_test, AMessageFloodCloses1008) {
    cfg.limits.ws_messages_per_s = 5;
    auto& p = ws_connect();
    std::string burst;
    for (int i = 0; i < 40; ++i) burst += client_frame(ws::opcode::text, R"({"op":"ping"})");
    p.write(burst);
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::policy);
    EXPECT_GT(rejected(metrics::reject::rate_limited), 0);
}

// The sweep is called with times well apart from the bounds, so a slow machine (the real
// clock runs on between two calls) cannot move a result across one.
TEST_F(ws_session_test, TheSweepPingsAndAClientThatNeverAnswersIsClosed1008) {
    cfg.ws.ping_interval = milliseconds(10'000);
    cfg.ws.pong_timeout = milliseconds(10'000);
    auto& p = ws_connect();
    tick(milliseconds(5'000));
    p.pump();
    EXPECT_TRUE(p.in().empty()) << "no ping before ws.ping_interval";
    tick(milliseconds(10'000));
    auto ping = frame(p);
    ASSERT_TRUE(ping);
    EXPECT_EQ(ping->op, ws::opcode::ping);
    tick(milliseconds(15'000));
    p.pump();
    EXPECT_TRUE(p.in().empty()) << "within ws.pong_timeout";
    tick(milliseconds(20'000));
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::policy);
    EXPECT_EQ(f->payload.substr(2), "pong timeout");
    EXPECT_EQ(counters().pong_timeouts.get(), 1);
}

TEST_F(ws_session_test, APongKeepsTheConnection) {
    cfg.ws.ping_interval = milliseconds(10'000);
    cfg.ws.pong_timeout = milliseconds(10'000);
    auto& p = ws_connect();
    tick(milliseconds(10'000));
    ASSERT_TRUE(frame(p));
    p.write(client_frame(ws::opcode::pong, {}));
    run();
    tick(milliseconds(20'000));
    send_text(p, R"({"op":"ping"})");
    auto f = frame(p);
    ASSERT_TRUE(f);
    // The sweep at 20 s pinged again (a ping frame may come first); no close.
    if (f->op == ws::opcode::ping) f = frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->op, ws::opcode::text);
    EXPECT_EQ(counters().pong_timeouts.get(), 0);
}

TEST_F(ws_session_test, AClientThatDoesNotReadPastTheQueueBoundIsClosed1008) {
    cfg.limits.max_queued_bytes = 16 * 1024;
    auto& p = connect("192.0.2.10", 4096);
    auto r = get(p, "/ws?topic=flood",
                 "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    ASSERT_TRUE(r && r->status == 101);
    // The client reads nothing while 200 KiB are published to it.
    const std::string kib(1024, 'x');
    for (int i = 0; i < 200; ++i) publish("flood", kib);
    EXPECT_EQ(counters().slow_consumers[static_cast<std::size_t>(metrics::transport::ws)].get(), 1);
    // What the kernel held still arrives, then the close frame that says why.
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::policy);
    EXPECT_EQ(f->payload.substr(2), "slow consumer");
    EXPECT_TRUE(server_closed(p));
    EXPECT_LT(counters().frames_delivered.get(), 200);
}

TEST_F(ws_session_test, DrainSaysGoingAway) {
    auto& p = ws_connect();
    worker().drain();
    auto f = close_frame(p);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), ws::close_code::going_away);
}

// delivery_interval (holdback.hpp): an unsubscribe or a close while messages wait drops them with
// the subscription; the interval's timer then finds nothing to send (ASan checks the lifetimes).
TEST_F(ws_session_test, MessagesWaitingForTheIntervalGoWithTheirSubscription) {
    config::delivery_rule rule;
    rule.pattern = "iv.*";
    rule.delivery_interval = milliseconds(20);
    rule.slow_consumer = config::slow_policy::conflate;
    cfg.delivery.namespaces.push_back(rule);
    auto& p = ws_connect();
    send_text(p, R"({"op":"subscribe","id":1,"topic":"iv.a"})");
    EXPECT_EQ(json::parse(text(p))["type"], "ok");
    send_text(p, R"({"op":"subscribe","id":2,"topic":"iv.b"})");
    EXPECT_EQ(json::parse(text(p))["type"], "ok");
    publish("iv.a", "1");
    publish("iv.b", "2");
    publish("iv.b", "3");  // conflated with "2": neither has a JSON key, one key per topic
    EXPECT_EQ(counters().messages_held.get(), 3);
    EXPECT_EQ(counters().messages_conflated.get(), 1);
    send_text(p, R"({"op":"unsubscribe","id":3,"topic":"iv.a"})");
    EXPECT_EQ(json::parse(text(p))["op"], "unsubscribe");
    std::this_thread::sleep_for(milliseconds(30));
    const auto m = json::parse(text(p));
    EXPECT_EQ(m["topic"], "iv.b");
    EXPECT_EQ(m["data"], "3");
    EXPECT_EQ(counters().interval_flushes.get(), 1) << "iv.a's wait went with it";
    publish("iv.b", "4");
    auto& q = ws_connect("?topic=iv.b");
    publish("iv.b", "5");
    p.close();  // the first closes while "4" waits
    std::this_thread::sleep_for(milliseconds(30));
    EXPECT_EQ(json::parse(text(q))["data"], "5");
}
