// worker_context::set_settings, a reload on one worker (session_fixture.hpp): open WebSocket and
// SSE subscriptions re-resolve their delivery rule in the new settings, which replace (and free)
// the old ones at once. Under ASan a subscription left pointing into the old rules is a use after
// free at its next message. Intervals are 10 s so that nothing leaves by its timer in a test.
#include "herald/net/worker_context.hpp"

#include "session_fixture.hpp"

#include <nlohmann/json.hpp>

using namespace herald;
using json = nlohmann::json;

namespace {

class worker_context_test : public test::session_fixture {
protected:
    static config::delivery_rule rule(config::slow_policy p, milliseconds interval) {
        config::delivery_rule r;
        r.pattern = "iv:*";
        r.slow_consumer = p;
        r.delivery_interval = interval;
        return r;
    }
    // A reload to `rules` (the running settings otherwise).
    void reload(std::vector<config::delivery_rule> rules) {
        auto fresh = worker().cfg;
        fresh.delivery.namespaces = std::move(rules);
        worker().set_settings(fresh);
        run();
    }
    [[nodiscard]] std::int64_t held() { return counters().messages_held.get(); }
};

}  // namespace

TEST_F(worker_context_test, OpenWebSocketSubscriptionsTakeTheNewRules) {
    cfg.delivery.namespaces.push_back(rule(config::slow_policy::conflate, milliseconds(10'000)));
    auto& p = ws_connect();
    send_text(p, R"({"op":"subscribe","id":1,"topic":"iv:a"})");
    EXPECT_EQ(json::parse(text(p))["type"], "ok");
    publish("iv:a", "1");
    EXPECT_EQ(held(), 1);
    // The rule goes: what it held leaves now, not at the end of its interval; later messages
    // are not held. Old code: "1" waited 10 s and "2" joined it.
    reload({});
    EXPECT_EQ(json::parse(text(p))["data"], "1");
    publish("iv:a", "2");
    EXPECT_EQ(json::parse(text(p))["data"], "2");
    EXPECT_EQ(held(), 1);
    // A rule comes: the subscription made before it conflates per interval from now on.
    reload({rule(config::slow_policy::conflate, milliseconds(10'000))});
    publish("iv:a", "3");
    publish("iv:a", "4");
    EXPECT_EQ(held(), 3);
    EXPECT_EQ(counters().messages_conflated.get(), 1);
    // It changes to one without an interval: the interval's wait ends with it.
    reload({rule(config::slow_policy::drop_oldest, milliseconds(0))});
    EXPECT_EQ(json::parse(text(p))["data"], "4");
    publish("iv:a", "5");
    EXPECT_EQ(json::parse(text(p))["data"], "5");
    EXPECT_EQ(held(), 3);
}

TEST_F(worker_context_test, OpenSseSubscriptionsTakeTheNewRules) {
    auto& p = connect();
    auto r = get(p, "/sse?topic=iv:a");
    ASSERT_TRUE(r && r->status == 200);
    until(p, "retry: 2000\n\n");
    reload({rule(config::slow_policy::disconnect, milliseconds(10'000))});
    publish("iv:a", "m1");
    publish("iv:a", "m2");
    EXPECT_EQ(held(), 2) << "the subscription made before the reload follows its new rule";
    p.pump();
    EXPECT_EQ(p.in(), "");
    reload({});
    EXPECT_NE(until(p, "data: m2\n\n").find("data: m1\n\n"), std::string::npos);
    publish("iv:a", "m3");
    EXPECT_NE(until(p, "data: m3\n\n"), "");
    EXPECT_EQ(held(), 2);
}
