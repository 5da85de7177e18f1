// sse_session over a socketpair (session_fixture.hpp): headers, retry, events and their ids,
// resume from Last-Event-ID, heartbeats driven by the worker's sweep, drain.
#include "session_fixture.hpp"

#include <thread>

using namespace herald;

namespace {

class sse_session_test : public test::session_fixture {
protected:
    // Opens a stream and reads its response head.
    test::peer& stream(std::string_view query, std::string_view headers = {}) {
        auto& p = connect();
        auto r = get(p, "/sse" + std::string(query), headers);
        EXPECT_TRUE(r && r->status == 200) << (r ? r->head + r->body : "no answer");
        if (r) head = r->head;
        return p;
    }
    std::string head;
};

}  // namespace

TEST_F(sse_session_test, TheHeadersThenRetryOpenTheStream) {
    cfg.sse.retry = milliseconds(1234);
    auto& p = stream("?topic=a");
    EXPECT_NE(head.find("Content-Type: text/event-stream\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("Cache-Control: no-cache, no-transform\r\n"), std::string::npos);
    EXPECT_NE(head.find("X-Accel-Buffering: no\r\n"), std::string::npos);
    EXPECT_EQ(head.find("Content-Length"), std::string::npos) << "the stream ends with the socket";
    EXPECT_EQ(until(p, "\n\n"), "retry: 1234\n\n");
}

TEST_F(sse_session_test, EachMessageIsOneEventWithItsPositionAsId) {
    auto& p = stream("?topic=a");
    until(p, "retry: 2000\n\n");
    const auto r = publish("a", "line one\nline two", "tick");
    EXPECT_EQ(until(p, "\n\n"), "id: " + r.epoch + ":" + std::to_string(r.offset) +
                                    "\nevent: tick\ndata: line one\ndata: line two\n\n");
    EXPECT_EQ(counters().frames_delivered.get(), 1);
}

TEST_F(sse_session_test, AStreamOfSeveralTopicsNamesEveryPositionInItsIds) {
    auto& p = stream("?topic=a&topic=b");
    until(p, "retry: 2000\n\n");
    const auto b = publish("b", "x");
    const auto a = publish("a", "y");
    EXPECT_EQ(until(p, "\n\n"), "id: " + a.epoch + ":0," + b.epoch + ":1\ndata: x\n\n");
    EXPECT_EQ(until(p, "\n\n"), "id: " + a.epoch + ":1," + b.epoch + ":1\ndata: y\n\n");
}

TEST_F(sse_session_test, LastEventIdReplaysWhatCameAfterIt) {
    publish("a", "one");
    const auto two = publish("a", "two");
    const auto three = publish("a", "three");
    auto& p = stream("?topic=a", "Last-Event-ID: " + two.epoch + ":1\r\n");
    until(p, "retry: 2000\n\n");
    EXPECT_EQ(until(p, "\n\n"), "id: " + two.epoch + ":2\ndata: two\n\n");
    EXPECT_EQ(until(p, "\n\n"), "id: " + three.epoch + ":3\ndata: three\n\n");
    EXPECT_EQ(counters().resumes_recovered.get(), 1);
}

TEST_F(sse_session_test, AnIdFromAnotherEpochGetsAResetEvent) {
    const auto r = publish("a", "one");
    auto& p = stream("?last_event_id=zzzzzzzz:5&topic=a");
    until(p, "retry: 2000\n\n");
    EXPECT_EQ(until(p, "\n\n"), "id: " + r.epoch +
                                    ":1\nevent: reset\ndata: {\"topic\":\"a\",\"epoch\":\"" +
                                    r.epoch + "\",\"offset\":1,\"reason\":\"epoch changed\"}\n\n");
    EXPECT_EQ(counters().resumes_failed.get(), 1);
}

TEST_F(sse_session_test, AMalformedLastEventIdIsRefusedBeforeTheStream) {
    auto& p = connect();
    auto r =
        get(p, "/sse?topic=a&topic=b", "Last-Event-ID: abc:1\r\n");  // one position, two topics
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"({"error":{"code":"bad_last_event_id",)"), std::string::npos)
        << r->body;
    EXPECT_EQ(rejected(metrics::reject::bad_last_event_id), 1);
}

TEST_F(sse_session_test, AnIdleStreamGetsAHeartbeatEverySseHeartbeat) {
    cfg.sse.heartbeat = milliseconds(10'000);
    auto& p = stream("?topic=a");
    until(p, "retry: 2000\n\n");
    tick(milliseconds(5'000));
    p.pump();
    EXPECT_EQ(p.in(), "") << "not before sse.heartbeat";
    tick(milliseconds(10'000));
    EXPECT_EQ(until(p, "\n\n"), ": heartbeat\n\n");
}

TEST_F(sse_session_test, DrainEndsTheStreamWithAShutdownEvent) {
    auto& p = stream("?topic=a");
    until(p, "retry: 2000\n\n");
    worker().drain();
    EXPECT_EQ(until(p, "\n\n"), "event: shutdown\ndata: {\"reason\":\"going away\"}\n\n");
    EXPECT_TRUE(server_closed(p));
}

TEST_F(sse_session_test, AnAllowedOriginGetsCorsHeadersOnTheStreamAndOthersA403) {
    cfg.origins.allow = {"https://app.example"};
    use_auth();
    stream("?topic=a", "Origin: https://app.example\r\n");
    EXPECT_NE(head.find("Access-Control-Allow-Origin: https://app.example\r\n"), std::string::npos)
        << head;
    EXPECT_NE(head.find("Vary: Origin\r\n"), std::string::npos);
    auto& q = connect();
    auto r = get(q, "/sse?topic=a", "Origin: https://evil.example\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_NE(r->body.find(R"("code":"forbidden")"), std::string::npos);
}

// delivery.namespaces (holdback.hpp), the rule WebSocket shares.
TEST_F(sse_session_test, DropOldestServesAStalledReaderAndSaysWhatItSkipped) {
    cfg.limits.max_queued_bytes = 16 * 1024;
    config::delivery_rule rule;
    rule.pattern = "d:*";
    rule.slow_consumer = config::slow_policy::drop_oldest;
    rule.keep = 5;
    cfg.delivery.namespaces.push_back(rule);
    auto& p = connect("192.0.2.10", 4096);
    auto r = get(p, "/sse?topic=d:1");
    ASSERT_TRUE(r && r->status == 200);
    until(p, "retry: 2000\n\n");
    // The client reads nothing while 200 KiB are published to it.
    const std::string kib(1024, 'x');
    broker::publish_result last;
    for (int i = 0; i < 200; ++i) last = publish("d:1", kib);
    EXPECT_EQ(counters().slow_consumers[static_cast<std::size_t>(metrics::transport::sse)].get(),
              0);
    EXPECT_GT(counters().messages_dropped.get(), 100);
    // Reading now: a reset carrying the skipped range (its id: where the stream goes on), then the
    // newest messages, the last one last.
    const std::string got =
        until(p, "id: " + last.epoch + ":" + std::to_string(last.offset) + "\n");
    const auto at = got.find("\nevent: reset\ndata: {\"topic\":\"d:1\"");
    ASSERT_NE(at, std::string::npos) << got.substr(0, 300);
    EXPECT_NE(got.find("\"reason\":\"slow consumer\",\"skipped\":{\"from\":", at),
              std::string::npos);
    EXPECT_FALSE(p.eof());
}

TEST_F(sse_session_test, DeliveryIntervalSendsAnIntervalsMessagesInOneWrite) {
    config::delivery_rule rule;
    rule.pattern = "iv:*";
    rule.delivery_interval = milliseconds(30);
    cfg.delivery.namespaces.push_back(rule);
    auto& p = stream("?topic=iv:1");
    until(p, "retry: 2000\n\n");
    const auto writes = counters().write_calls.get();
    broker::publish_result last;
    for (int i = 0; i < 10; ++i) last = publish("iv:1", std::string("m").append(std::to_string(i)));
    p.pump();
    EXPECT_EQ(p.in(), "") << "held until the interval ends";
    EXPECT_EQ(counters().messages_held.get(), 10);
    // The interval's timer is a real one: wait it out (not a speed assertion, a bound below).
    std::this_thread::sleep_for(milliseconds(40));
    const std::string got =
        until(p, "id: " + last.epoch + ":" + std::to_string(last.offset) + "\n");
    EXPECT_NE(got.find("data: m0\n\n"), std::string::npos);
    EXPECT_LT(got.find("data: m0\n"), got.find("data: m9\n")) << "in offset order";
    EXPECT_EQ(counters().write_calls.get() - writes, 1) << "ten messages, one write";
    EXPECT_EQ(counters().interval_flushes.get(), 1);
    EXPECT_EQ(counters().frames_delivered.get(), 10);
}
