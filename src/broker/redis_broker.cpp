// redis_broker: construction, links' state, publish, revocation, history and metrics. Following
// topics (resolve, the pub/sub relay, gap filling) is redis_follow.cpp; unsubscribing, link
// changes and the tick are redis_links.cpp.
#include "redis_broker.hpp"

#include "herald/wire/topic.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include <unistd.h>

namespace herald::broker {

namespace {

// Redis Cluster: shards are slots for masters, filled as the map names them. A cluster with
// more masters than this is served on the first k_cluster_max_shards (the rest are refused,
// logged, and /readyz says their slots are unserved).
constexpr std::size_t k_cluster_max_shards = 32;
constexpr unsigned k_max_redirects = 3;

std::vector<std::string> shard_names_of(const config::settings& cfg) {
    if (cfg.redis.cluster.empty()) return cfg.redis.shards;
    std::vector<std::string> out;
    for (std::size_t i = 0; i < k_cluster_max_shards; ++i)
        out.push_back("cluster-" + std::to_string(i));
    return out;
}

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

redis_broker::redis_broker(hub::hub& h, const config::settings& cfg,
                           const std::vector<asio::io_context*>& contexts)
    : hub_(h),
      cfg_(cfg),
      cluster_(!cfg.redis.cluster.empty()),
      shard_names_(shard_names_of(cfg)),
      script_body_{redis::publish_script, redis::read_script, redis::confirm_script},
      control_channel_(redis::control_channel(cfg.redis.key_prefix)),
      control_shard_(cluster_ ? 0 : redis::pick_shard(control_channel_, shard_names_)) {
    if (cluster_)
        for (auto& b : script_body_) b = redis::sharded(b);
    sha_publish_ = redis::script_sha(script_body_[0]);
    sha_read_ = redis::script_sha(script_body_[1]);
    sha_confirm_ = redis::script_sha(script_body_[2]);
    std::random_device rd;
    instance_id_ = fmt::format("{:08x}{:08x}", rd(), rd());
    const auto shards = shard_names_.size();
    shard_stats_ = std::make_unique<shard_stats[]>(shards);
    link_up_ = std::make_unique<std::atomic<bool>[]>(contexts.size() * shards * 2);
    const auto heartbeat = redis::heartbeat_pattern(cfg.redis.key_prefix);
    for (unsigned w = 0; w < contexts.size(); ++w) {
        auto ws = std::make_unique<worker_state>();
        ws->rng.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ (w * 0x9E3779B97F4A7C15ULL));
        for (std::size_t s = 0; s < shards; ++s) {
            redis_link::options opt;
            const bool sentinel =
                !cluster_ && s < cfg.redis.sentinels.size() && !cfg.redis.sentinels[s].empty();
            if (sentinel || cluster_) {
                opt.endpoint.port = 0;  // unknown until a sentinel (the slot map) names it
            } else {
                auto ep = parse_endpoint(shard_names_[s]);
                if (!ep)
                    throw std::invalid_argument("redis.shards: bad address " + shard_names_[s]);
                opt.endpoint = *ep;
            }
            shard_stats_[s].sentinel.store(sentinel, std::memory_order_relaxed);
            link_options(cfg, opt);
            opt.require_master = true;  // never write to (nor follow) a replica
            shard_links l;
            const auto base = "herald-" + std::to_string(::getpid()) + "-w" + std::to_string(w);
            opt.client_name = base + "-cmd";
            l.cmd = std::make_unique<redis_link>(*contexts[w], opt, ws->rng());
            auto* cmd = l.cmd.get();
            cmd->on_up = [this, w, s, cmd] {
                on_link_up(w, s, false, cmd->reconnects());
                on_cmd_up(w, s);
            };
            cmd->on_down = [this, w, s, cmd] { on_link_down(w, s, false, cmd->timed_out()); };
            auto not_master = [this, s] {
                shard_stats_[s].not_master.fetch_add(1, std::memory_order_relaxed);
                ask_sentinels(s);
                ask_cluster();
            };
            cmd->on_not_master = not_master;
            // Either kind of pub/sub link reports to the same handlers.
            auto wire_sub = [this, w, s](auto* sub) {
                sub->on_up = [this, w, s, sub] {
                    on_link_up(w, s, true, sub->reconnects());
                    on_sub_up(w, s);
                };
                sub->on_down = [this, w, s, sub] {
                    on_link_down(w, s, true, sub->timed_out());
                    on_sub_down(w, s);
                };
                sub->on_push = [this, w, s](redisReply* r) { on_push(w, s, r); };
            };
            if (cluster_) {
                redis_sharded_link::options so;
                so.endpoint = opt.endpoint;
                so.connect_timeout = opt.connect_timeout;
                so.command_timeout = opt.command_timeout;
                so.ping_interval = opt.ping_interval;
                so.max_backoff = opt.max_backoff;
                so.username = opt.username;
                so.password = opt.password;
                so.client_name = base + "-ssub";
                l.ssub = std::make_unique<redis_sharded_link>(*contexts[w], so, ws->rng());
                wire_sub(l.ssub.get());
                l.ssub->on_refused = [this, w, s](const std::string& ch, redisReply* r) {
                    on_refused(w, s, ch, r);
                };
            } else {
                opt.client_name = base + "-sub";
                opt.heartbeat_pattern = heartbeat;
                l.sub = std::make_unique<redis_link>(*contexts[w], opt, ws->rng());
                wire_sub(l.sub.get());
                l.sub->on_not_master = not_master;
            }
            ws->shards.push_back(std::move(l));
            // A cluster shard counts once a master is mapped to it (on_cluster_slots).
            if (cluster_) {
                shard_stats_[s].assigned.store(false, std::memory_order_relaxed);
                continue;
            }
            links_down_.fetch_add(2, std::memory_order_relaxed);
            shard_stats_[s].cmd_down.fetch_add(1, std::memory_order_relaxed);
            shard_stats_[s].sub_down.fetch_add(1, std::memory_order_relaxed);
        }
        workers_.push_back(std::move(ws));
    }
    presence_ = std::make_unique<redis_presence>(
        h, cfg, instance_id_,
        [this](unsigned w, std::size_t s) -> redis_link& { return *workers_[w]->shards[s].cmd; },
        [this](unsigned w, std::string_view topic) {
            // Unmapped (a cluster without a map yet): shard 0's links, not started or refusing
            // with MOVED; the presence refresh writes the entry again later.
            const auto s = shard_of(w, topic);
            return s == k_no_shard ? 0 : s;
        });
    h.set_presence_backend(*presence_);
    for (auto& ws : workers_) ws->control_shard = control_shard_;
    if (cluster_)
        spdlog::info("redis cluster: instance {}; seeds {}", instance_id_,
                     fmt::join(cfg.redis.cluster, ", "));
    else
        spdlog::info("redis: instance {}; control channel '{}' on {}", instance_id_,
                     control_channel_, shard_names_[control_shard_]);
    start_sentinels(contexts);
    start_cluster(contexts);
    for (unsigned w = 0; w < contexts.size(); ++w) {
        hub_.post(w, [this, w] {
            for (auto& l : workers_[w]->shards) l.start();
        });
    }
}

void redis_broker::link_options(const config::settings& cfg, redis_link::options& opt) {
    opt.connect_timeout = cfg.redis.connect_timeout;
    opt.command_timeout = cfg.redis.command_timeout;
    opt.ping_interval = cfg.redis.ping_interval;
    opt.max_backoff = cfg.redis.reconnect_max_backoff;
    opt.username = cfg.redis.username;
    opt.password = cfg.redis.password;
}

// Runs after the worker threads stopped: hiredis's teardown callbacks only post.
redis_broker::~redis_broker() = default;

bool redis_broker::ready() const noexcept {
    if (cluster_ && (!cluster_mapped_.load(std::memory_order_relaxed) ||
                     slots_unserved_.load(std::memory_order_relaxed) > 0))
        return false;
    return links_down_.load(std::memory_order_relaxed) == 0;
}

std::string redis_broker::not_ready_reason() const {
    if (cluster_ && !cluster_mapped_.load(std::memory_order_relaxed))
        return "redis cluster: no slot map yet (no seed node answered CLUSTER SLOTS)";
    if (cluster_ && slots_unserved_.load(std::memory_order_relaxed) > 0)
        return "redis cluster: " + std::to_string(slots_unserved_.load(std::memory_order_relaxed)) +
               " slots have no master";
    for (std::size_t s = 0; s < shard_names_.size(); ++s) {
        auto why = shard_down_reason(s);
        if (!why.empty()) return why;
    }
    return {};
}

// Which shard, and which of its links: "no writable master" when the command links are down
// (publishes answer 503), else the workers whose pub/sub link is down (delivery stalls there).
std::string redis_broker::shard_down_reason(std::size_t s) const {
    const auto& st = shard_stats_[s];
    const auto cmd_down = st.cmd_down.load(std::memory_order_relaxed);
    const auto sub_down = st.sub_down.load(std::memory_order_relaxed);
    if (cmd_down == 0 && sub_down == 0) return {};
    const bool sentinel = st.sentinel.load(std::memory_order_relaxed);
    std::string name = "redis shard " + shard_label(s);
    if (cluster_) name = "redis cluster node " + shard_label(s);
    if (sentinel) name = "redis shard '" + shard_names_[s] + "' (Sentinel)";
    if (sentinel && !st.master_known.load(std::memory_order_relaxed))
        return name + ": no master known yet (" +
               std::to_string(st.sentinels_up.load(std::memory_order_relaxed)) + " of " +
               std::to_string(cfg_.redis.sentinels[s].size()) + " sentinels answer)";
    if (!st.seen.load(std::memory_order_relaxed)) return name + " is not connected yet";
    const auto all = static_cast<std::int64_t>(workers_.size());
    if (cmd_down == all && sub_down == all) return name + " is down";
    const auto which = [&](std::size_t k) {
        std::string out;
        for (std::size_t w = 0; w < workers_.size(); ++w) {
            if (link_up_[(w * shard_names_.size() + s) * 2 + k].load(std::memory_order_relaxed))
                continue;
            out += out.empty() ? "" : ",";
            out += std::to_string(w);
        }
        return out;
    };
    if (cmd_down > 0)
        return name + ": no writable master (command link down on worker " + which(0) + ")";
    return name + ": pub/sub link down on worker " + which(1);
}

void redis_broker::link_changed(unsigned w, std::size_t shard, bool sub, bool up) {
    links_down_.fetch_add(up ? -1 : 1, std::memory_order_relaxed);
    auto& c = sub ? shard_stats_[shard].sub_down : shard_stats_[shard].cmd_down;
    c.fetch_add(up ? -1 : 1, std::memory_order_relaxed);
    link_up_[(w * shard_names_.size() + shard) * 2 + (sub ? 1 : 0)].store(
        up, std::memory_order_relaxed);
}

void redis_broker::on_link_up(unsigned w, std::size_t shard, bool sub, std::uint64_t reconnects) {
    if (reconnects > 0) reconnects_.fetch_add(1, std::memory_order_relaxed);
    shard_stats_[shard].seen.store(true, std::memory_order_relaxed);
    link_changed(w, shard, sub, true);
    // The shard answers again: every other link to it, on every worker, tries now rather than
    // at the end of its own backoff, so publishing and /readyz come back together.
    for (unsigned v = 0; v < workers_.size(); ++v) {
        if (v == w) {
            workers_[v]->shards[shard].retry_now();
            continue;
        }
        hub_.post(v, [this, v, shard] { workers_[v]->shards[shard].retry_now(); });
    }
}

void redis_broker::on_link_down(unsigned w, std::size_t shard, bool sub, bool timed_out) {
    link_changed(w, shard, sub, false);
    if (timed_out) command_timeouts_.fetch_add(1, std::memory_order_relaxed);
    // The master may have moved: the sentinels (the slot map) are asked now, not at the next tick.
    if (!sub) ask_sentinels(shard);
    ask_cluster();
}

std::size_t redis_broker::shard_of(unsigned w, std::string_view topic) const {
    if (!cluster_) return redis::pick_shard(topic, shard_names_);
    // A topic's keys and channel share the slot of its {hash tag}: the topic itself.
    return shard_of_slot(w, redis::key_slot("{" + std::string(topic) + "}"));
}

std::size_t redis_broker::shard_of_slot(unsigned w, std::uint16_t slot) const {
    const auto& map = workers_[w]->slots;
    if (!map) return k_no_shard;
    const auto s = (*map)[slot];
    return s == k_unserved ? k_no_shard : s;
}

std::string redis_broker::channel_of(std::string_view topic) const {
    return redis::channel(cfg_.redis.key_prefix, topic, cluster_);
}

redis_broker::stats redis_broker::snapshot() const noexcept {
    stats s;
    const auto down = links_down_.load(std::memory_order_relaxed);
    s.links_down = down > 0 ? static_cast<std::uint64_t>(down) : 0;
    s.reconnects = reconnects_.load(std::memory_order_relaxed);
    s.publishes = publishes_.load(std::memory_order_relaxed);
    s.publish_failures = publish_failures_.load(std::memory_order_relaxed);
    s.publish_unknown = publish_unknown_.load(std::memory_order_relaxed);
    s.command_timeouts = command_timeouts_.load(std::memory_order_relaxed);
    s.publish_latency_us_sum = publish_latency_us_.load(std::memory_order_relaxed);
    s.gaps_filled = gaps_filled_.load(std::memory_order_relaxed);
    s.gap_messages = gap_messages_.load(std::memory_order_relaxed);
    s.resets_sent = resets_sent_.load(std::memory_order_relaxed);
    s.control_published = control_published_.load(std::memory_order_relaxed);
    s.control_received = control_received_.load(std::memory_order_relaxed);
    s.control_failures = control_failures_.load(std::memory_order_relaxed);
    return s;
}

// A topic's epoch and top outlive its messages and its idempotency keys, as in memory.
std::int64_t redis_broker::meta_ttl_ms(const history_policy& p) const {
    return std::max<std::int64_t>({p.ttl.count(), cfg_.publish.idempotency_window.count(), 1000});
}

std::string redis_broker::new_epoch(worker_state& ws) {
    static constexpr char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string e(8, '0');
    for (auto& c : e) c = alphabet[ws.rng() % 36];
    return e;
}

hub::message_ptr redis_broker::to_message(const std::string& topic, redis::entry e) {
    const auto age = std::max<std::int64_t>(0, unix_ms_now() - e.unix_ms);
    return hub::make_message(topic, std::move(e.epoch), e.offset, e.kind, std::move(e.payload),
                             std::move(e.event), clock::now() - milliseconds(age), e.trace);
}

struct redis_broker::eval_call {
    unsigned w;
    std::size_t shard;
    script which;
    std::vector<std::string> args;
    std::string numkeys;
    std::size_t replid_at;
    std::shared_ptr<std::size_t> where;
    reply_fn done;
    unsigned redirects = 0;
    bool asking = false;   // an ASK redirection: ASKING goes first, on this node only
    bool by_body = false;  // NOSCRIPT was answered: EVAL with the body (which loads it)
};

void redis_broker::eval(unsigned w, std::size_t shard, script which, std::vector<std::string> args,
                        std::size_t numkeys, reply_fn done, std::size_t replid_at,
                        std::shared_ptr<std::size_t> where) {
    auto c = std::make_shared<eval_call>(eval_call{w, shard, which, std::move(args),
                                                   std::to_string(numkeys), replid_at,
                                                   std::move(where), std::move(done)});
    send_eval(c);
}

// The script's `ids` argument (redis_codec.cpp, open_stream): the shard's master's replication
// id; in a cluster followed by those of the other masters this worker reaches now.
std::string redis_broker::replids(unsigned w, std::size_t shard) const {
    const auto& shards = workers_[w]->shards;
    std::string out = shards[shard].cmd->replid();
    if (!cluster_) return out;
    for (std::size_t s = 0; s < shards.size(); ++s) {
        const auto& l = *shards[s].cmd;
        if (s == shard || !l.up() || l.replid().empty()) continue;
        out += ',';
        out += l.replid();
    }
    return out;
}

void redis_broker::send_eval(const std::shared_ptr<eval_call>& c) {
    auto& link = *workers_[c->w]->shards[c->shard].cmd;
    if (c->replid_at < c->args.size()) c->args[c->replid_at] = replids(c->w, c->shard);
    const auto idx = static_cast<std::size_t>(c->which);
    const std::string& sha = c->which == script::publish
                                 ? sha_publish_
                                 : (c->which == script::read ? sha_read_ : sha_confirm_);
    std::vector<std::string_view> v;
    v.reserve(c->args.size() + 3);
    v.emplace_back(c->by_body ? "EVAL" : "EVALSHA");
    v.emplace_back(c->by_body ? std::string_view(script_body_[idx]) : std::string_view(sha));
    v.emplace_back(c->numkeys);
    for (const auto& s : c->args) v.emplace_back(s);
    // ASKING holds for the next command of the connection: both are queued back to back.
    if (c->asking) link.command({"ASKING"}, [](redisReply*, no_reply) {});
    if (!link.command(v, [this, c](redisReply* r, no_reply why) { on_eval_reply(c, r, why); }))
        hub_.post(c->w, [c] { c->done(nullptr, no_reply::not_sent); });
}

void redis_broker::on_eval_reply(const std::shared_ptr<eval_call>& c, redisReply* r, no_reply why) {
    // A restarted or flushed Redis forgot the script: send it once by body (which loads it).
    if (!c->by_body && redis::is_error(r, "NOSCRIPT")) {
        c->by_body = true;
        send_eval(c);
        return;
    }
    if (cluster_) {
        if (auto rd = redis::parse_redirect(r)) {
            auto& st = shard_stats_[c->shard];
            (rd->ask ? st.asked : st.moved).fetch_add(1, std::memory_order_relaxed);
            if (!rd->ask) ask_cluster();  // the map is stale
            const auto to = shard_at(c->w, rd->to);
            if (to == k_no_shard) ask_cluster();  // a node the map does not know yet
            if (to != k_no_shard && c->redirects < k_max_redirects &&
                workers_[c->w]->shards[to].cmd->up()) {
                ++c->redirects;
                c->shard = to;
                c->asking = rd->ask;
                c->by_body = false;
                if (c->where) *c->where = to;
                send_eval(c);
                return;
            }
        }
    }
    c->done(r, why);
}

void redis_broker::read(unsigned w, std::size_t shard, const std::string& topic,
                        std::uint64_t after, std::size_t limit, bool newest, reply_fn done) {
    auto& ws = *workers_[w];
    const auto pol = policy_for(cfg_, topic);
    const auto& prefix = cfg_.redis.key_prefix;
    std::vector<std::string> args{redis::meta_key(prefix, topic),
                                  redis::history_key(prefix, topic),
                                  new_epoch(ws),
                                  std::to_string(after),
                                  std::to_string(limit),
                                  std::to_string(meta_ttl_ms(pol)),
                                  newest ? "1" : "0",
                                  std::to_string(pol.ttl.count()),
                                  std::string(),  // the replication id, set by eval
                                  cfg_.redis.replicas_ack > 0 ? "1" : "0"};
    eval(w, shard, script::read, std::move(args), 2, std::move(done), 8);
}

// ---------------------------------------------------------------------------------------------
// Publish

void redis_broker::publish(unsigned from, hub::publish_request&& req, publish_handler&& done) {
    auto& ws = *workers_[from];
    const auto shard = shard_of(from, req.topic);
    if (shard == k_no_shard || !ws.shards[shard].cmd->up()) {
        publish_failures_.fetch_add(1, std::memory_order_relaxed);
        hub_.post(from, [topic = std::move(req.topic), done = std::move(done)]() mutable {
            publish_result r;
            r.status = publish_status::unavailable;
            r.topic = std::move(topic);
            done(std::move(r));
        });
        return;
    }
    const auto pol = policy_for(cfg_, req.topic);
    const auto window = cfg_.publish.idempotency_window;
    const bool idem = !req.idempotency_key.empty() && window.count() > 0;
    const auto& prefix = cfg_.redis.key_prefix;
    std::vector<std::string> args;
    args.reserve(13);
    args.push_back(redis::meta_key(prefix, req.topic));
    args.push_back(redis::history_key(prefix, req.topic));
    if (idem) args.push_back(redis::idempotency_key(prefix, req.topic, req.idempotency_key));
    args.push_back(new_epoch(ws));
    args.push_back(std::string(1, static_cast<char>('0' + static_cast<int>(req.kind))));
    args.push_back(std::move(req.event));
    args.push_back(std::move(req.payload));
    args.push_back(std::to_string(pol.size));
    args.push_back(std::to_string(pol.ttl.count()));
    args.push_back(std::to_string(window.count()));
    args.push_back(channel_of(req.topic));
    args.push_back(std::to_string(meta_ttl_ms(pol)));
    const auto replid_at = args.size();
    args.push_back(std::string());  // the replication id, set by eval
    const bool ack = cfg_.redis.replicas_ack > 0;
    args.push_back(ack ? "1" : "0");
    args.push_back(redis::trace_suffix(req.trace));
    const auto t0 = clock::now();
    auto where = std::make_shared<std::size_t>(shard);
    // The link's reply callbacks are std::function (copyable); the move-only completion rides
    // in a shared block, released with the last callback whether or not it was called.
    auto shared_done = std::make_shared<publish_handler>(std::move(done));
    eval(
        from, shard, script::publish, std::move(args), idem ? 3 : 2,
        [this, from, where, ack, topic = std::move(req.topic), t0, done = std::move(shared_done)](
            redisReply* r, no_reply why) mutable {
            const auto shard = *where;
            auto& link = *workers_[from]->shards[shard].cmd;
            publish_result res;
            res.topic = std::move(topic);
            auto p = redis::parse_publish_reply(r);
            if (!p && r == nullptr && why == no_reply::lost) {
                // Sent, and the link timed out or broke before the answer: Redis may run it
                // yet (a frozen server wakes up and reads its socket).
                publish_unknown_.fetch_add(1, std::memory_order_relaxed);
                res.status = publish_status::unknown;
            } else if (!p) {
                if (r && r->type == REDIS_REPLY_ERROR)
                    spdlog::warn("redis publish to '{}': {}", res.topic,
                                 std::string_view(r->str, r->len));
                // A replica (a stale address): never write there; find the master again.
                if (redis::is_error(r, "READONLY")) {
                    shard_stats_[shard].not_master.fetch_add(1, std::memory_order_relaxed);
                    link.reconnect("a replica (READONLY)");
                    ask_sentinels(shard);
                    ask_cluster();
                }
                publish_failures_.fetch_add(1, std::memory_order_relaxed);
                res.status = publish_status::unavailable;
            } else if (ack) {
                confirm(from, shard, std::move(res.topic), std::move(*p), t0, std::move(done));
                return;
            } else {
                finish_publish(shard, res, *p, t0);
            }
            (*done)(std::move(res));
        },
        replid_at, where);
}

void redis_broker::finish_publish(std::size_t shard, publish_result& res, redis::publish_reply& p,
                                  time_point t0) {
    res.status = p.duplicate ? publish_status::duplicate : publish_status::ok;
    res.epoch = std::move(p.epoch);
    res.offset = p.offset;
    // Instances (pub/sub links) that follow the topic, not local subscribers.
    res.subscribers = static_cast<std::size_t>(p.receivers);
    publishes_.fetch_add(1, std::memory_order_relaxed);
    shard_stats_[shard].publishes.fetch_add(1, std::memory_order_relaxed);
    observe_latency(shard, clock::now() - t0);
}

// replicas_ack: the entry is in the master's history but was not PUBLISHed. WAIT (on the same
// link, so it covers this write) says how many replicas have it; only then does confirm_script
// make it visible (raise the confirmed top, PUBLISH). Fewer replicas in time: 503, and the entry
// stays invisible until its retry (same Idempotency-Key, answered as the duplicate) is confirmed
// or a later confirmed publish of the topic raises the top past it.
void redis_broker::confirm(unsigned from, std::size_t shard, std::string topic,
                           redis::publish_reply p, time_point t0, shared_publish_handler done) {
    auto& link = *workers_[from]->shards[shard].cmd;
    const auto n = std::to_string(cfg_.redis.replicas_ack);
    const auto ms = std::to_string(cfg_.redis.replicas_ack_timeout.count());
    auto fail = [this, topic](publish_status st) {
        publish_result res;
        res.topic = topic;
        res.status = st;
        if (st == publish_status::unknown)
            publish_unknown_.fetch_add(1, std::memory_order_relaxed);
        else
            publish_failures_.fetch_add(1, std::memory_order_relaxed);
        return res;
    };
    auto on_wait = [this, from, shard, fail, topic, p = std::move(p), t0, done](redisReply* r,
                                                                                no_reply) mutable {
        if (r == nullptr || r->type != REDIS_REPLY_INTEGER) {
            (*done)(fail(publish_status::unknown));  // written; whether replicas have it: unknown
            return;
        }
        if (r->integer < static_cast<long long>(cfg_.redis.replicas_ack)) {
            shard_stats_[shard].ack_failures.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("redis publish to '{}': {} of {} replicas within {} ms; answered 503",
                         topic, r->integer, cfg_.redis.replicas_ack,
                         cfg_.redis.replicas_ack_timeout.count());
            (*done)(fail(publish_status::unavailable));
            return;
        }
        const auto& prefix = cfg_.redis.key_prefix;
        std::vector<std::string> args{redis::meta_key(prefix, topic),
                                      redis::history_key(prefix, topic),
                                      p.epoch,
                                      std::to_string(p.offset),
                                      channel_of(topic),
                                      std::move(p.entry)};
        eval(from, shard, script::confirm, std::move(args), 2,
             [this, shard, fail, topic, p, t0, done](redisReply* c, no_reply) mutable {
                 if (c == nullptr || c->type != REDIS_REPLY_INTEGER || c->integer < 0) {
                     (*done)(fail(publish_status::unknown));
                     return;
                 }
                 p.receivers = static_cast<std::uint64_t>(c->integer);
                 publish_result res;
                 res.topic = topic;
                 finish_publish(shard, res, p, t0);
                 (*done)(std::move(res));
             });
    };
    if (!link.command({"WAIT", n, ms}, std::move(on_wait)))
        hub_.post(from, [done, res = fail(publish_status::unknown)]() mutable {
            (*done)(std::move(res));
        });
}

void redis_broker::observe_latency(std::size_t shard, clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    publish_latency_us_.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    shard_stats_[shard].latency_us.fetch_add(static_cast<std::uint64_t>(us),
                                             std::memory_order_relaxed);
    const double sec = static_cast<double>(us) / 1e6;
    std::size_t b = 0;
    while (b < k_latency_bounds.size() && sec > k_latency_bounds[b]) ++b;
    latency_buckets_[b].fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Control: revocation across instances

void redis_broker::broadcast_disconnect(unsigned from, std::string user, broadcast_handler done) {
    const auto cs = workers_[from]->control_shard;
    auto& link = *workers_[from]->shards[cs == k_no_shard ? 0 : cs].cmd;
    const auto payload =
        redis::encode_control({redis::control::type::disconnect, instance_id_, std::move(user)});
    auto fail = [this](broadcast_handler& d) {
        control_failures_.fetch_add(1, std::memory_order_relaxed);
        d(broadcast_result{false, 0});
    };
    // PUBLISH answers how many subscribers got the message: one per instance, this one included.
    const bool sent =
        cs != k_no_shard &&
        link.command({cluster_ ? "SPUBLISH" : "PUBLISH", control_channel_, payload},
                     [this, fail, done](redisReply* r, no_reply) mutable {
                         if (r == nullptr || r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
                             if (redis::is_error(r))
                                 spdlog::warn("redis control publish: {}",
                                              std::string_view(r->str, r->len));
                             fail(done);
                             return;
                         }
                         control_published_.fetch_add(1, std::memory_order_relaxed);
                         done(broadcast_result{true, static_cast<std::size_t>(r->integer)});
                     });
    if (!sent) hub_.post(from, [fail, done = std::move(done)]() mutable { fail(done); });
}

void redis_broker::on_control(unsigned w, const redis::push& p) {
    if (p.kind != redis::push::type::message) return;  // the SUBSCRIBE confirmation
    auto c = redis::decode_control(p.payload);
    if (!c) {
        spdlog::warn("redis: undecodable control message");
        return;
    }
    // The sender closes its own connections without the broker: never twice, never counted twice.
    if (c->origin == instance_id_) return;
    control_received_.fetch_add(1, std::memory_order_relaxed);
    if (on_disconnect_) on_disconnect_(w, std::move(c->user));
}

// ---------------------------------------------------------------------------------------------
// History

void redis_broker::history(unsigned from, const std::string& topic,
                           std::optional<hub::stream_pos> since, std::size_t limit,
                           history_handler done) {
    const auto shard = shard_of(from, topic);
    if (shard == k_no_shard || !workers_[from]->shards[shard].cmd->up()) {
        hub_.post(from, [done = std::move(done)]() mutable {
            history_result res;
            res.unavailable = true;
            done(std::move(res));
        });
        return;
    }
    const auto after = since ? std::optional(since->offset) : std::nullopt;
    read(from, shard, topic, after.value_or(0), limit, !after,
         [topic, since = std::move(since), after, limit, done = std::move(done)](redisReply* reply,
                                                                                 no_reply) mutable {
             history_result res;
             if (!reply || reply->type == REDIS_REPLY_ERROR) {  // link lost, or a script error
                 res.unavailable = true;
                 done(std::move(res));
                 return;
             }
             auto r = redis::parse_read_reply(reply);
             if (!r || r->epoch.empty()) {
                 done(std::move(res));
                 return;
             }
             res.found = true;
             res.epoch = r->epoch;
             res.top = r->top;
             if (since && !since->epoch.empty() && since->epoch != r->epoch) {
                 res.epoch_mismatch = true;
             } else {
                 // The script selected by the same rule; this keeps the answer to the rule.
                 const auto win = history_window(r->first, r->top, after, limit);
                 for (auto& e : r->entries)
                     if (e.offset >= win.from && e.offset <= win.to)
                         res.messages.push_back(to_message(topic, std::move(e)));
             }
             done(std::move(res));
         });
}

metrics::registry::gauge redis_broker::latency_histogram() const {
    metrics::registry::gauge g{"herald_redis_publish_latency_seconds",
                               "Time from sending a publish to Redis to its confirmation.", 0,
                               "histogram"};
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b <= k_latency_bounds.size(); ++b) {
        cumulative += latency_buckets_[b].load(std::memory_order_relaxed);
        const auto le = b < k_latency_bounds.size() ? fmt::format("{}", k_latency_bounds[b])
                                                    : std::string("+Inf");
        g.samples.emplace_back("_bucket{le=\"" + le + "\"}", static_cast<double>(cumulative));
    }
    g.samples.emplace_back(
        "_sum", static_cast<double>(publish_latency_us_.load(std::memory_order_relaxed)) / 1e6);
    g.samples.emplace_back("_count", static_cast<double>(cumulative));
    return g;
}

std::vector<metrics::registry::gauge> redis_broker::metrics() const {
    const auto s = snapshot();
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    return {
        {"herald_broker_up", "1 when every Redis link is connected (publishes are accepted).",
         ready() ? 1.0 : 0.0},
        {"herald_redis_links_down",
         "Redis links (command and pub/sub, per worker and shard) not connected.", d(s.links_down)},
        {"herald_redis_reconnects_total", "Redis reconnections.", d(s.reconnects), "counter"},
        {"herald_redis_publishes_total", "Publishes confirmed by Redis.", d(s.publishes),
         "counter"},
        {"herald_redis_publish_failures_total", "Publishes Redis did not confirm (answered 503).",
         d(s.publish_failures), "counter"},
        {"herald_redis_publish_unknown_total",
         "Publishes sent to Redis whose answer never came (answered 504 unknown).",
         d(s.publish_unknown), "counter"},
        {"herald_redis_command_timeouts_total",
         "Redis links declared down because an answer missed redis.command_timeout.",
         d(s.command_timeouts), "counter"},
        latency_histogram(),
        {"herald_redis_gaps_filled_total", "Gaps in a topic's stream filled from Redis history.",
         d(s.gaps_filled), "counter"},
        {"herald_redis_gap_messages_total", "Messages delivered by filling gaps.",
         d(s.gap_messages), "counter"},
        {"herald_redis_resets_total", "Resets sent because a gap could not be filled.",
         d(s.resets_sent), "counter"},
        {"herald_redis_control_published_total",
         "Control messages (revocations) this instance published on the control channel.",
         d(s.control_published), "counter"},
        {"herald_redis_control_received_total", "Control messages from other instances acted on.",
         d(s.control_received), "counter"},
        {"herald_redis_control_failures_total",
         "Control messages Redis did not confirm (the revocation answered 503).",
         d(s.control_failures), "counter"},
        per_shard("herald_redis_shard_up",
                  "1 when every link of this instance to the shard's master is connected.", "gauge",
                  [](const shard_stats& x) {
                      return x.cmd_down.load(std::memory_order_relaxed) == 0 &&
                                     x.sub_down.load(std::memory_order_relaxed) == 0
                                 ? 1.0
                                 : 0.0;
                  }),
        per_shard("herald_redis_shard_links_down",
                  "Links (command and pub/sub, over all workers) to the shard's master down.",
                  "gauge",
                  [](const shard_stats& x) {
                      return static_cast<double>(x.cmd_down.load(std::memory_order_relaxed) +
                                                 x.sub_down.load(std::memory_order_relaxed));
                  }),
        per_shard(
            "herald_redis_shard_failovers_total",
            "Master switches of a Sentinel shard seen by this instance.", "counter",
            [&](const shard_stats& x) { return d(x.failovers.load(std::memory_order_relaxed)); }),
        per_shard(
            "herald_redis_shard_not_master_total",
            "Connections refused because the server was not a master (ROLE, READONLY).", "counter",
            [&](const shard_stats& x) { return d(x.not_master.load(std::memory_order_relaxed)); }),
        per_shard("herald_redis_shard_sentinels_up",
                  "Sentinels of the shard that answer (Sentinel shards only; 0 otherwise).",
                  "gauge",
                  [&](const shard_stats& x) {
                      return static_cast<double>(x.sentinels_up.load(std::memory_order_relaxed));
                  }),
        per_shard(
            "herald_redis_shard_gaps_filled_total",
            "Gaps in a topic's stream filled from the shard's history.", "counter",
            [&](const shard_stats& x) { return d(x.gaps_filled.load(std::memory_order_relaxed)); }),
        per_shard(
            "herald_redis_shard_resets_total",
            "Resets sent for the shard's topics (a gap that could not be filled).", "counter",
            [&](const shard_stats& x) { return d(x.resets.load(std::memory_order_relaxed)); }),
        per_shard(
            "herald_redis_shard_publishes_total", "Publishes the shard confirmed.", "counter",
            [&](const shard_stats& x) { return d(x.publishes.load(std::memory_order_relaxed)); }),
        per_shard("herald_redis_shard_publish_seconds_total",
                  "Sum of the confirmed publishes' latency to the shard (with "
                  "herald_redis_shard_publishes_total: the mean).",
                  "counter",
                  [&](const shard_stats& x) {
                      return d(x.latency_us.load(std::memory_order_relaxed)) / 1e6;
                  }),
        per_shard(
            "herald_redis_shard_moved_total",
            "Redis Cluster: MOVED redirections followed from this node (its slot map was stale).",
            "counter",
            [&](const shard_stats& x) { return d(x.moved.load(std::memory_order_relaxed)); }),
        per_shard(
            "herald_redis_shard_ask_total",
            "Redis Cluster: ASK redirections followed from this node (a slot migrating away).",
            "counter",
            [&](const shard_stats& x) { return d(x.asked.load(std::memory_order_relaxed)); }),
        {"herald_redis_cluster_map_refreshes_total",
         "Redis Cluster: slot maps read (CLUSTER SLOTS) that changed the routing.",
         d(map_refreshes_.load(std::memory_order_relaxed)), "counter"},
        {"herald_redis_cluster_slots_unserved",
         "Redis Cluster: slots no master serves in the last map (publishes there answer 503).",
         static_cast<double>(slots_unserved_.load(std::memory_order_relaxed))},
        per_shard("herald_redis_shard_ack_failures_total",
                  "Publishes answered 503 because WAIT saw fewer than redis.replicas_ack replicas.",
                  "counter",
                  [&](const shard_stats& x) {
                      return d(x.ack_failures.load(std::memory_order_relaxed));
                  }),
    };
}

template <class F>
metrics::registry::gauge redis_broker::per_shard(const char* name, const char* help,
                                                 const char* type, F value) const {
    metrics::registry::gauge g{name, help, 0, type};
    for (std::size_t s = 0; s < shard_names_.size(); ++s) {
        if (!shard_stats_[s].assigned.load(std::memory_order_relaxed)) continue;
        g.samples.emplace_back("{shard=\"" + shard_label(s) + "\"}", value(shard_stats_[s]));
    }
    return g;
}

// A cluster shard is labelled by its master's address (it changes with a failover).
std::string redis_broker::shard_label(std::size_t s) const {
    if (!cluster_) return shard_names_[s];
    std::lock_guard lock(labels_mu_);
    return s < labels_.size() ? labels_[s] : shard_names_[s];
}

}  // namespace herald::broker
