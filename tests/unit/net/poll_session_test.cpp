// The long-poll over a socketpair (session_fixture.hpp): answered by a message, by a resume, by
// its deadline (poll.timeout, driven by the worker's sweep) or by the drain.
#include "session_fixture.hpp"

#include <nlohmann/json.hpp>

using namespace herald;
using json = nlohmann::json;

namespace {
class poll_session_test : public test::session_fixture {};
}  // namespace

TEST_F(poll_session_test, APollIsAnsweredByTheNextMessage) {
    auto& p = connect();
    p.write("GET /poll?topic=a HTTP/1.1\r\nHost: t\r\n\r\n");
    run();
    p.pump();
    EXPECT_EQ(p.in(), "") << "held until a message";
    EXPECT_EQ(counters().conn(metrics::transport::poll).get(), 1);
    const auto m = publish("a", "hello", "tick");
    auto r = response(p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body),
              json::parse(R"({"topic":"a","epoch":")" + m.epoch + R"(","cursor":")" + m.epoch +
                          R"(:1","messages":[{"offset":1,"event":"tick","data":"hello"}]})"));
    EXPECT_EQ(counters().conn(metrics::transport::poll).get(), 0);
    EXPECT_EQ(counters().conn(metrics::transport::http).get(), 1) << "plain HTTP again";
    // Keep-alive: the connection takes the next request.
    auto h = get(p, "/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
}

TEST_F(poll_session_test, APollFromACursorIsAnsweredAtOnceWithWhatCameAfter) {
    const auto one = publish("a", "one");
    publish("a", "two");
    publish("a", "three");
    auto& p = connect();
    auto r = get(p, "/poll?topic=a&since=" + one.epoch + ":1");
    ASSERT_TRUE(r);
    auto body = json::parse(r->body);
    EXPECT_EQ(body["recovered"], true);
    EXPECT_EQ(body["cursor"], one.epoch + ":3");
    ASSERT_EQ(body["messages"].size(), 2u);
    EXPECT_EQ(body["messages"][0]["data"], "two");
    EXPECT_EQ(body["messages"][1]["data"], "three");
}

TEST_F(poll_session_test, APollFromAnotherEpochIsAnsweredAtOnceNotRecovered) {
    const auto m = publish("a", "one");
    auto& p = connect();
    auto r = get(p, "/poll?topic=a&since=zzzzzzzz:9");
    ASSERT_TRUE(r);
    auto body = json::parse(r->body);
    EXPECT_EQ(body["recovered"], false);
    EXPECT_EQ(body["reason"], "epoch changed");
    EXPECT_EQ(body["cursor"], m.epoch + ":1");
    EXPECT_TRUE(body["messages"].empty());
}

TEST_F(poll_session_test, APollTimesOutEmptyAtPollTimeout) {
    cfg.poll.timeout = milliseconds(10'000);
    const auto m = publish("a", "before");
    auto& p = connect();
    p.write("GET /poll?topic=a HTTP/1.1\r\nHost: t\r\n\r\n");
    run();
    tick(milliseconds(5'000));
    p.pump();
    EXPECT_EQ(p.in(), "") << "not before poll.timeout";
    tick(milliseconds(20'000));
    auto r = response(p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body),
              json::parse(R"({"topic":"a","epoch":")" + m.epoch + R"(","cursor":")" + m.epoch +
                          R"(:1","messages":[]})"));
}

TEST_F(poll_session_test, MalformedPollsAre400) {
    auto& p = connect();
    auto r = get(p, "/poll?topic=a&since=nope");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"("code":"bad_cursor")"), std::string::npos) << r->body;
    r = get(p, "/poll?topic=a%20b");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"("code":"bad_topic")"), std::string::npos) << r->body;
    // Two topics need two cursors, one per topic, in the order of the topics.
    r = get(p, "/poll?topic=a&topic=b&since=e:1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"("code":"bad_cursor")"), std::string::npos) << r->body;
    r = get(p, "/poll");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
}

TEST_F(poll_session_test, DrainAnswersAHeldPollAndCloses) {
    auto& p = connect();
    p.write("GET /poll?topic=a HTTP/1.1\r\nHost: t\r\n\r\n");
    run();
    state.draining.store(true);
    worker().drain();
    auto r = response(p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->has_header("Connection: close"));
    EXPECT_TRUE(server_closed(p));
}
