#include "herald/config/config.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace herald::config;
using namespace std::chrono_literals;

namespace {
std::string yaml_with(const std::string& dotted, const std::string& value) {
    // "a.b.c: v" as nested block YAML.
    std::string out;
    std::size_t start = 0, depth = 0;
    for (auto dot = dotted.find('.'); dot != std::string::npos; dot = dotted.find('.', start)) {
        out += std::string(2 * depth++, ' ') + dotted.substr(start, dot - start) + ":\n";
        start = dot + 1;
    }
    return out + std::string(2 * depth, ' ') + dotted.substr(start) + ": " + value + "\n";
}
}  // namespace

TEST(Format, DurationsInTheLargestExactUnit) {
    EXPECT_EQ(format_duration(0ms), "0s");
    EXPECT_EQ(format_duration(100ms), "100ms");
    EXPECT_EQ(format_duration(1500ms), "1500ms");
    EXPECT_EQ(format_duration(60s), "1m");
    EXPECT_EQ(format_duration(90s), "90s");
    EXPECT_EQ(format_duration(1h), "1h");
    EXPECT_EQ(format_duration(24h), "1d");
    EXPECT_EQ(format_duration(720h), "30d");
    for (milliseconds d : std::initializer_list<milliseconds>{0ms, 1ms, 999ms, 61s, 25h, 720h})
        EXPECT_EQ(parse_duration(format_duration(d)), d) << d.count();
}

TEST(Format, SizesInTheLargestExactUnit) {
    EXPECT_EQ(format_size(0), "0");
    EXPECT_EQ(format_size(125), "125");
    EXPECT_EQ(format_size(1024), "1KiB");
    EXPECT_EQ(format_size(1536), "1536");
    EXPECT_EQ(format_size(64u << 20), "64MiB");
    EXPECT_EQ(format_size(64ull << 30), "64GiB");
    for (std::size_t v : {0ul, 1ul, 1000ul, 4096ul, 3ul << 30})
        EXPECT_EQ(parse_size(format_size(v)), v) << v;
}

// A key the schema accepts but describe() forgets would be missing from --print-defaults and
// from the doc check; this names it.
TEST(Describe, ListsEveryKeyOfTheSchemaOnce) {
    const auto keys = schema_keys();
    const std::set<std::string> schema(keys.begin(), keys.end());
    std::set<std::string> described;
    for (const auto& k : describe(settings{})) {
        EXPECT_TRUE(described.insert(k.key).second) << "listed twice: " << k.key;
        EXPECT_TRUE(schema.count(k.key)) << "described but not in the schema: " << k.key;
    }
    for (const auto& k : schema)
        EXPECT_TRUE(described.count(k)) << "in the schema but missing from describe() (and so "
                                        << "from --print-defaults): " << k;
}

TEST(Describe, DefaultsYamlReadsBackAsTheDefaults) {
    const auto text = defaults_yaml();
    const auto back = parse_yaml(text);
    const auto want = describe(settings{});
    const auto got = describe(back);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].key, want[i].key);
        EXPECT_EQ(got[i].value, want[i].value) << got[i].key;
    }
    EXPECT_NE(text.find("ping_interval: 25s  # range: 100ms..1d"), std::string::npos) << text;
    EXPECT_NE(text.find("allow_unauthenticated_publish: false"), std::string::npos) << text;
}

TEST(Describe, NonDefaultValuesReadBack) {
    const auto s = parse_yaml(R"(
listen: "[::1]:9000"
ws: {client_publish: ["chat:*", "room-1"]}
history: {namespaces: [{pattern: "chat:*", size: 5, ttl: 90s}]}
tls: {min_version: "1.3"}
redis: {shards: ["redis-a:6379", "10.0.0.2:6380"], key_prefix: "x:"}
auth:
  jwt: {keys: [{alg: HS256, secret: "0123456789abcdef0123456789abcdef", kid: k1}]}
  default_anonymous: none
  token_cookie: "a\"b \\c"
  namespaces: [{pattern: "p:*", anonymous: subscribe}]
quotas: [{pattern: "q*", max_topics: 3, max_subscribers_per_topic: 4}]
limits: {ws_messages_per_s: 2.5}
)");
    std::string yaml;
    for (const auto& k : describe(s)) yaml += yaml_with(k.key, k.value);
    const auto back = describe(parse_yaml(yaml));
    const auto want = describe(s);
    ASSERT_EQ(back.size(), want.size());
    for (std::size_t i = 0; i < back.size(); ++i) EXPECT_EQ(back[i].value, want[i].value);
}

// Every range describe() shows is the one the parser enforces: both ends are accepted.
TEST(Describe, BothEndsOfEveryRangeAreAccepted) {
    std::size_t ranged = 0;
    for (const auto& k : describe(settings{})) {
        if (k.range.empty()) continue;
        ++ranged;
        const auto dots = k.range.find("..");
        ASSERT_NE(dots, std::string::npos) << k.key;
        for (const auto& end : {k.range.substr(0, dots), k.range.substr(dots + 2)})
            EXPECT_NO_THROW((void)parse_yaml(yaml_with(k.key, end))) << k.key << " = " << end;
    }
    EXPECT_GE(ranged, 25u);
}

TEST(Describe, OutOfRangeErrorsUseHumanUnits) {
    const auto message = [](const std::string& yaml) -> std::string {
        try {
            (void)parse_yaml(yaml);
        } catch (const config_error& e) {
            return e.what();
        }
        return "<no error>";
    };
    EXPECT_EQ(message("ws:\n  ping_interval: 50ms\n"),
              "ws.ping_interval: must be between 100ms and 1d, got '50ms'");
    EXPECT_EQ(message("ws:\n  ping_interval: 2d\n"),
              "ws.ping_interval: must be between 100ms and 1d, got '2d'");
    EXPECT_EQ(message("limits:\n  max_queued_bytes: 2GiB\n"),
              "limits.max_queued_bytes: must be between 1KiB and 1GiB, got '2GiB'");
    EXPECT_EQ(message("limits:\n  max_connections: 0\n"),
              "limits.max_connections: must be between 1 and 10000000, got '0'");
    EXPECT_EQ(message("history:\n  namespaces: [{pattern: a, ttl: 100ms}]\n"),
              "history.namespaces[0].ttl: must be between 1s and 30d, got '100ms'");
}
