#pragma once
// The hub routes messages from a topic's owner worker to the workers holding its subscribers.
//
// Each worker owns one shard. A shard is touched only by its worker's thread; shards talk to each
// other only by posting to each other's io_context, so no mutex is taken per message.
//
//   owner side:  routes_  topic -> how many subscriptions each worker holds on it
//   local side:  topics_  topic -> this worker's subscriptions (non-owning pointers)
#include "herald/common/net.hpp"
#include "herald/common/short_text.hpp"
#include "herald/hub/message.hpp"
#include "herald/hub/presence.hpp"
#include "herald/hub/task_pool.hpp"

#include <boost/unordered/unordered_flat_map.hpp>

#include <atomic>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald::hub {

class subscriber;

// The answer to a subscribe, built on the topic's owner.
struct subscribe_result {
    std::string epoch;
    std::uint64_t top = 0;  // offset of the newest message
    bool resume_requested = false;
    bool recovered = false;
    std::string reason;               // why recovery failed
    std::vector<message_ptr> replay;  // messages after `since`, oldest first, when recovered
};

// One subscriber's interest in one topic, owned by the subscriber (a session).
struct subscription {
    subscriber* owner = nullptr;
    std::string topic;
    std::uint64_t id = 0;
    std::uint32_t index = 0;        // position in the shard's list for the topic
    std::uint32_t tag = 0;          // for the owner: e.g. the topic's place in an SSE stream
    short_text epoch;               // stream the subscriber is positioned in
    std::uint64_t epoch_key = 0;    // topic_hash(epoch), compared per message
    std::uint64_t last_offset = 0;  // newest offset delivered (or skipped) to this subscriber
    // Until the owner answered: the resume position asked for and the live messages that
    // arrived meanwhile. Allocated by resume_from() or the first early message; the shard frees
    // it once the answer is applied, so a live subscription holds none of it (issue 15).
    struct pre_answer {
        std::optional<stream_pos> since;
        std::vector<message_ptr> early;
    };
    std::unique_ptr<pre_answer> pre;
    pre_answer& pending() {
        if (!pre) pre = std::make_unique<pre_answer>();
        return *pre;
    }
    void resume_from(std::optional<stream_pos> p) {
        if (p) pending().since = std::move(p);
    }
    // The resume position asked for; null when none, or once answered.
    [[nodiscard]] const stream_pos* since() const noexcept {
        return pre && pre->since ? &*pre->since : nullptr;
    }
    // Presence (presence.hpp): the subscribing connection's entry (the owner's, see
    // subscriber::presence_entry(); null when it takes no part, e.g. a long-poll), and whether it
    // wants join/leave events.
    [[nodiscard]] const presence_client* who() const noexcept;
    bool join_leave = false;
    bool in_presence = false;  // set by shard::subscribe: the topic is a presence topic
    bool active = false;       // false until the owner worker answered the subscribe
    // When the subscribe was asked (shard::subscribe): a message created before it reaches this
    // subscriber only as a replay, which delivery-latency metrics leave out.
    time_point asked{};

    [[nodiscard]] bool live(const message& m) const noexcept { return m.created >= asked; }
};

class subscriber {
public:
    // A message for `s`, in offset order, never one at or below `s.last_offset`.
    virtual void on_message(subscription& s, const message_ptr& m) = 0;
    // The subscribe was answered; the replay (if any) follows as on_message calls.
    virtual void on_subscribed(subscription& s, const subscribe_result& r) = 0;
    // The stream skipped to `m->epoch:m->offset` (a gap nobody can fill); `s` is moved there.
    virtual void on_reset(subscription& s, const message_ptr& m) { on_message(s, m); }
    // The owner refused the subscribe (a quota); `s` is already unsubscribed.
    virtual void on_refused(subscription& /*s*/, const std::string& /*reason*/) {}
    // A join or leave on `s`'s topic, for a subscription with `join_leave` (never its own).
    virtual void on_presence(subscription& /*s*/, const presence_event_ptr& /*e*/) {}
    // This subscriber's entry in presence, the same for all its subscriptions (null: it takes no
    // part). Asked for on subscribe, unsubscribe and join/leave events, never per message; kept
    // here rather than in every subscription (issue 15).
    [[nodiscard]] virtual const presence_client* presence_entry() const noexcept { return nullptr; }
    // A delivery is coming (shard::deliver asks a few subscribers ahead, see there): prefetch()
    // fetches the line the virtual calls read first; prefetch_delivery(), called once that line
    // is in, fetches what on_message() reads (the session's send queue and flags).
    void prefetch() const noexcept { __builtin_prefetch(this); }
    virtual void prefetch_delivery() const noexcept {}

protected:
    ~subscriber() = default;
};

inline const presence_client* subscription::who() const noexcept {
    return owner ? owner->presence_entry() : nullptr;
}

// What the hub needs from a broker, implemented in broker/ (the dependency is broker -> hub only).
// Both calls run on the topic's owner worker.
class stream_broker {
public:
    using resolve_handler = std::function<void(subscribe_result)>;

    // Called after the hub counted the new subscription on the owner. Resolves the stream's
    // position and, when `since` is given, the messages after it; `done` runs on any worker (the
    // hub posts the answer back to the subscriber's worker).
    virtual void resolve(unsigned owner, const std::string& topic,
                         const std::optional<stream_pos>& since, resolve_handler done) = 0;

    // The last subscription to `topic` anywhere in this process went away (its route became
    // empty). A broker that follows topics elsewhere (redis) may stop following it; the hub may
    // resolve the topic again later.
    virtual void on_topic_idle(unsigned /*owner*/, const std::string& /*topic*/) {}

protected:
    ~stream_broker() = default;
};

class hub;

// Per-namespace limits, checked on a topic's owner when a subscription arrives. 0 = no limit.
struct quota_rule {
    std::string pattern;
    std::size_t max_topics = 0;                 // topics with subscribers in this process
    std::size_t max_subscribers_per_topic = 0;  // subscriptions to one topic in this process
    // Set by hub::set_quotas: the process-wide count of topics with subscribers under this
    // pattern. One counter per pattern for the hub's life, so a count survives a reload.
    std::atomic<std::size_t>* topics = nullptr;
};
// A shard's rules: immutable once built, shared by every shard.
using quota_table = std::vector<quota_rule>;

// The busiest topics an owner shard holds (the admin page): top-n by message rate and by
// subscribers in this process.
struct topic_load {
    std::string topic;
    double rate = 0;  // messages per second since the previous scan of this topic
    std::size_t subscribers = 0;
};
struct busiest_topics {
    std::vector<topic_load> by_rate;         // highest first
    std::vector<topic_load> by_subscribers;  // highest first
    std::size_t scanned = 0;                 // topics looked at
    std::size_t topics = 0;                  // topics with subscribers held
    // Adds `o`'s topics (another shard's: owners hold disjoint topics) and keeps the top n.
    void merge(busiest_topics o, std::size_t n);
};
// The most topics one shard looks at for one busiest() call: bounds the cost of an admin poll.
inline constexpr std::size_t k_busiest_scan = 10'000;

class shard {
public:
    shard(hub& h, unsigned worker);
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    [[nodiscard]] unsigned worker() const noexcept { return worker_; }

    // Local side, on this worker. `s` must stay alive until unsubscribe().
    void subscribe(subscription& s);
    void unsubscribe(subscription& s);
    [[nodiscard]] std::size_t local_topics() const noexcept { return topics_.size(); }
    // On this worker (see hub::set_quotas).
    void set_quotas(std::shared_ptr<const quota_table> t) noexcept { quotas_ = std::move(t); }
    // Owner side, on this worker: the top n of at most `max_scan` topics it routes (the next
    // ones each call, round the table), rates since each topic's previous scan.
    [[nodiscard]] busiest_topics busiest(std::size_t n, std::size_t max_scan, time_point now);
    [[nodiscard]] std::size_t local_subscriptions() const noexcept { return local_subscriptions_; }

    // Owner side: where a topic's subscribers are, per worker.
    struct route {
        std::vector<std::uint32_t> per_worker;  // subscriptions each worker holds
        std::size_t total = 0;
        std::atomic<std::size_t>* quota = nullptr;  // the quota count this topic is in, if any
        bool active = false;  // told the activity listener: an accepted subscriber came
        // Messages routed (one per message, not per subscriber), and what busiest() saw last.
        std::uint64_t messages = 0;
        std::uint64_t seen = 0;
        time_point seen_at{};
    };
    // Owner side. dispatch() sends `m` to every worker with subscribers; returns how many.
    std::size_t dispatch(const message_ptr& m) { return dispatch(m, find_route(m->topic)); }
    // The same with `m`'s route already looked up (find_route(m->topic)).
    std::size_t dispatch(const message_ptr& m, route* r);
    [[nodiscard]] bool has_subscribers(const std::string& topic) const {
        return routes_.count(topic) != 0;
    }
    // Owner side: `topic`'s route, null when it has no subscriber in this process. The pointer
    // stays valid (a node of routes_, which rehashing does not move) until routes_generation()
    // changes: a caller that publishes to the same topic again and again (the memory broker's
    // stream) keeps it and looks the topic up only when the generation moved.
    [[nodiscard]] route* find_route(const std::string& topic) {
        auto it = routes_.find(topic);
        return it == routes_.end() ? nullptr : &it->second;
    }
    // Changes whenever a route is made or erased; never 0.
    [[nodiscard]] std::uint64_t routes_generation() const noexcept { return routes_gen_; }
    [[nodiscard]] std::size_t routed_topics() const noexcept { return routes_.size(); }

    // Runs on this worker when a message for local subscribers arrives.
    void deliver(const message_ptr& m);

    // Presence. A connection id unique across instances (hub's random tag, worker, counter).
    [[nodiscard]] std::string new_client_id();
    // Reads `topic`'s presence (from any worker); `done` runs on this worker.
    void query_presence(const std::string& topic, bool counts_only, presence_handler done);
    // Owner side: sends a join/leave to every worker with subscribers to its topic.
    void dispatch_presence(const presence_event_ptr& e);
    // Runs on this worker: hands `e` to the local subscriptions that asked for join/leave.
    void deliver_presence(const presence_event_ptr& e);
    // This process's entries for `topic` on its owner (null: none); owner only.
    [[nodiscard]] const presence_table* presence_of(const std::string& topic) const;
    // Owner only: every presence topic this owner holds entries for.
    [[nodiscard]] const std::unordered_map<std::string, presence_table>& presence_tables()
        const noexcept {
        return presence_;
    }

private:
    struct local_topic {
        std::vector<subscription*> subs;
    };

    // The first rule whose pattern matches `topic`, or null.
    [[nodiscard]] const quota_rule* quota_for(std::string_view topic) const noexcept;
    void on_remote_subscribe(unsigned from, const std::string& topic, std::uint64_t sub_id,
                             const std::optional<stream_pos>& since,
                             const std::optional<presence_client>& who);
    void on_remote_unsubscribe(unsigned from, const std::string& topic, const std::string& client);
    void presence_join(const std::string& topic, const presence_client& c);
    void presence_leave(const std::string& topic, const std::string& client);
    void on_subscribe_answer(std::uint64_t sub_id, subscribe_result r);
    void on_subscribe_refused(std::uint64_t sub_id, const std::string& reason);
    // Removes `s` from this worker's lists; true when it was there.
    bool remove_local(subscription& s);
    void offer(subscription& s, const message_ptr& m);
    void send_outbox();

    hub& hub_;
    unsigned worker_;
    std::uint64_t next_sub_id_ = 0;
    std::size_t local_subscriptions_ = 0;
    // Open addressing: a delivery's lookup reads one metadata group and one slot instead of a
    // bucket, the node before and the node. Nothing keeps a reference into it across an insert
    // (deliver() never subscribes from inside its loop).
    boost::unordered_flat_map<std::string, local_topic> topics_;
    std::unordered_map<std::uint64_t, subscription*> waiting_;  // subscribes not answered yet
    // Node-based: a route does not move while others come and go (find_route()).
    std::unordered_map<std::string, route> routes_;
    std::uint64_t routes_gen_ = 1;
    // Messages for other workers, sent as one post per worker per loop turn: the receiver then
    // fans a whole batch out and each connection writes it in one syscall.
    std::vector<std::vector<message_ptr>> outbox_;
    bool outbox_posted_ = false;
    std::uint64_t next_client_ = 0;
    std::unordered_map<std::string, presence_table> presence_;  // owner side: presence topics
    std::shared_ptr<const quota_table> quotas_;
    std::size_t busiest_bucket_ = 0;  // where the next busiest() scan starts
};

class hub {
public:
    explicit hub(std::vector<asio::io_context*> contexts);
    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;

    void set_broker(stream_broker& b) noexcept { broker_ = &b; }
    // The first matching pattern applies. Before the workers start (`running` false: the shards
    // take the rules now), or while they run (a reload, from one thread at a time: each shard
    // takes them on its own thread). A topic stays counted against the rule it was counted
    // against when it got its first subscriber; a new max_topics counts topics from then on.
    void set_quotas(std::vector<quota_rule> rules, bool running = false);
    [[nodiscard]] stream_broker& broker() noexcept { return *broker_; }

    // Presence, before the workers start: the topics that have it (first match; none: off) and
    // the size over which a read answers counts only.
    void set_presence(std::vector<std::string> patterns, std::size_t max_clients);
    [[nodiscard]] bool presence_on(std::string_view topic) const noexcept;
    [[nodiscard]] std::size_t presence_max_clients() const noexcept { return presence_max_; }
    // Where entries go (default: this process's owner tables, see presence.hpp).
    void set_presence_backend(presence_backend& b) noexcept { presence_backend_ = &b; }
    [[nodiscard]] presence_backend& presence() noexcept { return *presence_backend_; }
    // For the webhooks: told of occupied/vacated/join/leave (presence.hpp). Before the workers
    // start.
    void set_presence_observer(presence_observer o) { presence_observer_ = std::move(o); }
    // Hands a change to the observer, if any; on the topic's owner worker.
    void notify(unsigned worker, const presence_change& c) const {
        if (presence_observer_) presence_observer_(worker, c);
    }
    [[nodiscard]] const std::string& instance_tag() const noexcept { return tag_; }
    // Called on a topic's owner worker when the topic gets its first accepted subscriber in this
    // process (`active`) and when it loses its last one: the occupied/vacated webhook events.
    // Set before the workers start.
    using activity_fn = std::function<void(unsigned owner, const std::string& topic, bool active)>;
    void set_activity_listener(activity_fn fn) { activity_ = std::move(fn); }
    void on_activity(unsigned owner, const std::string& topic, bool active) const {
        if (activity_) activity_(owner, topic, active);
    }

    [[nodiscard]] unsigned workers() const noexcept {
        return static_cast<unsigned>(shards_.size());
    }
    [[nodiscard]] shard& at(unsigned worker) noexcept { return *shards_[worker]; }
    [[nodiscard]] unsigned owner_of(std::string_view topic) const noexcept;

    ~hub();

    // Runs `fn` on `worker`'s thread. From another worker's thread, `fn` joins that worker's
    // batch for `worker`, and the batch leaves as one post at the end of the sender's loop turn
    // (send_posts): a burst of hand-offs (publishes, their answers, deliveries) wakes the
    // receiver once, not once per item. Order is kept per sender and receiver (one FIFO batch
    // per pair, sent in order): a subscription queued before a publish still reaches the owner
    // first. From the worker's own thread, `fn` joins the worker's batch for itself, posted once
    // when its first hand-off comes (a pipelined batch of publishes to topics the worker owns is
    // one post, not one per publish); a hand-off made while that batch runs starts the next one.
    // From a thread that runs no worker, it is a plain post.
    template <class Fn>
    void post(unsigned worker, Fn&& fn) {
        const unsigned from = running_worker();
        if (from == k_no_worker || (from != worker && contexts_[from] == contexts_[worker])) {
            asio::post(*contexts_[worker], std::forward<Fn>(fn));
            return;
        }
        using task_t = task_of<std::decay_t<Fn>>;
        if (from == worker) {
            enqueue_self(worker, new task_t(std::forward<Fn>(fn)));
            return;
        }
        enqueue(from, worker, new task_t(std::forward<Fn>(fn)));
    }
    // Sends `worker`'s pending batches now (on its thread); the end-of-turn pass then finds
    // nothing. The shard's outbox calls it so that deliveries leave with what was queued before.
    void send_posts(unsigned worker);

private:
    // One hand-off queued in a sender's batch; run and deleted on the receiver's thread.
    struct task {
        task* next = nullptr;
        virtual ~task() = default;
        virtual void run() = 0;
    };
    // Made on the sender's thread, freed on the receiver's: its block comes from task_pool.
    template <class Fn>
    struct task_of final : task {
        Fn fn;
        explicit task_of(Fn f) : fn(std::move(f)) {}
        void run() override { fn(); }
        static void* operator new(std::size_t n) { return task_pool::allocate(n); }
        static void operator delete(void* p, std::size_t n) noexcept {
            task_pool::deallocate(p, n);
        }
    };
    // A FIFO batch from one worker to another. Owned by the sender's thread until posted, then
    // by the receiver's handler; a batch whose handler never ran (shutdown) frees its tasks.
    struct batch {
        task* head = nullptr;
        task* tail = nullptr;
        batch() = default;
        batch(batch&& o) noexcept
            : head(std::exchange(o.head, nullptr)), tail(std::exchange(o.tail, nullptr)) {}
        batch& operator=(batch&&) = delete;
        batch(const batch&) = delete;
        ~batch();
        void push(task* t) noexcept;  // at the end
        void run_all();
    };
    // A sender's batches, one per receiver, and whether its end-of-turn pass is posted. Touched
    // only by the sender's thread; a cache line of its own.
    struct alignas(64) outgoing {
        std::vector<batch> to;
        bool posted = false;
        bool self_posted = false;  // `self` has a post that will run it
        batch self;                // hand-offs to the sender's own worker
    };
    static constexpr unsigned k_no_worker = ~0U;
    // The worker whose io_context runs the calling thread's handler, or k_no_worker.
    [[nodiscard]] unsigned running_worker() const noexcept {
        for (unsigned w = 0; w < contexts_.size(); ++w)
            if (contexts_[w]->get_executor().running_in_this_thread()) return w;
        return k_no_worker;
    }
    void enqueue(unsigned from, unsigned to, task* t);
    void enqueue_self(unsigned worker, task* t);

    std::vector<asio::io_context*> contexts_;
    std::unique_ptr<outgoing[]> outgoing_;
    std::vector<std::unique_ptr<shard>> shards_;
    stream_broker* broker_ = nullptr;
    // Topic counts per quota pattern ever configured; a deque never moves its elements, so the
    // shards' pointers stay valid while set_quotas adds one.
    std::deque<std::atomic<std::size_t>> quota_counts_;
    std::unordered_map<std::string, std::atomic<std::size_t>*> quota_slots_;
    std::vector<std::string> presence_patterns_;
    std::size_t presence_max_ = 1000;
    std::unique_ptr<presence_backend> local_presence_;  // the default backend
    presence_backend* presence_backend_ = nullptr;
    presence_observer presence_observer_;
    std::string tag_;  // random per process: connection ids are unique across instances
    activity_fn activity_;
};

}  // namespace herald::hub
