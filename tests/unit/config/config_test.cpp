#include "herald/config/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

using namespace herald::config;
using namespace std::chrono_literals;

namespace {

std::string shipped_config_path() {
    return (std::filesystem::path(HERALD_SOURCE_DIR) / "config" / "herald.yaml").string();
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The key named by the config_error that parsing `yaml` raises; "<no error>" when none.
std::string error_key(const std::string& yaml) {
    try {
        (void)parse_yaml(yaml);
    } catch (const config_error& e) {
        return e.key();
    }
    return "<no error>";
}

env_lookup env(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

void expect_defaults(const settings& s) {
    const settings d;
    EXPECT_EQ(s.listen_host, "127.0.0.1");
    EXPECT_EQ(s.listen_port, 8080);
    EXPECT_EQ(s.workers, 0u);
    EXPECT_EQ(s.broker, "memory");
    EXPECT_EQ(s.log.level, "info");
    EXPECT_EQ(s.log.format, "text");
    EXPECT_EQ(s.http.header_timeout, 10s);
    EXPECT_EQ(s.http.idle_timeout, 60s);
    EXPECT_EQ(s.http.max_header_bytes, 8u * 1024);
    EXPECT_EQ(s.limits.max_connections, 10'000u);
    EXPECT_EQ(s.limits.max_message_bytes, 64u * 1024);
    EXPECT_EQ(s.limits.max_client_message_bytes, 64u * 1024);
    EXPECT_EQ(s.limits.max_queued_bytes, 1024u * 1024);
    EXPECT_EQ(s.limits.max_topics_per_connection, 64u);
    EXPECT_EQ(s.ws.ping_interval, 25s);
    EXPECT_EQ(s.ws.pong_timeout, 10s);
    EXPECT_TRUE(s.ws.client_publish.empty());
    EXPECT_EQ(s.sse.heartbeat, 15s);
    EXPECT_EQ(s.sse.retry, 2s);
    EXPECT_EQ(s.poll.timeout, 25s);
    EXPECT_EQ(s.history.size, 100u);
    EXPECT_EQ(s.history.ttl, 5min);
    EXPECT_EQ(s.history.max_bytes, 64u * 1024 * 1024);
    EXPECT_EQ(s.history.max_recovery, 300u);
    EXPECT_TRUE(s.history.namespaces.empty());
    EXPECT_EQ(s.publish.idempotency_window, 5min);
    EXPECT_EQ(s.shutdown.drain_timeout, 10s);
    // And the struct's own defaults agree with the shipped file.
    EXPECT_EQ(s.http.header_timeout, d.http.header_timeout);
    EXPECT_EQ(s.history.max_bytes, d.history.max_bytes);
}

}  // namespace

TEST(ConfigFile, ShippedFileParsesToDocumentedDefaults) {
    auto text = read_file(shipped_config_path());
    ASSERT_FALSE(text.empty()) << shipped_config_path();
    expect_defaults(parse_yaml(text));
    expect_defaults(load_file(shipped_config_path()));
}

TEST(ConfigFile, EmptyDocumentAndStructDefaultsAgree) {
    expect_defaults(parse_yaml(""));
    expect_defaults(settings{});
}

TEST(ConfigFile, MissingFileIsConfigError) {
    EXPECT_THROW((void)load_file("/nonexistent/herald.yaml"), config_error);
}

TEST(ConfigParse, EveryKeyIsSettable) {
    auto s = parse_yaml(R"(
listen: "[::1]:9000"
workers: 3
broker: memory
log: {level: debug, format: json}
http: {header_timeout: 250ms, idle_timeout: 2m, max_header_bytes: 16KiB}
limits:
  max_connections: 5
  max_message_bytes: 1MiB
  max_client_message_bytes: 125
  max_queued_bytes: 2MiB
  max_topics_per_connection: 1024
ws: {ping_interval: 1s, pong_timeout: 500ms, client_publish: ["chat:*", "room-1"]}
sse: {heartbeat: 5s, retry: 0}
poll: {timeout: 1h}
history:
  size: 0
  ttl: 1h
  max_bytes: 0
  max_recovery: 7
  namespaces:
    - {pattern: "chat:*", size: 500, ttl: 2h}
publish: {idempotency_window: 0}
shutdown: {drain_timeout: 0}
)");
    EXPECT_EQ(s.listen_host, "::1");
    EXPECT_EQ(s.listen_port, 9000);
    EXPECT_EQ(s.workers, 3u);
    EXPECT_EQ(s.effective_workers(), 3u);
    EXPECT_EQ(s.log.level, "debug");
    EXPECT_EQ(s.log.format, "json");
    EXPECT_EQ(s.http.header_timeout, 250ms);
    EXPECT_EQ(s.http.idle_timeout, 2min);
    EXPECT_EQ(s.http.max_header_bytes, 16u * 1024);
    EXPECT_EQ(s.limits.max_connections, 5u);
    EXPECT_EQ(s.limits.max_message_bytes, 1u << 20);
    EXPECT_EQ(s.limits.max_client_message_bytes, 125u);
    EXPECT_EQ(s.limits.max_queued_bytes, 2u << 20);
    EXPECT_EQ(s.limits.max_topics_per_connection, 1024u);
    EXPECT_EQ(s.ws.ping_interval, 1s);
    EXPECT_EQ(s.ws.pong_timeout, 500ms);
    EXPECT_EQ(s.ws.client_publish, (std::vector<std::string>{"chat:*", "room-1"}));
    EXPECT_EQ(s.sse.heartbeat, 5s);
    EXPECT_EQ(s.sse.retry, 0ms);
    EXPECT_EQ(s.poll.timeout, 1h);
    EXPECT_EQ(s.history.size, 0u);
    EXPECT_EQ(s.history.ttl, 1h);
    EXPECT_EQ(s.history.max_bytes, 0u);
    EXPECT_EQ(s.history.max_recovery, 7u);
    ASSERT_EQ(s.history.namespaces.size(), 1u);
    EXPECT_EQ(s.history.namespaces[0].pattern, "chat:*");
    EXPECT_EQ(s.history.namespaces[0].size, 500u);
    EXPECT_EQ(s.history.namespaces[0].ttl, 2h);
    EXPECT_EQ(s.publish.idempotency_window, 0ms);
    EXPECT_EQ(s.shutdown.drain_timeout, 0ms);
}

TEST(ConfigParse, NullSectionKeepsDefaults) {
    auto s = parse_yaml("limits:\nhistory:\n");
    EXPECT_EQ(s.limits.max_connections, 10'000u);
    EXPECT_EQ(s.history.size, 100u);
}

TEST(ConfigParse, EffectiveWorkersIsAtLeastOne) {
    // 0 (the default) means one per core, at most 64; a number set is taken as it is.
    settings s;
    const unsigned cores = std::thread::hardware_concurrency();
    EXPECT_EQ(s.effective_workers(), cores == 0 ? 1u : std::min(cores, 64u));
    s.workers = 3;
    EXPECT_EQ(s.effective_workers(), 3u);
}

// Every error names the full dotted key.
struct bad_case {
    const char* yaml;
    const char* key;
};

class ConfigErrors : public ::testing::TestWithParam<bad_case> {};

TEST_P(ConfigErrors, NamesTheKey) {
    const auto& c = GetParam();
    EXPECT_EQ(error_key(c.yaml), c.key) << c.yaml;
}

INSTANTIATE_TEST_SUITE_P(
    AllKeys, ConfigErrors,
    ::testing::Values(
        // unknown keys, at every level
        bad_case{"bogus: 1", "bogus"}, bad_case{"limits:\n  bogus: 1", "limits.bogus"},
        bad_case{"http:\n  max_headers: 1", "http.max_headers"},
        bad_case{"history:\n  namespaces:\n    - {pattern: a, colour: red}",
                 "history.namespaces[0].colour"},
        // sections that are not maps, scalars that are not scalars
        bad_case{"limits: 5", "limits"}, bad_case{"log: [info]", "log"},
        bad_case{"log:\n  level: [info]", "log.level"}, bad_case{"workers:", "workers"},
        bad_case{"workers: {a: 1}", "workers"},
        // integers: wrong type and range
        bad_case{"workers: 65", "workers"}, bad_case{"workers: -1", "workers"},
        bad_case{"workers: abc", "workers"}, bad_case{"workers: \"4\"", "workers"},
        bad_case{"workers: 4.5", "workers"}, bad_case{"workers: 0x10", "workers"},
        bad_case{"workers: true", "workers"},
        bad_case{"limits:\n  max_connections: 0", "limits.max_connections"},
        bad_case{"limits:\n  max_connections: 10000001", "limits.max_connections"},
        bad_case{"limits:\n  max_connections: many", "limits.max_connections"},
        bad_case{"limits:\n  max_topics_per_connection: 1025", "limits.max_topics_per_connection"},
        bad_case{"history:\n  size: 1000001", "history.size"},
        bad_case{"history:\n  size: -1", "history.size"},
        bad_case{"history:\n  max_recovery: x", "history.max_recovery"},
        // sizes
        bad_case{"http:\n  max_header_bytes: 512", "http.max_header_bytes"},
        bad_case{"http:\n  max_header_bytes: 2MiB", "http.max_header_bytes"},
        bad_case{"http:\n  max_header_bytes: 8kb", "http.max_header_bytes"},
        bad_case{"limits:\n  max_message_bytes: 0", "limits.max_message_bytes"},
        bad_case{"limits:\n  max_message_bytes: 65MiB", "limits.max_message_bytes"},
        bad_case{"limits:\n  max_client_message_bytes: 124", "limits.max_client_message_bytes"},
        bad_case{"limits:\n  max_queued_bytes: 1023", "limits.max_queued_bytes"},
        bad_case{"limits:\n  max_queued_bytes: 1.5MiB", "limits.max_queued_bytes"},
        bad_case{"history:\n  max_bytes: 65GiB", "history.max_bytes"},
        bad_case{"history:\n  max_bytes: -1", "history.max_bytes"},
        // durations
        bad_case{"http:\n  header_timeout: 99ms", "http.header_timeout"},
        bad_case{"http:\n  header_timeout: 10x", "http.header_timeout"},
        bad_case{"http:\n  idle_timeout: 25h", "http.idle_timeout"},
        bad_case{"ws:\n  ping_interval: 1.5s", "ws.ping_interval"},
        bad_case{"ws:\n  pong_timeout: -1s", "ws.pong_timeout"},
        bad_case{"sse:\n  heartbeat: 50ms", "sse.heartbeat"},
        bad_case{"sse:\n  retry: soon", "sse.retry"},
        bad_case{"poll:\n  timeout: 61m", "poll.timeout"},
        bad_case{"history:\n  ttl: 999ms", "history.ttl"},
        bad_case{"history:\n  ttl: 721h", "history.ttl"},
        bad_case{"publish:\n  idempotency_window: 25h", "publish.idempotency_window"},
        bad_case{"shutdown:\n  drain_timeout: 2h", "shutdown.drain_timeout"},
        // enumerations and strings
        bad_case{"broker: kafka", "broker"}, bad_case{"log:\n  level: loud", "log.level"},
        bad_case{"log:\n  level: INFO", "log.level"}, bad_case{"log:\n  format: xml", "log.format"},
        bad_case{"listen: localhost", "listen"}, bad_case{"listen: \"127.0.0.1:65536\"", "listen"},
        // pattern lists
        bad_case{"ws:\n  client_publish: chat", "ws.client_publish"},
        bad_case{"ws:\n  client_publish: [ok, \"bad pattern\"]", "ws.client_publish[1]"},
        bad_case{"ws:\n  client_publish: [ok, [x]]", "ws.client_publish[1]"},
        // history namespaces, by index and field
        bad_case{"history:\n  namespaces: {pattern: a}", "history.namespaces"},
        bad_case{"history:\n  namespaces: [a]", "history.namespaces[0]"},
        bad_case{"history:\n  namespaces:\n    - {size: 5}", "history.namespaces[0].pattern"},
        bad_case{"history:\n  namespaces:\n    - {pattern: \"a b\"}",
                 "history.namespaces[0].pattern"},
        bad_case{"history:\n  namespaces:\n    - {pattern: a}\n    - {pattern: b, size: -1}",
                 "history.namespaces[1].size"},
        bad_case{"history:\n  namespaces:\n    - {pattern: a, size: 1000001}",
                 "history.namespaces[0].size"},
        bad_case{"history:\n  namespaces:\n    - {pattern: a, ttl: 10ms}",
                 "history.namespaces[0].ttl"},
        bad_case{"history:\n  namespaces:\n    - {pattern: a, ttl: forever}",
                 "history.namespaces[0].ttl"}));

TEST(ConfigParse, InvalidYamlAndNonMapRootThrowWithoutKey) {
    EXPECT_EQ(error_key("a: [1, 2"), "");
    EXPECT_EQ(error_key("- a\n- b"), "");
    EXPECT_EQ(error_key("just a string"), "");
}

TEST(ConfigParse, ErrorMessageNamesKeyToo) {
    try {
        (void)parse_yaml("limits:\n  max_connections: 0");
        FAIL() << "no error";
    } catch (const config_error& e) {
        EXPECT_NE(std::string(e.what()).find("limits.max_connections"), std::string::npos);
    }
}

TEST(ConfigParse, NamespaceFieldsDefaultToTheGlobalHistorySettings) {
    auto s = parse_yaml("history:\n  size: 7\n  ttl: 2m\n  namespaces:\n    - {pattern: \"a*\"}\n");
    ASSERT_EQ(s.history.namespaces.size(), 1u);
    EXPECT_EQ(s.history.namespaces[0].size, 7u);
    EXPECT_EQ(s.history.namespaces[0].ttl, 2min);
}

// A YAML map is unordered: where `size` is written relative to `namespaces` must not change what a
// namespace without its own size inherits.
TEST(ConfigParse, NamespaceDefaultsDoNotDependOnKeyOrder) {
    auto before =
        parse_yaml("history:\n  size: 7\n  ttl: 2m\n  namespaces:\n    - {pattern: \"a*\"}\n");
    auto after =
        parse_yaml("history:\n  namespaces:\n    - {pattern: \"a*\"}\n  size: 7\n  ttl: 2m\n");
    ASSERT_EQ(after.history.namespaces.size(), 1u);
    EXPECT_EQ(after.history.namespaces[0].size, before.history.namespaces[0].size);
    EXPECT_EQ(after.history.namespaces[0].ttl, before.history.namespaces[0].ttl);
}

TEST(ConfigEnv, OverridesApply) {
    settings s;
    apply_env(s, env({{"HERALD_LISTEN", "0.0.0.0:9090"},
                      {"HERALD_WORKERS", "4"},
                      {"HERALD_LOG_LEVEL", "warn"},
                      {"HERALD_LOG_FORMAT", "json"}}));
    EXPECT_EQ(s.listen_host, "0.0.0.0");
    EXPECT_EQ(s.listen_port, 9090);
    EXPECT_EQ(s.workers, 4u);
    EXPECT_EQ(s.log.level, "warn");
    EXPECT_EQ(s.log.format, "json");
}

TEST(ConfigEnv, NothingSetChangesNothing) {
    settings s;
    apply_env(s, env({}));
    expect_defaults(s);
}

TEST(ConfigEnv, GarbageNamesTheVariable) {
    for (std::string bad : {"", "abc", "4x", "4 ", "65", "-1", "99999999999999999999", "1e2"}) {
        settings s;
        try {
            apply_env(s, env({{"HERALD_WORKERS", bad}}));
            ADD_FAILURE() << "accepted HERALD_WORKERS='" << bad << "'";
        } catch (const config_error& e) {
            EXPECT_EQ(e.key(), "HERALD_WORKERS") << bad;
        }
        EXPECT_EQ(s.workers, 0u);
    }
    auto key_of = [](std::map<std::string, std::string> vars) -> std::string {
        settings s;
        try {
            apply_env(s, env(std::move(vars)));
        } catch (const config_error& e) {
            return e.key();
        }
        return "<no error>";
    };
    EXPECT_EQ(key_of({{"HERALD_LISTEN", "nowhere"}}), "HERALD_LISTEN");
    EXPECT_EQ(key_of({{"HERALD_LISTEN", "127.0.0.1:70000"}}), "HERALD_LISTEN");
    EXPECT_EQ(key_of({{"HERALD_LOG_LEVEL", "verbose"}}), "HERALD_LOG_LEVEL");
    EXPECT_EQ(key_of({{"HERALD_LOG_FORMAT", "yaml"}}), "HERALD_LOG_FORMAT");
}

TEST(ConfigListen, AcceptedForms) {
    settings s;
    set_listen(s, "127.0.0.1:0");
    EXPECT_EQ(s.listen_host, "127.0.0.1");
    EXPECT_EQ(s.listen_port, 0);
    set_listen(s, "[::1]:80");
    EXPECT_EQ(s.listen_host, "::1");
    EXPECT_EQ(s.listen_port, 80);
    set_listen(s, "0.0.0.0:65535");
    EXPECT_EQ(s.listen_host, "0.0.0.0");
    EXPECT_EQ(s.listen_port, 65535);
    set_listen(s, "[::]:8080");
    EXPECT_EQ(s.listen_host, "::");
    EXPECT_EQ(s.listen_port, 8080);
}

TEST(ConfigListen, RejectedFormsKeepThePreviousValue) {
    for (std::string bad :
         {"127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
          "127.0.0.1:80x", "[::1]:", "127.0.0.1:99999999999999999999",
          // start-up binds an address, so a name is refused here, not at bind time
          "localhost:8097", "example.com:80", "[localhost]:80", "127.0.0.256:80"}) {
        settings s;
        try {
            set_listen(s, bad, "my.key");
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const config_error& e) {
            EXPECT_EQ(e.key(), "my.key");
        }
        EXPECT_EQ(s.listen_host, "127.0.0.1") << bad;
        EXPECT_EQ(s.listen_port, 8080) << bad;
    }
}

TEST(ConfigSetters, WorkersLevelFormat) {
    settings s;
    set_workers(s, 64);
    EXPECT_EQ(s.workers, 64u);
    EXPECT_THROW(set_workers(s, 65), config_error);
    EXPECT_THROW(set_workers(s, -1), config_error);
    for (auto l : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
        set_log_level(s, l);
        EXPECT_EQ(s.log.level, l);
    }
    EXPECT_THROW(set_log_level(s, "warning"), config_error);
    EXPECT_THROW(set_log_format(s, "JSON"), config_error);
}

TEST(ConfigRedis, SentinelShardsAuthAndReplicasAck) {
    auto c = parse_yaml(R"(
redis:
  shards:
    - "10.0.0.4:6379"
    - {sentinels: ["10.0.0.1:26379", "10.0.0.2:26379"], master: "herald-a"}
  username: app
  password: secret
  replicas_ack: 1
  replicas_ack_timeout: 200ms
)");
    ASSERT_EQ(c.redis.shards.size(), 2u);
    EXPECT_EQ(c.redis.shards[1], "herald-a");
    EXPECT_TRUE(c.redis.sentinels[0].empty());
    EXPECT_EQ(c.redis.sentinels[1].size(), 2u);
    EXPECT_EQ(c.redis.username, "app");
    EXPECT_EQ(c.redis.password, "secret");
    EXPECT_EQ(c.redis.replicas_ack, 1u);
    EXPECT_EQ(c.redis.replicas_ack_timeout, 200ms);
}

TEST(ConfigRedis, ClusterSeedsExcludeShards) {
    auto c = parse_yaml("redis: {cluster: [\"10.0.0.5:7000\", \"10.0.0.6:7000\"]}");
    ASSERT_EQ(c.redis.cluster.size(), 2u);
    EXPECT_EQ(c.redis.cluster[1], "10.0.0.6:7000");
    EXPECT_TRUE(parse_yaml("redis: {}").redis.cluster.empty());
    EXPECT_TRUE(parse_yaml("redis: {cluster: []}").redis.cluster.empty());  // the default
    EXPECT_EQ(error_key("redis: {cluster: 1}"), "redis.cluster");
    EXPECT_EQ(error_key("redis: {cluster: [\"h\"]}"), "redis.cluster[0]");
    EXPECT_EQ(error_key("redis: {cluster: [\"h:1\"], shards: [\"h:2\"]}"), "redis.cluster");
    EXPECT_EQ(error_key("redis: {shards: [\"h:2\"], cluster: [\"h:1\"]}"), "redis.cluster");
}

TEST(ConfigRedis, BadSentinelShardsAndAckNameTheKey) {
    EXPECT_EQ(error_key("redis: {shards: [{master: a}]}"), "redis.shards[0].sentinels");
    EXPECT_EQ(error_key("redis: {shards: [{sentinels: [\"h:1\"]}]}"), "redis.shards[0].master");
    EXPECT_EQ(error_key("redis: {shards: [{sentinels: [\"h\"], master: a}]}"),
              "redis.shards[0].sentinels[0]");
    EXPECT_EQ(error_key("redis: {shards: [{sentinels: [\"h:1\"], master: a, x: 1}]}"),
              "redis.shards[0].x");
    EXPECT_EQ(error_key("redis: {shards: [{sentinels: [\"h:1\"], master: a}, "
                        "{sentinels: [\"h:2\"], master: a}]}"),
              "redis.shards[1]");
    EXPECT_EQ(error_key("redis: {replicas_ack: 17}"), "redis.replicas_ack");
    EXPECT_EQ(error_key("redis: {replicas_ack: 1, replicas_ack_timeout: 2s}"),
              "redis.replicas_ack_timeout");
    EXPECT_EQ(error_key("redis: {password_env: HERALD_TEST_SURELY_UNSET_VARIABLE}"),
              "redis.password_env");
}

TEST(ConfigParse, DeliveryAndCompressionNamespaces) {
    auto s = parse_yaml(
        "delivery:\n  namespaces:\n    - {pattern: \"q:*\", slow_consumer: conflate, keep: 20, "
        "key: symbol}\n    - {pattern: \"d:*\", slow_consumer: drop_oldest, delivery_interval: "
        "100ms}\n"
        "compression:\n  namespaces: [{pattern: \"raw:*\", enabled: false}]\n");
    ASSERT_EQ(s.delivery.namespaces.size(), 2u);
    EXPECT_EQ(s.delivery.namespaces[0].slow_consumer, slow_policy::conflate);
    EXPECT_EQ(s.delivery.namespaces[0].keep, 20u);
    EXPECT_EQ(s.delivery.namespaces[0].key, "symbol");
    EXPECT_EQ(s.delivery.namespaces[1].slow_consumer, slow_policy::drop_oldest);
    EXPECT_EQ(s.delivery.namespaces[1].keep, 100u);
    EXPECT_EQ(s.delivery.namespaces[0].delivery_interval, milliseconds(0));
    EXPECT_EQ(s.delivery.namespaces[1].delivery_interval, milliseconds(100));
    ASSERT_EQ(s.compression.namespaces.size(), 1u);
    EXPECT_FALSE(s.compression.namespaces[0].enabled);
    const auto key_of = [](const std::string& yaml) {
        try {
            (void)parse_yaml(yaml);
        } catch (const config_error& e) {
            return e.key();
        }
        return std::string("(accepted)");
    };
    EXPECT_EQ(key_of("delivery:\n  namespaces: [{pattern: a, delivery_interval: 5ms}]\n"),
              "delivery.namespaces[0].delivery_interval");
    EXPECT_EQ(key_of("delivery:\n  namespaces: [{pattern: a, delivery_interval: 11s}]\n"),
              "delivery.namespaces[0].delivery_interval");
    EXPECT_EQ(key_of("delivery:\n  namespaces: [{pattern: a, slow_consumer: later}]\n"),
              "delivery.namespaces[0].slow_consumer");
    EXPECT_EQ(key_of("delivery:\n  namespaces: [{slow_consumer: conflate}]\n"),
              "delivery.namespaces[0].pattern");
    EXPECT_EQ(key_of("delivery:\n  namespaces: [{pattern: a, keep: 0}]\n"),
              "delivery.namespaces[0].keep");
    EXPECT_EQ(key_of("compression:\n  namespaces: [{pattern: a, on: true}]\n"),
              "compression.namespaces[0].on");
}
