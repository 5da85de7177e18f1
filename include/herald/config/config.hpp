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

// permessage-deflate for the topics matching `pattern` (see settings::compression).
struct compression_rule {
    std::string pattern;
    bool enabled = true;
};

// What a WebSocket or SSE subscriber that falls behind gets, and how often it is written to, for
// the topics matching `pattern`.
enum class slow_policy : std::uint8_t { disconnect, drop_oldest, conflate };
struct delivery_rule {
    std::string pattern;
    slow_policy slow_consumer = slow_policy::disconnect;
    std::size_t keep = 100;   // messages held per subscription while the connection is backlogged
    std::string key = "key";  // conflate: the top-level JSON field whose value is the key
    // Messages of a matching topic wait per connection for the next tick of this cadence (at most
    // this long) and leave together (0: off).
    milliseconds delivery_interval{0};
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
        // Traced publishes (`traceparent`): one in N is logged at info, the rest at debug; 0: none.
        std::size_t trace_sample = 0;
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
        // A client may ask for its own period (/ws?heartbeat=60s) within these bounds.
        milliseconds ping_interval_min{5'000};
        milliseconds ping_interval_max{600'000};
        milliseconds pong_timeout{10'000};
        std::vector<std::string> client_publish;
    } ws;

    // permessage-deflate (RFC 7692) on WebSocket: a message of at least min_bytes is compressed
    // once and sent compressed to every subscriber that negotiated it.
    struct {
        bool enabled = true;
        std::size_t min_bytes = 512;
        int level = 6;
        std::vector<compression_rule> namespaces;  // first match wins; else `enabled`
    } compression;

    struct {
        std::vector<delivery_rule> namespaces;  // first match wins; else disconnect
    } delivery;

    struct {
        milliseconds heartbeat{15'000};
        // A client may ask for its own period (/sse?heartbeat=60s) within these bounds.
        milliseconds heartbeat_min{5'000};
        milliseconds heartbeat_max{600'000};
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

    // Who is subscribed to a topic (docs/integration.md, "Presence"); off unless patterns match.
    struct {
        std::vector<std::string> patterns;     // topics with presence
        std::vector<std::string> client_read;  // topics whose subscribers may read it (WS op)
        milliseconds ttl{60'000};              // broker redis: a dead instance's entries vanish
        std::size_t max_clients = 1000;        // over it, a read answers counts only
        std::size_t max_info_bytes = 1024;     // a larger `info` claim is left out (null)
    } presence;

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

    // The admin page (GET /admin, docs/operations.md): off unless enabled; its login session
    // (an HMAC-signed cookie) lasts session_ttl.
    struct {
        bool enabled = false;
        milliseconds session_ttl{12 * 3'600'000};
    } admin;

    // In-process TLS: with both set, the listener speaks HTTPS/WSS only.
    struct {
        std::string cert;  // PEM certificate chain (leaf first)
        std::string key;   // PEM private key
        std::string min_version = "1.2";
    } tls;

    // Backend hooks (docs/integration.md): herald asks the application's backend before it
    // admits a stream, a subscription or a publish. An empty url turns a hook off.
    struct hook {
        std::string url;  // http://host[:port]/path
        milliseconds timeout{2'000};
        std::vector<std::string> headers_to_forward;  // request headers passed on (connect)
        bool allow_on_error = false;                  // on_error: allow | deny
    };
    struct {
        hook connect;
        hook subscribe;
        hook publish;
        std::size_t max_in_flight = 64;  // per worker and backend: calls at once
        std::size_t max_pending = 256;   // per worker and backend: calls waiting beyond those
        std::size_t max_response_bytes = 64 * 1024;
        std::size_t breaker_failures = 5;  // failures in a row that open the breaker
        milliseconds breaker_cooldown{5'000};
    } hooks;

    // Webhooks: events POSTed to the application, signed, batched, retried (at least once).
    struct webhook {
        std::string url;
        std::vector<std::string> events;    // disconnect, publish, occupied, vacated, join, leave
        std::vector<std::string> patterns;  // topics of the events sent; empty: every topic
        std::string secret;                 // HMAC-SHA256 key of X-Herald-Signature
        std::size_t batch_size = 100;
        milliseconds batch_interval{200};
        milliseconds timeout{5'000};
        std::size_t max_queue = 100'000;  // events waiting, per instance (split over workers)
        milliseconds max_backoff{30'000};
    };
    std::vector<webhook> webhooks;

    // Used when broker is "redis".
    struct {
        std::vector<std::string> shards{"127.0.0.1:6379"};  // host:port, topics spread by HRW hash
        // Parallel to shards: empty for a server; for a Sentinel-managed shard its sentinels
        // (host:port), and shards[i] holds the master's name (also the shard's HRW name).
        std::vector<std::vector<std::string>> sentinels{{}};
        // Redis Cluster seed nodes (host:port); non-empty replaces `shards` (the slot map decides
        // where a topic lives).
        std::vector<std::string> cluster;
        std::string username;       // Redis 6 ACL user (AUTH username password)
        std::string password;       // or from the variable named by password_env
        unsigned replicas_ack = 0;  // WAIT for this many replicas before answering 200
        milliseconds replicas_ack_timeout{500};
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
