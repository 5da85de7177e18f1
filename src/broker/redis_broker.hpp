#pragma once
// The Redis broker: offsets, epochs and history live in Redis, so every herald instance on the
// same Redis shards sees one order per topic and a client may resume on any instance.
//
//   publish   worker `from` runs the publish script on its own command link to the topic's shard;
//             Redis assigns the offset, appends to history and PUBLISHes. Nothing is delivered
//             locally: every instance, the publishing one included, delivers only what comes back
//             from pub/sub, so nothing arrives twice.
//   subscribe the topic's owner worker SUBSCRIBEs on its pub/sub link when the first subscriber
//             arrives, and only after Redis confirmed reads epoch, top and the replay range, so no
//             message falls between the snapshot and the live stream.
//   relay     the owner remembers the last offset it relayed per topic; a message that is not the
//             next one (a pub/sub link that was down, a Redis restarted empty) makes it read the
//             gap from history and dispatch it in order first, or dispatch a reset when history no
//             longer holds it.
//   control   revocations are PUBLISHed on `<prefix>control`, on the shard rendezvous hashing
//             picks for that name; worker 0 of every instance subscribes to it (again after each
//             reconnect), skips what its own instance sent, and hands the rest to the handler.
//
// Per worker and shard: one command link (publishes pipeline on it) and one pub/sub link. All
// per-worker state is touched only on that worker's thread.
//
// Redis Cluster (redis.cluster, redis_cluster_links.cpp): a shard is one cluster master (and its
// replicas: a failover keeps the shard, moves its links); worker 0 reads the slot map and posts
// it to every worker, which routes each topic by the slot of its {hash tag}. Pub/sub is sharded
// (SSUBSCRIBE on redis_sharded_link, SPUBLISH in the scripts); a topic whose slot moved is
// subscribed again on its new master and its gap filled from history, as after a reconnect.
#include "herald/broker/broker.hpp"
#include "history.hpp"
#include "redis_asio.hpp"
#include "redis_cluster.hpp"
#include "redis_codec.hpp"
#include "redis_sentinel.hpp"
#include "redis_sharded_link.hpp"
#include "redis_presence.hpp"
#include "herald/config/config.hpp"

#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace herald::broker {

class redis_broker final : public broker {
public:
    redis_broker(hub::hub& h, const config::settings& cfg,
                 const std::vector<asio::io_context*>& contexts);
    ~redis_broker() override;

    void publish(unsigned from, hub::publish_request&& req, publish_handler&& done) override;
    void resolve(unsigned owner, const std::string& topic,
                 const std::optional<hub::stream_pos>& since, subscribe_handler done) override;
    void history(unsigned from, const std::string& topic, std::optional<hub::stream_pos> since,
                 std::size_t limit, history_handler done) override;
    void on_tick(unsigned worker, time_point now) override;
    void on_topic_idle(unsigned owner, const std::string& topic) override;
    void broadcast_disconnect(unsigned from, std::string user, broadcast_handler done) override;
    [[nodiscard]] bool ready() const noexcept override;
    [[nodiscard]] std::string not_ready_reason() const override;
    [[nodiscard]] std::size_t history_bytes() const noexcept override { return 0; }

    // For metrics; any thread.
    struct stats {
        std::uint64_t links_down = 0;
        std::uint64_t reconnects = 0;
        std::uint64_t publishes = 0;
        std::uint64_t publish_failures = 0;
        std::uint64_t publish_unknown = 0;
        std::uint64_t command_timeouts = 0;
        std::uint64_t publish_latency_us_sum = 0;
        std::uint64_t gaps_filled = 0;
        std::uint64_t gap_messages = 0;
        std::uint64_t resets_sent = 0;
        std::uint64_t control_published = 0;
        std::uint64_t control_received = 0;
        std::uint64_t control_failures = 0;
    };
    [[nodiscard]] stats snapshot() const noexcept;
    [[nodiscard]] std::vector<metrics::registry::gauge> metrics() const override;

private:
    struct pending_resolve {
        std::optional<hub::stream_pos> since;
        subscribe_handler done;
    };
    struct topic_state {
        std::size_t shard = 0;
        std::string channel;
        bool sub_sent = false;    // SUBSCRIBE sent on the current pub/sub link
        bool confirmed = false;   // ... and confirmed: live messages flow
        bool unsub_sent = false;  // UNSUBSCRIBE in flight
        bool known = false;       // epoch/last below are set
        std::string epoch;
        std::uint64_t last = 0;                // newest offset relayed to the hub
        bool fetching = false;                 // a gap read is in flight
        bool need_catch_up = false;            // a gap read must run when the links allow
        std::uint64_t gen = 0;                 // bumped on UNSUBSCRIBE: older gap reads are void
        std::vector<hub::message_ptr> held;    // live messages waiting behind a gap read
        std::vector<pending_resolve> waiting;  // resolves waiting for the SUBSCRIBE confirmation
    };
    struct shard_links {
        std::unique_ptr<redis_link> cmd;
        std::unique_ptr<redis_link> sub;           // shards and Sentinel: classic pub/sub
        std::unique_ptr<redis_sharded_link> ssub;  // Redis Cluster: sharded pub/sub
        [[nodiscard]] bool sub_up() const noexcept { return ssub ? ssub->up() : sub->up(); }
        bool subscribe(const std::vector<std::string>& c) {
            return ssub ? ssub->subscribe(c) : sub->subscribe(c);
        }
        bool unsubscribe(const std::vector<std::string>& c) {
            return ssub ? ssub->unsubscribe(c) : sub->unsubscribe(c);
        }
        void start() {
            cmd->start();
            ssub ? ssub->start() : sub->start();
        }
        void retry_now() {
            cmd->retry_now();
            ssub ? ssub->retry_now() : sub->retry_now();
        }
        void set_endpoint(const redis_endpoint& ep) {
            cmd->set_endpoint(ep);
            ssub ? ssub->set_endpoint(ep) : sub->set_endpoint(ep);
        }
    };
    // Redis Cluster: slot -> shard, k_no_shard where no master serves the slot.
    static constexpr std::uint8_t k_unserved = 0xff;
    using slot_table = std::array<std::uint8_t, redis::k_slots>;
    struct worker_state {
        std::vector<shard_links> shards;
        std::unordered_map<std::string, topic_state> topics;  // topics this worker owns
        std::vector<std::string> idle;                        // unsubscribe candidates
        bool flush_posted = false;
        std::mt19937_64 rng;
        unsigned ticks = 0;
        std::shared_ptr<const slot_table> slots;  // Redis Cluster: this worker's copy of the map
        std::size_t control_shard = 0;            // where the control channel lives
        bool control_sent = false;  // cluster, control worker: SSUBSCRIBEd on control_shard
    };
    static constexpr std::size_t k_no_shard = std::numeric_limits<std::size_t>::max();

    using reply_fn = redis_link::reply_fn;

    // Timeouts, back-off and credentials from redis.* for a link to a data node.
    static void link_options(const config::settings& cfg, redis_link::options& opt);
    [[nodiscard]] std::int64_t meta_ttl_ms(const history_policy& p) const;
    [[nodiscard]] std::string new_epoch(worker_state& ws);
    [[nodiscard]] static hub::message_ptr to_message(const std::string& topic, redis::entry e);

    enum class script : std::uint8_t { publish, read, confirm };
    // Runs a script by SHA; on NOSCRIPT (a restarted or flushed Redis) runs it by body once.
    // Redis Cluster: a MOVED reply is followed to the shard named (and the map refreshed), an
    // ASK by ASKING and the command on the node named, at most k_max_redirects times; then the
    // error reaches `done`. args[replid_at] (when in range) is set to the link's replication id
    // on every send. `where`, when given, follows the shard the script finally ran on.
    void eval(unsigned w, std::size_t shard, script which, std::vector<std::string> args,
              std::size_t numkeys, reply_fn done, std::size_t replid_at = k_no_shard,
              std::shared_ptr<std::size_t> where = nullptr);
    [[nodiscard]] std::string replids(unsigned w, std::size_t shard) const;
    struct eval_call;
    void send_eval(const std::shared_ptr<eval_call>& c);
    void on_eval_reply(const std::shared_ptr<eval_call>& c, redisReply* r, no_reply why);
    // replicas_ack: WAIT for the replicas, then PUBLISH the entry (confirm_script); `done` gets
    // the publish's final status.
    using shared_publish_handler = std::shared_ptr<publish_handler>;
    void confirm(unsigned from, std::size_t shard, std::string topic, redis::publish_reply p,
                 time_point t0, shared_publish_handler done);
    void finish_publish(std::size_t shard, publish_result& res, redis::publish_reply& p,
                        time_point t0);
    // The read script: epoch (created when missing), top, first, and the entries
    // history_window() selects (`newest`: the newest `limit`; else the oldest after `after`).
    void read(unsigned w, std::size_t shard, const std::string& topic, std::uint64_t after,
              std::size_t limit, bool newest, reply_fn done);

    // check_recovery() on a read of what follows `pos`.
    [[nodiscard]] static recovery recover_from(const redis::read_reply& r,
                                               const hub::stream_pos& pos,
                                               std::size_t max_messages);

    topic_state& state_of(unsigned w, const std::string& topic);
    void ensure_subscribed(unsigned w, topic_state& st);
    void drain_waiting(unsigned w, const std::string& topic, topic_state& st);
    void answer_resolve(unsigned w, const std::string& topic, pending_resolve p);
    void on_push(unsigned w, std::size_t shard, redisReply* reply);
    void on_control(unsigned w, const redis::push& p);
    void relay(unsigned w, const std::string& topic, topic_state& st, hub::message_ptr m);
    void catch_up(unsigned w, const std::string& topic, topic_state& st);
    void send_reset(unsigned w, const std::string& topic, topic_state& st, const std::string& epoch,
                    std::uint64_t top, const char* reason);
    void flush_idle(unsigned w);
    void on_sub_up(unsigned w, std::size_t shard);
    void on_sub_down(unsigned w, std::size_t shard);
    void on_cmd_up(unsigned w, std::size_t shard);
    void link_changed(unsigned w, std::size_t shard, bool sub, bool up);
    void on_link_up(unsigned w, std::size_t shard, bool sub, std::uint64_t reconnects);
    void on_link_down(unsigned w, std::size_t shard, bool sub, bool timed_out);
    // The topic's (or channel's) shard as worker `w` sees it; k_no_shard in a cluster whose map
    // has no master for its slot yet.
    [[nodiscard]] std::size_t shard_of(unsigned w, std::string_view topic) const;
    [[nodiscard]] std::size_t shard_of_slot(unsigned w, std::uint16_t slot) const;
    [[nodiscard]] std::string channel_of(std::string_view topic) const;
    // Redis Cluster (redis_cluster_links.cpp).
    void start_cluster(const std::vector<asio::io_context*>& contexts);
    void ask_cluster();  // from any worker: refresh the slot map now
    void tick_cluster(unsigned w);
    void refresh_cluster();
    void on_cluster_slots(std::vector<redis::cluster_master> masters);
    void on_slot_map(unsigned w, std::shared_ptr<const slot_table> map);
    void move_topic(unsigned w, const std::string& topic, std::size_t to);
    void on_refused(unsigned w, std::size_t shard, const std::string& channel, redisReply* err);
    [[nodiscard]] std::size_t shard_at(unsigned w, const redis_endpoint& ep) const;
    [[nodiscard]] std::string shard_label(std::size_t shard) const;
    // Sentinel shards (redis_sentinel_links.cpp): the watches, and moving every worker's links.
    void start_sentinels(const std::vector<asio::io_context*>& contexts);
    void on_master(std::size_t shard, const redis_endpoint& ep);
    void ask_sentinels(std::size_t shard);  // from any worker: the shard's watch asks now
    void tick_sentinels(unsigned w);
    [[nodiscard]] std::string shard_down_reason(std::size_t shard) const;
    void observe_latency(std::size_t shard, clock::duration d);
    [[nodiscard]] metrics::registry::gauge latency_histogram() const;
    struct shard_stats;
    // One series per shard, labelled shard="<address or master name>".
    template <class F>
    [[nodiscard]] metrics::registry::gauge per_shard(const char* name, const char* help,
                                                     const char* type, F value) const;

    hub::hub& hub_;
    const config::settings& cfg_;
    const bool cluster_;  // redis.cluster: shard_names_ holds placeholders, labels come from nodes_
    std::vector<std::string> shard_names_;
    std::array<std::string, 3> script_body_;  // publish, read, confirm (sharded() in a cluster)
    std::string sha_publish_;
    std::string sha_read_;
    std::string sha_confirm_;
    std::string instance_id_;  // random per process: tells this instance's control messages apart
    std::string control_channel_;
    static constexpr unsigned k_control_worker = 0;  // the worker following the control channel
    std::size_t control_shard_ = 0;
    std::vector<std::unique_ptr<worker_state>> workers_;
    std::unique_ptr<redis_presence> presence_;  // the hub's presence backend (redis_presence.hpp)

    std::atomic<std::int64_t> links_down_{0};
    // Per shard, for /readyz's message and the per-shard metrics; any thread.
    struct shard_stats {
        std::atomic<std::int64_t> cmd_down{0};
        std::atomic<std::int64_t> sub_down{0};
        std::atomic<bool> seen{false};          // a link ever came up
        std::atomic<bool> sentinel{false};      // a Sentinel-managed shard
        std::atomic<bool> master_known{false};  // ... whose master a sentinel named
        std::atomic<std::int64_t> sentinels_up{0};
        std::atomic<std::uint64_t> failovers{0};   // master switches seen from the sentinels
        std::atomic<std::uint64_t> not_master{0};  // connections refused: ROLE or READONLY
        std::atomic<std::uint64_t> gaps_filled{0};
        std::atomic<std::uint64_t> resets{0};
        std::atomic<std::uint64_t> publishes{0};
        std::atomic<std::uint64_t> latency_us{0};
        std::atomic<std::uint64_t> ack_failures{0};  // WAIT answered fewer replicas in time
        std::atomic<bool> assigned{true};            // a cluster shard: a master was mapped to it
        std::atomic<std::uint64_t> moved{0};         // MOVED redirections followed
        std::atomic<std::uint64_t> asked{0};         // ASK redirections followed
    };
    // Redis Cluster, worker 0 only: the link reading CLUSTER SLOTS, the nodes it may ask, and
    // which master (by node ids, which survive a failover) each shard holds.
    struct cluster_shard {
        bool assigned = false;
        redis_endpoint master;
        std::vector<std::string> nodes;
    };
    std::unique_ptr<redis_link> cluster_link_;
    std::vector<redis_endpoint> cluster_seeds_;
    std::vector<redis_endpoint> cluster_known_;  // seeds and every node of the last map
    std::size_t cluster_next_ = 0;
    bool cluster_asking_ = false;
    std::vector<cluster_shard> cluster_shards_;
    std::atomic<bool> cluster_mapped_{false};
    std::atomic<std::int64_t> slots_unserved_{0};
    std::atomic<std::uint64_t> map_refreshes_{0};
    mutable std::mutex labels_mu_;     // metrics and /readyz read labels from other threads
    std::vector<std::string> labels_;  // per cluster shard: its master's address
    std::unique_ptr<shard_stats[]> shard_stats_;
    // Per worker and shard: [0] command link up, [1] pub/sub link up (index (w * shards + s) * 2).
    std::unique_ptr<std::atomic<bool>[]> link_up_;
    // Per shard: its sentinel watch (null for a plain server), run on worker home_of(shard).
    std::vector<std::unique_ptr<sentinel_watch>> watches_;
    [[nodiscard]] unsigned home_of(std::size_t shard) const noexcept {
        return static_cast<unsigned>(shard % workers_.size());
    }
    std::atomic<std::uint64_t> publishes_{0};
    std::atomic<std::uint64_t> publish_failures_{0};
    std::atomic<std::uint64_t> publish_unknown_{0};
    std::atomic<std::uint64_t> command_timeouts_{0};
    std::atomic<std::uint64_t> publish_latency_us_{0};
    // herald_redis_publish_latency_seconds: upper bounds (seconds), and counts per bucket
    // (not cumulative; the last is +Inf).
    static constexpr std::array<double, 12> k_latency_bounds{
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    std::array<std::atomic<std::uint64_t>, k_latency_bounds.size() + 1> latency_buckets_{};
    std::atomic<std::uint64_t> gaps_filled_{0};
    std::atomic<std::uint64_t> gap_messages_{0};
    std::atomic<std::uint64_t> resets_sent_{0};
    std::atomic<std::uint64_t> reconnects_{0};
    std::atomic<std::uint64_t> control_published_{0};
    std::atomic<std::uint64_t> control_received_{0};
    std::atomic<std::uint64_t> control_failures_{0};
};

}  // namespace herald::broker
