#include "herald/net/hooks.hpp"

#include "herald/net/webhooks.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace herald;
using net::call_status;
using net::hook_kind;

namespace {

config::settings::hook deny_on_error() {
    return {};
}

net::http_answer answer(unsigned code, std::string body) {
    net::http_answer a;
    a.status = call_status::ok;
    a.code = code;
    a.body = std::move(body);
    return a;
}

TEST(HookAnswer, AllowWithUserInfoAndTopics) {
    auto v = net::hook_caller::read_answer(
        hook_kind::connect,
        answer(200, R"({"allow":true,"user":"alice","info":{"n":1},"topics":["user.alice"]})"),
        deny_on_error());
    EXPECT_TRUE(v.allow);
    EXPECT_FALSE(v.from_error);
    EXPECT_EQ(v.user, "alice");
    EXPECT_EQ(v.info, R"({"n":1})");
    EXPECT_EQ(v.topics, std::vector<std::string>{"user.alice"});
}

TEST(HookAnswer, DenyCarriesTheMessage) {
    auto v = net::hook_caller::read_answer(
        hook_kind::subscribe, answer(200, R"({"allow":false,"message":"members only"})"),
        deny_on_error());
    EXPECT_FALSE(v.allow);
    EXPECT_FALSE(v.from_error);
    EXPECT_EQ(v.message, "members only");
    auto f = net::hook_caller::read_answer(hook_kind::subscribe, answer(403, ""), deny_on_error());
    EXPECT_FALSE(f.allow);
    EXPECT_FALSE(f.from_error) << "401/403 refuse; they are answers, not errors";
}

TEST(HookAnswer, ErrorsFollowOnError) {
    auto allow = deny_on_error();
    allow.allow_on_error = true;
    const std::vector<net::http_answer> bad = {
        answer(500, R"({"allow":true})"),
        answer(200, "not json"),
        answer(200, R"([true])"),
        answer(200, R"({"allow":"yes"})"),
        answer(200, R"({"allow":true,"user":7})"),
        answer(200, R"({"allow":true,"info":")" + std::string(2000, 'x') + R"("})"),
        answer(200, R"({"allow":true,"topics":["bad topic"]})"),
    };
    for (const auto& a : bad) {
        auto d = net::hook_caller::read_answer(hook_kind::connect, a, deny_on_error());
        EXPECT_FALSE(d.allow) << a.body;
        EXPECT_TRUE(d.from_error) << a.body;
        auto o = net::hook_caller::read_answer(hook_kind::connect, a, allow);
        EXPECT_TRUE(o.allow) << a.body;
        EXPECT_TRUE(o.from_error) << a.body;
    }
    net::http_answer t;
    t.status = call_status::timeout;
    EXPECT_TRUE(net::hook_caller::read_answer(hook_kind::publish, t, deny_on_error()).from_error);
}

TEST(HookAnswer, PublishReplacementData) {
    auto v = net::hook_caller::read_answer(
        hook_kind::publish, answer(200, R"({"allow":true,"data":{"a":1}})"), deny_on_error());
    ASSERT_TRUE(v.data);
    EXPECT_EQ(v.data->first, wire::payload_kind::json);
    EXPECT_EQ(v.data->second, R"({"a":1})");
    auto b = net::hook_caller::read_answer(
        hook_kind::publish, answer(200, R"({"allow":true,"data_base64":"AAE="})"), deny_on_error());
    ASSERT_TRUE(b.data);
    EXPECT_EQ(b.data->first, wire::payload_kind::binary);
    EXPECT_EQ(b.data->second, std::string("\0\1", 2));
    auto none = net::hook_caller::read_answer(hook_kind::publish, answer(200, R"({"allow":true})"),
                                              deny_on_error());
    EXPECT_FALSE(none.data);
}

TEST(HookBody, IsJsonWithTheClientAndEscapes) {
    net::hook_client_info who{"10.0.0.1", "sse", "bo\"b", R"({"n":1})"};
    auto body = net::hook_caller::publish_body(who, {{"Cookie", "a=\"1\""}}, "room.1",
                                               wire::payload_kind::text, "hi\n");
    auto j = nlohmann::json::parse(body);
    EXPECT_EQ(j["hook"], "publish");
    EXPECT_EQ(j["client"]["user"], "bo\"b");
    EXPECT_EQ(j["client"]["info"]["n"], 1);
    EXPECT_EQ(j["headers"]["Cookie"], "a=\"1\"");
    EXPECT_EQ(j["data"], "hi\n");
}

TEST(WebhookSignature, IsHmacSha256Hex) {
    // RFC 4231 test case 2.
    EXPECT_EQ(net::hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HooksConfig, KeysAndErrorsNameTheKey) {
    auto s = config::parse_yaml(R"(
hooks:
  connect: {url: "http://127.0.0.1:3000/c", timeout: 500ms, headers_to_forward: [Cookie], on_error: allow}
webhooks:
  - {url: "http://127.0.0.1:3000/e", events: [disconnect], secret: s3cret, batch_size: 10}
)");
    EXPECT_EQ(s.hooks.connect.url, "http://127.0.0.1:3000/c");
    EXPECT_EQ(s.hooks.connect.timeout, std::chrono::milliseconds(500));
    EXPECT_TRUE(s.hooks.connect.allow_on_error);
    ASSERT_EQ(s.webhooks.size(), 1u);
    EXPECT_EQ(s.webhooks[0].batch_size, 10u);
    const std::pair<const char*, const char*> bad[] = {
        {"hooks: {connect: {url: \"https://x/\"}}", "hooks.connect.url"},
        {"hooks: {publish: {on_error: maybe}}", "hooks.publish.on_error"},
        {"hooks: {subscribe: {timeout: 2h}}", "hooks.subscribe.timeout"},
        {"webhooks: [{url: \"http://x/\", events: [disconnect]}]", "webhooks[0].secret"},
        {"webhooks: [{url: \"http://x/\", events: [nope], secret: s}]", "webhooks[0].events[0]"},
        {"webhooks: [{url: \"http://x/\", events: [publish], secret: s, batch_size: 0}]",
         "webhooks[0].batch_size"},
    };
    for (const auto& [yaml, key] : bad) {
        try {
            (void)config::parse_yaml(yaml);
            ADD_FAILURE() << "accepted: " << yaml;
        } catch (const config::config_error& e) {
            EXPECT_EQ(e.key(), key) << yaml << ": " << e.what();
        }
    }
}

}  // namespace
