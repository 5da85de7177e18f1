#include "redis_broker.hpp"

#include "herald/wire/topic.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include <unistd.h>

namespace herald::broker {

namespace {

constexpr std::size_t k_subscribe_batch = 256;  // channels per SUBSCRIBE / UNSUBSCRIBE
constexpr unsigned k_meta_refresh_ticks = 30;   // on_tick runs once a second
constexpr unsigned k_control_worker = 0;        // the worker following the control channel

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
      shard_names_(cfg.redis.shards),
      sha_publish_(redis::script_sha(redis::publish_script)),
      sha_read_(redis::script_sha(redis::read_script)),
      control_channel_(redis::control_channel(cfg.redis.key_prefix)),
      control_shard_(redis::pick_shard(control_channel_, shard_names_)) {
    std::random_device rd;
    instance_id_ = fmt::format("{:08x}{:08x}", rd(), rd());
    shard_down_ = std::make_unique<std::atomic<std::int64_t>[]>(shard_names_.size());
    shard_seen_ = std::make_unique<std::atomic<bool>[]>(shard_names_.size());
    const auto heartbeat = redis::heartbeat_pattern(cfg.redis.key_prefix);
    for (unsigned w = 0; w < contexts.size(); ++w) {
        auto ws = std::make_unique<worker_state>();
        ws->rng.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ (w * 0x9E3779B97F4A7C15ULL));
        for (std::size_t s = 0; s < shard_names_.size(); ++s) {
            redis_link::options opt;
            auto ep = parse_endpoint(shard_names_[s]);
            if (!ep) throw std::invalid_argument("redis.shards: bad address " + shard_names_[s]);
            opt.endpoint = *ep;
            opt.connect_timeout = cfg.redis.connect_timeout;
            opt.command_timeout = cfg.redis.command_timeout;
            opt.ping_interval = cfg.redis.ping_interval;
            opt.max_backoff = cfg.redis.reconnect_max_backoff;
            shard_links l;
            const auto base = "herald-" + std::to_string(::getpid()) + "-w" + std::to_string(w);
            opt.client_name = base + "-cmd";
            l.cmd = std::make_unique<redis_link>(*contexts[w], opt, ws->rng());
            opt.client_name = base + "-sub";
            opt.heartbeat_pattern = heartbeat;
            l.sub = std::make_unique<redis_link>(*contexts[w], opt, ws->rng());
            auto* cmd = l.cmd.get();
            auto* sub = l.sub.get();
            cmd->on_up = [this, w, s, cmd] {
                on_link_up(w, s, *cmd);
                on_cmd_up(w, s);
            };
            cmd->on_down = [this, s, cmd] { on_link_down(s, *cmd); };
            sub->on_up = [this, w, s, sub] {
                on_link_up(w, s, *sub);
                on_sub_up(w, s);
            };
            sub->on_down = [this, w, s, sub] {
                on_link_down(s, *sub);
                on_sub_down(w, s);
            };
            sub->on_push = [this, w, s](redisReply* r) { on_push(w, s, r); };
            ws->shards.push_back(std::move(l));
            links_down_.fetch_add(2, std::memory_order_relaxed);
            shard_down_[s].fetch_add(2, std::memory_order_relaxed);
        }
        workers_.push_back(std::move(ws));
    }
    spdlog::info("redis: instance {}; control channel '{}' on {}", instance_id_, control_channel_,
                 shard_names_[control_shard_]);
    for (unsigned w = 0; w < contexts.size(); ++w) {
        hub_.post(w, [this, w] {
            for (auto& l : workers_[w]->shards) {
                l.cmd->start();
                l.sub->start();
            }
        });
    }
}

// Runs after the worker threads stopped: hiredis's teardown callbacks only post.
redis_broker::~redis_broker() = default;

bool redis_broker::ready() const noexcept {
    return links_down_.load(std::memory_order_relaxed) == 0;
}

std::string redis_broker::not_ready_reason() const {
    for (std::size_t s = 0; s < shard_names_.size(); ++s) {
        if (shard_down_[s].load(std::memory_order_relaxed) == 0) continue;
        return "redis shard " + shard_names_[s] +
               (shard_seen_[s].load(std::memory_order_relaxed) ? " is down"
                                                               : " is not connected yet");
    }
    return {};
}

void redis_broker::link_changed(std::size_t shard, bool up) {
    links_down_.fetch_add(up ? -1 : 1, std::memory_order_relaxed);
    shard_down_[shard].fetch_add(up ? -1 : 1, std::memory_order_relaxed);
}

void redis_broker::on_link_up(unsigned w, std::size_t shard, const redis_link& link) {
    if (link.reconnects() > 0) reconnects_.fetch_add(1, std::memory_order_relaxed);
    shard_seen_[shard].store(true, std::memory_order_relaxed);
    link_changed(shard, true);
    // The shard answers again: every other link to it, on every worker, tries now rather than
    // at the end of its own backoff, so publishing and /readyz come back together.
    for (unsigned v = 0; v < workers_.size(); ++v) {
        if (v == w) {
            workers_[v]->shards[shard].cmd->retry_now();
            workers_[v]->shards[shard].sub->retry_now();
            continue;
        }
        hub_.post(v, [this, v, shard] {
            workers_[v]->shards[shard].cmd->retry_now();
            workers_[v]->shards[shard].sub->retry_now();
        });
    }
}

void redis_broker::on_link_down(std::size_t shard, const redis_link& link) {
    link_changed(shard, false);
    if (link.timed_out()) command_timeouts_.fetch_add(1, std::memory_order_relaxed);
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
                             std::move(e.event), clock::now() - milliseconds(age));
}

void redis_broker::eval(unsigned w, redis_link& link, bool publish, std::vector<std::string> args,
                        std::size_t numkeys, reply_fn done) {
    auto a = std::make_shared<std::vector<std::string>>(std::move(args));
    auto nk = std::make_shared<std::string>(std::to_string(numkeys));
    auto argv = [this, a, nk, publish](bool by_body) {
        std::vector<std::string_view> v;
        v.reserve(a->size() + 3);
        v.emplace_back(by_body ? "EVAL" : "EVALSHA");
        if (by_body)
            v.emplace_back(publish ? redis::publish_script : redis::read_script);
        else
            v.emplace_back(publish ? sha_publish_ : sha_read_);
        v.emplace_back(*nk);
        for (const auto& s : *a) v.emplace_back(s);
        return v;
    };
    auto fail = [this, w](reply_fn& d) {
        hub_.post(w, [d = std::move(d)]() mutable { d(nullptr, no_reply::not_sent); });
    };
    auto on_reply = [&link, argv, fail, done](redisReply* r, no_reply why) mutable {
        // A restarted or flushed Redis forgot the script: send it once by body (which loads it).
        if (redis::is_error(r, "NOSCRIPT")) {
            auto d = std::move(done);
            if (!link.command(argv(true), d)) fail(d);
            return;
        }
        done(r, why);
    };
    if (!link.command(argv(false), std::move(on_reply))) fail(done);
}

void redis_broker::read(unsigned w, std::size_t shard, const std::string& topic,
                        std::uint64_t after, std::size_t limit, bool newest, reply_fn done) {
    auto& ws = *workers_[w];
    auto& link = *ws.shards[shard].cmd;
    const auto pol = policy_for(cfg_, topic);
    const auto& prefix = cfg_.redis.key_prefix;
    std::vector<std::string> args{redis::meta_key(prefix, topic),
                                  redis::history_key(prefix, topic),
                                  new_epoch(ws),
                                  std::to_string(after),
                                  std::to_string(limit),
                                  std::to_string(meta_ttl_ms(pol)),
                                  newest ? "1" : "0",
                                  std::to_string(pol.ttl.count())};
    eval(w, link, false, std::move(args), 2, std::move(done));
}

// ---------------------------------------------------------------------------------------------
// Publish

void redis_broker::publish(unsigned from, hub::publish_request req, publish_handler done) {
    auto& ws = *workers_[from];
    const auto shard = redis::pick_shard(req.topic, shard_names_);
    auto& link = *ws.shards[shard].cmd;
    if (!link.up()) {
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
    args.reserve(12);
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
    args.push_back(redis::channel(prefix, req.topic));
    args.push_back(std::to_string(meta_ttl_ms(pol)));
    const auto t0 = clock::now();
    eval(from, link, true, std::move(args), idem ? 3 : 2,
         [this, topic = std::move(req.topic), t0, done = std::move(done)](redisReply* r,
                                                                          no_reply why) mutable {
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
                 publish_failures_.fetch_add(1, std::memory_order_relaxed);
                 res.status = publish_status::unavailable;
             } else {
                 res.status = p->duplicate ? publish_status::duplicate : publish_status::ok;
                 res.epoch = std::move(p->epoch);
                 res.offset = p->offset;
                 // Instances (pub/sub links) that follow the topic, not local subscribers.
                 res.subscribers = static_cast<std::size_t>(p->receivers);
                 publishes_.fetch_add(1, std::memory_order_relaxed);
                 observe_latency(clock::now() - t0);
             }
             done(std::move(res));
         });
}

void redis_broker::observe_latency(clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    publish_latency_us_.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    const double sec = static_cast<double>(us) / 1e6;
    std::size_t b = 0;
    while (b < k_latency_bounds.size() && sec > k_latency_bounds[b]) ++b;
    latency_buckets_[b].fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Subscribe

redis_broker::topic_state& redis_broker::state_of(unsigned w, const std::string& topic) {
    auto& topics = workers_[w]->topics;
    auto it = topics.find(topic);
    if (it != topics.end()) return it->second;
    auto& st = topics[topic];
    st.shard = redis::pick_shard(topic, shard_names_);
    st.channel = redis::channel(cfg_.redis.key_prefix, topic);
    return st;
}

void redis_broker::ensure_subscribed(unsigned w, topic_state& st) {
    if (st.sub_sent || st.unsub_sent) return;
    auto& link = *workers_[w]->shards[st.shard].sub;
    if (!link.up()) return;  // on_sub_up subscribes every topic
    if (link.subscribe({st.channel})) st.sub_sent = true;
}

void redis_broker::resolve(unsigned owner, const std::string& topic,
                           const std::optional<hub::stream_pos>& since, subscribe_handler done) {
    auto& st = state_of(owner, topic);
    st.waiting.push_back({since, std::move(done)});
    ensure_subscribed(owner, st);
    drain_waiting(owner, topic, st);
}

// Resolves wait until the channel is confirmed, so the snapshot read after it and the live
// stream overlap (the hub drops what a subscription already has) instead of leaving a hole.
void redis_broker::drain_waiting(unsigned w, const std::string& topic, topic_state& st) {
    if (!st.confirmed || st.waiting.empty()) return;
    if (!workers_[w]->shards[st.shard].cmd->up()) return;  // on_cmd_up or on_tick retries
    auto waiting = std::move(st.waiting);
    st.waiting.clear();
    for (auto& p : waiting) answer_resolve(w, topic, std::move(p));
}

void redis_broker::answer_resolve(unsigned w, const std::string& topic, pending_resolve p) {
    auto& st = state_of(w, topic);
    std::uint64_t after = 0;
    std::size_t limit = 0;
    if (p.since) {
        after = p.since->offset;
        limit = cfg_.history.max_recovery;
    }
    read(w, st.shard, topic, after, limit, false,
         [this, w, topic, p = std::move(p)](redisReply* reply, no_reply) mutable {
             auto r = redis::parse_read_reply(reply);
             if (!r || r->epoch.empty()) {
                 if (reply && reply->type == REDIS_REPLY_ERROR)
                     spdlog::warn("redis resolve '{}': {}", topic,
                                  std::string_view(reply->str, reply->len));
                 // Link lost mid-way: wait again; answered when the links are back.
                 auto& st = state_of(w, topic);
                 st.waiting.push_back(std::move(p));
                 ensure_subscribed(w, st);
                 return;
             }
             hub::subscribe_result res;
             res.epoch = r->epoch;
             res.top = r->top;
             if (p.since) {
                 res.resume_requested = true;
                 const auto rec = recover_from(*r, *p.since, cfg_.history.max_recovery);
                 res.recovered = rec == recovery::ok;
                 if (res.recovered) {
                     res.replay.reserve(r->entries.size());
                     for (auto& e : r->entries)
                         res.replay.push_back(to_message(topic, std::move(e)));
                 } else {
                     res.reason = to_string(rec);
                 }
             }
             auto it = workers_[w]->topics.find(topic);
             if (it != workers_[w]->topics.end()) {
                 auto& st = it->second;
                 if (!st.known && !st.fetching && !st.need_catch_up) {
                     st.known = true;
                     st.epoch = r->epoch;
                     st.last = r->top;
                 } else if (st.known && !st.fetching && !st.need_catch_up && st.epoch != r->epoch) {
                     catch_up(w, topic, st);  // the stream was reset and no message told us yet
                 }
             }
             p.done(std::move(res));
             // The subscriber may have left while this was in flight.
             if (!hub_.at(w).has_subscribers(topic)) on_topic_idle(w, topic);
         });
}

void redis_broker::on_push(unsigned w, std::size_t shard, redisReply* reply) {
    const auto p = redis::parse_push(reply);
    if (p.channel == control_channel_) {
        if (w == k_control_worker && shard == control_shard_) on_control(w, p);
        return;
    }
    const auto t = redis::topic_of_channel(cfg_.redis.key_prefix, p.channel);
    if (t.empty()) return;
    auto& topics = workers_[w]->topics;
    const std::string topic(t);
    auto it = topics.find(topic);
    if (it == topics.end() || it->second.shard != shard) return;
    auto& st = it->second;
    switch (p.kind) {
        case redis::push::type::subscribe:
            if (!st.sub_sent) return;
            st.confirmed = true;
            if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
            drain_waiting(w, topic, st);
            return;
        case redis::push::type::unsubscribe:
            st.unsub_sent = false;
            st.sub_sent = false;
            st.confirmed = false;
            if (!st.waiting.empty() || hub_.at(w).has_subscribers(topic))
                ensure_subscribed(w, st);  // wanted again while the UNSUBSCRIBE was in flight
            else
                topics.erase(it);
            return;
        case redis::push::type::message: {
            if (!st.confirmed || st.unsub_sent) return;
            auto e = redis::decode_entry(p.payload);
            if (!e) {
                spdlog::warn("redis: undecodable message on channel '{}'", p.channel);
                return;
            }
            relay(w, topic, st, to_message(topic, std::move(*e)));
            return;
        }
        case redis::push::type::other: return;
    }
}

// Hands the topic's messages to the hub in offset order, exactly once each; anything that does
// not follow the last relayed offset goes through catch_up() first.
void redis_broker::relay(unsigned w, const std::string& topic, topic_state& st,
                         hub::message_ptr m) {
    if (st.fetching || st.need_catch_up) {
        st.held.push_back(std::move(m));
        return;
    }
    if (!st.known) {
        st.known = true;
        st.epoch = m->epoch;
        st.last = m->offset;
        hub_.at(w).dispatch(m);
        return;
    }
    if (m->epoch == st.epoch) {
        if (m->offset <= st.last) return;  // already relayed (or covered by a gap read)
        if (m->offset == st.last + 1) {
            st.last = m->offset;
            hub_.at(w).dispatch(m);
            return;
        }
    }
    st.held.push_back(std::move(m));
    catch_up(w, topic, st);
}

void redis_broker::catch_up(unsigned w, const std::string& topic, topic_state& st) {
    if (!st.confirmed || !workers_[w]->shards[st.shard].cmd->up()) {
        st.need_catch_up = true;  // after the re-SUBSCRIBE, or on_tick
        return;
    }
    st.need_catch_up = false;
    st.fetching = true;
    const auto pol = policy_for(cfg_, topic);
    // History never holds more than its size, so a larger gap cannot be filled anyway.
    const std::size_t limit = std::max<std::size_t>(pol.size, 1);
    read(w, st.shard, topic, st.last, limit, false,
         [this, w, topic, gen = st.gen, limit](redisReply* reply, no_reply) {
             auto it = workers_[w]->topics.find(topic);
             if (it == workers_[w]->topics.end() || it->second.gen != gen) return;
             auto& st = it->second;
             st.fetching = false;
             auto r = redis::parse_read_reply(reply);
             if (!r || r->epoch.empty()) {
                 st.need_catch_up = true;
                 return;
             }
             const auto rec =
                 st.known ? recover_from(*r, {st.epoch, st.last}, limit) : recovery::epoch_changed;
             if (rec == recovery::ok) {
                 const std::uint64_t missing = r->top - st.last;
                 for (auto& e : r->entries) {
                     auto m = to_message(topic, std::move(e));
                     st.last = m->offset;
                     hub_.at(w).dispatch(m);
                 }
                 if (missing > 0) {
                     gaps_filled_.fetch_add(1, std::memory_order_relaxed);
                     gap_messages_.fetch_add(missing, std::memory_order_relaxed);
                     spdlog::info("redis: topic '{}': filled a gap of {} messages from history",
                                  topic, missing);
                 }
             } else {
                 spdlog::warn(
                     "redis: topic '{}': cannot fill a gap after {}:{} ({}); reset to {}:{}", topic,
                     st.epoch, st.last, to_string(rec), r->epoch, r->top);
                 send_reset(w, topic, st, r->epoch, r->top, to_string(rec));
             }
             auto held = std::move(st.held);
             st.held.clear();
             for (auto& m : held) relay(w, topic, st, std::move(m));
         });
}

recovery redis_broker::recover_from(const redis::read_reply& r, const hub::stream_pos& pos,
                                    std::size_t max_messages) {
    auto rec = check_recovery(r.epoch, r.first, r.top, pos, max_messages);
    // The read asked for what follows pos; anything but exactly pos + 1 .. top cannot be used.
    if (rec == recovery::ok && (r.entries.size() != r.top - pos.offset ||
                                (!r.entries.empty() && r.entries.front().offset != pos.offset + 1)))
        rec = recovery::gap_too_large;
    return rec;
}

void redis_broker::send_reset(unsigned w, const std::string& topic, topic_state& st,
                              const std::string& epoch, std::uint64_t top, const char* reason) {
    st.known = true;
    st.epoch = epoch;
    st.last = top;
    resets_sent_.fetch_add(1, std::memory_order_relaxed);
    hub_.at(w).dispatch(hub::make_reset(topic, epoch, top, reason, clock::now()));
}

// ---------------------------------------------------------------------------------------------
// Control: revocation across instances

void redis_broker::broadcast_disconnect(unsigned from, std::string user, broadcast_handler done) {
    auto& link = *workers_[from]->shards[control_shard_].cmd;
    const auto payload =
        redis::encode_control({redis::control::type::disconnect, instance_id_, std::move(user)});
    auto fail = [this](broadcast_handler& d) {
        control_failures_.fetch_add(1, std::memory_order_relaxed);
        d(broadcast_result{false, 0});
    };
    // PUBLISH answers how many subscribers got the message: one per instance, this one included.
    const bool sent = link.command(
        {"PUBLISH", control_channel_, payload},
        [this, fail, done](redisReply* r, no_reply) mutable {
            if (r == nullptr || r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
                if (redis::is_error(r))
                    spdlog::warn("redis control publish: {}", std::string_view(r->str, r->len));
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
// Unsubscribe, link changes, tick

void redis_broker::on_topic_idle(unsigned owner, const std::string& topic) {
    auto& ws = *workers_[owner];
    ws.idle.push_back(topic);
    if (ws.flush_posted) return;
    ws.flush_posted = true;
    // Batched: one UNSUBSCRIBE per shard for every topic that went idle in this loop turn.
    hub_.post(owner, [this, owner] { flush_idle(owner); });
}

void redis_broker::flush_idle(unsigned w) {
    auto& ws = *workers_[w];
    ws.flush_posted = false;
    std::vector<std::vector<std::string>> batches(ws.shards.size());
    std::vector<std::vector<std::string>> topics_of(ws.shards.size());
    auto idle = std::move(ws.idle);
    ws.idle.clear();
    for (const auto& topic : idle) {
        auto it = ws.topics.find(topic);
        if (it == ws.topics.end()) continue;
        auto& st = it->second;
        if (!st.waiting.empty() || st.unsub_sent || hub_.at(w).has_subscribers(topic)) continue;
        if (st.sub_sent && ws.shards[st.shard].sub->up()) {
            st.unsub_sent = true;
            st.known = false;
            st.fetching = false;
            st.need_catch_up = false;
            st.held.clear();
            ++st.gen;
            batches[st.shard].push_back(st.channel);
            topics_of[st.shard].push_back(topic);
        } else {
            ws.topics.erase(it);
        }
    }
    for (std::size_t s = 0; s < batches.size(); ++s) {
        for (std::size_t i = 0; i < batches[s].size(); i += k_subscribe_batch) {
            const auto end = std::min(batches[s].size(), i + k_subscribe_batch);
            std::vector<std::string> chunk(batches[s].begin() + static_cast<std::ptrdiff_t>(i),
                                           batches[s].begin() + static_cast<std::ptrdiff_t>(end));
            if (!ws.shards[s].sub->unsubscribe(chunk))
                for (std::size_t j = i; j < end; ++j) ws.topics.erase(topics_of[s][j]);
        }
    }
}

void redis_broker::on_sub_up(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    if (w == k_control_worker && shard == control_shard_)
        ws.shards[shard].sub->subscribe({control_channel_});
    std::vector<std::string> chunk;
    std::vector<topic_state*> sent;
    auto flush = [&] {
        if (chunk.empty()) return;
        if (ws.shards[shard].sub->subscribe(chunk))
            for (auto* st : sent) st->sub_sent = true;
        chunk.clear();
        sent.clear();
    };
    for (auto& [topic, st] : ws.topics) {
        if (st.shard != shard || st.sub_sent) continue;
        chunk.push_back(st.channel);
        sent.push_back(&st);
        if (chunk.size() >= k_subscribe_batch) flush();
    }
    flush();
}

void redis_broker::on_sub_down(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    for (auto it = ws.topics.begin(); it != ws.topics.end();) {
        auto& st = it->second;
        if (st.shard != shard) {
            ++it;
            continue;
        }
        st.sub_sent = false;
        st.confirmed = false;
        if (st.unsub_sent) {
            st.unsub_sent = false;
            if (st.waiting.empty() && !hub_.at(w).has_subscribers(it->first)) {
                it = ws.topics.erase(it);
                continue;
            }
        }
        // Whatever was published while the link was down comes from history.
        if (st.known) st.need_catch_up = true;
        ++it;
    }
}

void redis_broker::on_cmd_up(unsigned w, std::size_t shard) {
    auto& ws = *workers_[w];
    auto& link = *ws.shards[shard].cmd;
    // Load the scripts at once; EVALSHA falls back to EVAL should Redis forget them later.
    link.command({"SCRIPT", "LOAD", redis::publish_script}, [](redisReply*, no_reply) {});
    link.command({"SCRIPT", "LOAD", redis::read_script}, [](redisReply*, no_reply) {});
    for (auto& [topic, st] : ws.topics) {
        if (st.shard != shard) continue;
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        drain_waiting(w, topic, st);
    }
}

void redis_broker::on_tick(unsigned w, time_point) {
    auto& ws = *workers_[w];
    const bool refresh = ++ws.ticks % k_meta_refresh_ticks == 0;
    for (auto& [topic, st] : ws.topics) {
        if (st.need_catch_up && !st.fetching) catch_up(w, topic, st);
        if (!st.waiting.empty()) drain_waiting(w, topic, st);
        // A followed topic keeps its epoch however long it stays quiet, as in memory.
        if (refresh && st.confirmed) {
            auto& link = *ws.shards[st.shard].cmd;
            link.command({"PEXPIRE", redis::meta_key(cfg_.redis.key_prefix, topic),
                          std::to_string(meta_ttl_ms(policy_for(cfg_, topic)))},
                         [](redisReply*, no_reply) {});
        }
    }
}

// ---------------------------------------------------------------------------------------------
// History

void redis_broker::history(unsigned from, const std::string& topic,
                           std::optional<hub::stream_pos> since, std::size_t limit,
                           history_handler done) {
    const auto shard = redis::pick_shard(topic, shard_names_);
    if (!workers_[from]->shards[shard].cmd->up()) {
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
    };
}

}  // namespace herald::broker
