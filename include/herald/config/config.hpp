#pragma once
// Herald's settings: one YAML file, optionally overridden by flags and HERALD_* variables.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace herald::config {

using std::chrono::milliseconds;

struct history_rule {
    std::string pattern;  // glob with '*', matched against the topic name
    std::size_t size;
    milliseconds ttl;
};

struct settings {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8080;
    unsigned workers = 0;  // 0: number of cores, resolved by effective_workers()
    std::string broker = "memory";

    struct {
        std::string level = "info";
        std::string format = "text";
        // Clients refused by a limit: the first refusal per address and reason is logged, the
        // rest are counted and summarised once per interval.
        milliseconds rejection_interval{60'000};
    } log;

    struct {
        milliseconds header_timeout{10'000};
        milliseconds idle_timeout{60'000};
        std::size_t max_header_bytes = 8 * 1024;
    } http;

    struct {
        std::size_t max_connections = 10'000;
        std::size_t max_message_bytes = 64 * 1024;
        std::size_t max_client_message_bytes = 64 * 1024;
        std::size_t max_queued_bytes = 1024 * 1024;
        std::size_t max_topics_per_connection = 64;
        // Rate limits; 0 turns one off. Per client address unless said otherwise.
        std::size_t connections_per_ip = 1000;
        double new_connections_per_ip_per_s = 100;
        double ws_messages_per_s = 100;          // per connection
        double publishes_per_key_per_s = 10000;  // per API key (per address when open)
    } limits;

    struct jwt_key {
        std::string alg;
        std::string secret;
        std::string public_key;
        std::string public_key_file;
        std::string kid;
    };
    struct auth_namespace {
        std::string pattern;
        bool anonymous_subscribe = false;
    };
    struct {
        struct {
            std::vector<jwt_key> keys;
            std::string audience;
            std::string issuer;
            milliseconds leeway{30'000};
            bool require_exp = true;
        } jwt;
        std::string token_query_param = "token";
        std::string token_cookie;
        bool default_anonymous_subscribe = true;
        std::vector<auth_namespace> namespaces;
        std::vector<std::string> publish_keys;
        std::string publish_keys_env;
        bool allow_unauthenticated_publish = false;
    } auth;

    struct {
        std::vector<std::string> allow{"*"};
    } origins;

    std::vector<std::string> trusted_proxies;

    struct quota {
        std::string pattern;
        std::size_t max_topics = 0;
        std::size_t max_subscribers_per_topic = 0;
    };
    std::vector<quota> quotas;

    struct {
        milliseconds ping_interval{25'000};
        milliseconds pong_timeout{10'000};
        std::vector<std::string> client_publish;
    } ws;

    struct {
        milliseconds heartbeat{15'000};
        milliseconds retry{2'000};
    } sse;

    struct {
        milliseconds timeout{25'000};
    } poll;

    struct {
        std::size_t size = 100;
        milliseconds ttl{5 * 60'000};
        std::size_t max_bytes = 64ull * 1024 * 1024;
        std::size_t max_recovery = 300;
        std::vector<history_rule> namespaces;
    } history;

    struct {
        milliseconds idempotency_window{5 * 60'000};
    } publish;

    struct {
        milliseconds drain_timeout{10'000};
        // Streams are told to go at times spread evenly over this window (0: all at once), so
        // that a fleet restart does not send every client to the other instances in one burst.
        milliseconds drain_spread{0};
    } shutdown;

    // Security events as JSON lines (auth/audit.hpp).
    struct {
        std::string sink;                 // "" off, "stderr", or a file path (appended to)
        std::size_t sample_one_in = 100;  // rate-limit and quota refusals: 1 in N (0: none)
        std::string pseudonym_key;        // HMAC key for identifiers; "": random per start
    } audit;

    // In-process TLS: with both set, the listener speaks HTTPS/WSS only.
    struct {
        std::string cert;  // PEM certificate chain (leaf first)
        std::string key;   // PEM private key
        std::string min_version = "1.2";
    } tls;

    // Used when broker is "redis".
    struct {
        std::vector<std::string> shards{"127.0.0.1:6379"};  // host:port, topics spread by HRW hash
        std::string key_prefix = "herald:";
        milliseconds connect_timeout{2'000};
        milliseconds command_timeout{2'000};  // unanswered this long: the link is down
        milliseconds ping_interval{1'000};    // an idle link PINGs this often
        milliseconds reconnect_max_backoff{5'000};
    } redis;

    [[nodiscard]] unsigned effective_workers() const;
};

// Raised at start-up only; `key()` names the offending key ("limits.max_connections").
class config_error : public std::runtime_error {
public:
    config_error(std::string key, const std::string& what)
        : std::runtime_error(key.empty() ? what : key + ": " + what), key_(std::move(key)) {}
    [[nodiscard]] const std::string& key() const noexcept { return key_; }

private:
    std::string key_;
};

[[nodiscard]] settings parse_yaml(const std::string& text);
[[nodiscard]] settings load_file(const std::string& path);

// Overrides from HERALD_LISTEN, HERALD_WORKERS, HERALD_LOG_LEVEL, HERALD_LOG_FORMAT.
using env_lookup = std::function<std::optional<std::string>(const char*)>;
void apply_env(settings& s, const env_lookup& getenv);

// Setters shared by the YAML, the environment and the command line; they throw config_error.
void set_listen(settings& s, std::string_view value, const std::string& key = "listen");
void set_workers(settings& s, long long value, const std::string& key = "workers");
void set_log_level(settings& s, std::string_view value, const std::string& key = "log.level");
void set_log_format(settings& s, std::string_view value, const std::string& key = "log.format");

// "250ms", "15s", "5m", "1h", "1d" or a plain number of seconds.
[[nodiscard]] std::optional<milliseconds> parse_duration(std::string_view text);
// "512", "64KiB", "1MiB", "2GiB" (also KB/MB/GB as powers of 1000).
[[nodiscard]] std::optional<std::size_t> parse_size(std::string_view text);
// The largest unit that is exact, in the syntax the parsers above read back: "1d", "250ms",
// "64KiB", "1000".
[[nodiscard]] std::string format_duration(milliseconds d);
[[nodiscard]] std::string format_size(std::size_t bytes);

// One key of the configuration as `herald --print-defaults` shows it: the value `s` holds for it,
// written as YAML, and its accepted range in human units ("100ms..1d"; empty when it has none).
struct key_doc {
    std::string key;  // dotted: "ws.ping_interval"
    std::string value;
    std::string range;
};
// Every key the YAML schema accepts, in the order of config/herald.yaml.
[[nodiscard]] std::vector<key_doc> describe(const settings& s);
// Every key with its compiled default, as a YAML file herald reads back; ranges in comments.
[[nodiscard]] std::string defaults_yaml();
// The keys the YAML schema accepts (sections excluded), sorted.
[[nodiscard]] std::vector<std::string> schema_keys();

// `herald genconfig`: a commented production config around the given secrets.
[[nodiscard]] std::string production_config(const std::string& publish_key,
                                            const std::string& jwt_secret,
                                            const std::string& pseudonym_key);

}  // namespace herald::config
