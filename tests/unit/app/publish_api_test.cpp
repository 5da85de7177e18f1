// POST /publish/<topic> and POST /publish through the real request loop (a socketpair, see
// tests/unit/net/session_fixture.hpp): status codes, JSON bodies and the error shape.
#include "../net/session_fixture.hpp"

#include <nlohmann/json.hpp>

using namespace herald;
using json = nlohmann::json;

namespace {

// The memory broker, except that publishes get `status` when it is set (Redis down, or a
// publish whose answer was lost).
class failing_broker final : public herald::broker::broker {
public:
    explicit failing_broker(herald::broker::broker& real) : real_(real) {}
    void publish(unsigned from, hub::publish_request&& req,
                 herald::broker::publish_handler&& done) override {
        if (!status) return real_.publish(from, std::move(req), std::move(done));
        herald::broker::publish_result r;
        r.status = *status;
        r.topic = req.topic;
        done(r);
    }
    void resolve(unsigned owner, const std::string& topic,
                 const std::optional<hub::stream_pos>& since, resolve_handler done) override {
        real_.resolve(owner, topic, since, std::move(done));
    }
    void history(unsigned from, const std::string& topic, std::optional<hub::stream_pos> since,
                 std::size_t limit, herald::broker::history_handler done) override {
        real_.history(from, topic, std::move(since), limit, std::move(done));
    }
    void on_tick(unsigned worker, time_point now) override { real_.on_tick(worker, now); }
    void broadcast_disconnect(unsigned from, std::string user,
                              herald::broker::broadcast_handler done) override {
        real_.broadcast_disconnect(from, std::move(user), std::move(done));
    }
    [[nodiscard]] bool ready() const noexcept override { return true; }
    [[nodiscard]] std::size_t history_bytes() const noexcept override { return 0; }

    std::optional<herald::broker::publish_status> status;

private:
    herald::broker::broker& real_;
};

class publish_api_test : public test::session_fixture {
protected:
    // The error code of an error answer, after checking the body's shape.
    static std::string error_code(const test::http_response& r) {
        auto b = json::parse(r.body, nullptr, false);
        EXPECT_TRUE(b.is_object() && b.size() == 1 && b["error"].is_object() &&
                    b["error"]["code"].is_string() && b["error"]["message"].is_string())
            << r.body;
        EXPECT_TRUE(r.has_header("Content-Type: application/json")) << r.head;
        return b.value("/error/code"_json_pointer, std::string());
    }
    test::http_response publish_to(std::string_view target, std::string_view body,
                                   std::string_view type = "text/plain",
                                   std::string_view headers = {}) {
        auto& p = connect();
        auto r = post(p, target, body, type, headers);
        EXPECT_TRUE(r);
        return r.value_or(test::http_response{});
    }
};

}  // namespace

TEST_F(publish_api_test, OneMessageIsAnsweredWithItsPosition) {
    auto r = publish_to("/publish/news", "hello");
    EXPECT_EQ(r.status, 200);
    auto b = json::parse(r.body);
    EXPECT_EQ(b["topic"], "news");
    EXPECT_EQ(b["offset"], 1);
    EXPECT_EQ(b["subscribers"], 0);
    EXPECT_TRUE(b["epoch"].is_string());
    EXPECT_FALSE(b.contains("duplicate"));
    EXPECT_EQ(counters().messages_published.get(), 1);
    EXPECT_EQ(counters().publish_requests.get(), 1);
}

TEST_F(publish_api_test, TheContentTypeDecidesThePayloadKind) {
    auto& sub = connect();
    sub.write("GET /poll?topic=k HTTP/1.1\r\nHost: t\r\n\r\n");
    run();
    EXPECT_EQ(publish_to("/publish/k", R"({"a":1})", "application/json; charset=utf-8").status,
              200);
    auto got = response(sub);
    ASSERT_TRUE(got);
    EXPECT_EQ(json::parse(got->body)["messages"][0]["data"], json::parse(R"({"a":1})"));

    sub.write("GET /poll?topic=k HTTP/1.1\r\nHost: t\r\n\r\n");
    run();
    EXPECT_EQ(
        publish_to("/publish/k", std::string("\x00\xff", 2), "application/octet-stream").status,
        200);
    got = response(sub);
    ASSERT_TRUE(got);
    EXPECT_EQ(json::parse(got->body)["messages"][0]["data_base64"], "AP8=");
}

TEST_F(publish_api_test, BadRequestsGetTheirStatusAndCode) {
    struct bad_case {
        std::string target;
        std::string body;
        std::string type;
        std::string headers;
        int status;
        std::string code;
    };
    cfg.limits.max_message_bytes = 100;
    const std::vector<bad_case> cases{
        {"/publish/bad%20topic", "x", "text/plain", "", 400, "bad_topic"},
        {"/publish/a", "{nope", "application/json", "", 400, "bad_json"},
        {"/publish/a", "\xff", "text/plain", "", 400, "bad_encoding"},
        {"/publish/a", "x", "image/png", "", 415, "unsupported_media_type"},
        {"/publish/a?event=has%20space", "x", "text/plain", "", 400, "bad_event"},
        {"/publish/a", "x", "text/plain", "Idempotency-Key: " + std::string(129, 'k') + "\r\n", 400,
         "bad_idempotency_key"},
        {"/publish/a", std::string(101, 'x'), "text/plain", "", 413, "payload_too_large"},
        {"/publish", "[]", "application/json", "", 400, "bad_json"},
        {"/publish", R"({"messages":[]})", "application/json", "", 400, "bad_request"},
        {"/publish", R"({"data":1})", "application/json", "", 400, "bad_request"},
        {"/publish", R"({"topic":"a b","data":1})", "application/json", "", 400, "bad_topic"},
        {"/publish", R"({"topic":"a","data_base64":"!!"})", "application/json", "", 400,
         "bad_request"},
        {"/publish", R"({"topic":"a","data":")" + std::string(100, 'x') + "\"}", "application/json",
         "", 413, "payload_too_large"},
        {"/publish", R"({"topic":"a","data":1})", "text/plain", "", 415, "unsupported_media_type"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.target + " " + c.body);
        auto r = publish_to(c.target, c.body, c.type, c.headers);
        EXPECT_EQ(r.status, c.status);
        EXPECT_EQ(error_code(r), c.code);
    }
    EXPECT_EQ(counters().messages_published.get(), 0);
}

TEST_F(publish_api_test, AWrongMethodIs405WithAllowAndAnUnknownPath404) {
    auto& p = connect();
    auto r = get(p, "/publish/a");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_TRUE(r->has_header("Allow: POST"));
    EXPECT_EQ(error_code(*r), "method_not_allowed");
    r = get(p, "/publishx");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(error_code(*r), "not_found");
}

TEST_F(publish_api_test, ABatchAnswersEveryMessageInOrder) {
    auto r = publish_to("/publish",
                        R"({"messages":[{"topic":"a","data":"x"},)"
                        R"({"topics":["b","c"],"data":{"n":1},"event":"tick"}]})",
                        "application/json");
    EXPECT_EQ(r.status, 200);
    auto b = json::parse(r.body);
    ASSERT_EQ(b["results"].size(), 3u);
    EXPECT_EQ(b["results"][0]["topic"], "a");
    EXPECT_EQ(b["results"][1]["topic"], "b");
    EXPECT_EQ(b["results"][2]["topic"], "c");
    for (const auto& res : b["results"]) EXPECT_EQ(res["offset"], 1);
    EXPECT_EQ(counters().messages_published.get(), 3);
}

TEST_F(publish_api_test, TheSameIdempotencyKeyPublishesOnce) {
    const std::string key = "Idempotency-Key: order-17\r\n";
    auto first = publish_to("/publish/a", "x", "text/plain", key);
    auto again = publish_to("/publish/a", "x", "text/plain", key);
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(json::parse(again.body)["offset"], json::parse(first.body)["offset"]);
    EXPECT_EQ(json::parse(again.body)["duplicate"], true);
    EXPECT_EQ(counters().messages_published.get(), 1);
    EXPECT_EQ(counters().duplicates.get(), 1);
}

TEST_F(publish_api_test, ABrokerThatCannotPublishIs503OrUnknown504WithRetryAfter) {
    failing_broker b(memory_broker());
    use_broker(b);
    b.status = broker::publish_status::unavailable;
    auto r = publish_to("/publish/a", "x");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(error_code(r), "unavailable");
    EXPECT_TRUE(r.has_header("Retry-After: 1"));
    b.status = broker::publish_status::unknown;
    r = publish_to("/publish", R"({"topics":["a","b"],"data":1})", "application/json");
    EXPECT_EQ(r.status, 504);
    EXPECT_EQ(error_code(r), "unknown");
    EXPECT_TRUE(r.has_header("Retry-After: 1"));
}

TEST_F(publish_api_test, WithPublishKeysAPublishNeedsOne) {
    const std::string key = "0123456789abcdef-publisher";
    cfg.auth.publish_keys = {key};
    use_auth();
    auto r = publish_to("/publish/a", "x");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(error_code(r), "unauthorized");
    EXPECT_TRUE(r.has_header("WWW-Authenticate: Bearer"));
    r = publish_to("/publish/a", "x", "text/plain",
                   "Authorization: Bearer wrong-key-0123456789\r\n");
    EXPECT_EQ(r.status, 401);
    r = publish_to("/publish/a", "x", "text/plain", "Authorization: Bearer " + key + "\r\n");
    EXPECT_EQ(r.status, 200);
}
