#include "herald/app/server.hpp"

#include "herald/auth/context.hpp"
#include "herald/broker/broker.hpp"
#include "herald/hub/hub.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/hooks.hpp"
#include "herald/net/listener.hpp"
#include "herald/net/tls.hpp"
#include "herald/hub/presence.hpp"
#include "herald/net/webhooks.hpp"
#include "herald/net/worker_context.hpp"
#include "herald/wire/trace.hpp"
#include "api.hpp"
#include "reload.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <csignal>
#include <optional>
#include <random>
#include <thread>

namespace herald::app {

namespace {
constexpr auto k_tick = milliseconds(250);
constexpr std::size_t k_busiest_top = 10;  // topics per list on the admin page

std::vector<hub::quota_rule> quota_rules(const config::settings& cfg) {
    std::vector<hub::quota_rule> rules;
    for (const auto& q : cfg.quotas)
        rules.push_back({q.pattern, q.max_topics, q.max_subscribers_per_topic});
    return rules;
}

void raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    const auto before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = before;
    spdlog::info("file descriptor limit: {} (was {}, hard limit {})", rl.rlim_cur, before,
                 rl.rlim_max);
}
}  // namespace

// One event loop: its thread, io_context, shard context, listener and sweep timer.
struct worker {
    explicit worker(unsigned id) : id(id), ioc(1), tick_timer(ioc) {}
    unsigned id;
    // Declared before the io_context so it outlives it: handlers the io_context destroys at
    // shutdown may own sessions whose destructors use their worker's context.
    std::unique_ptr<net::worker_context> ctx;
    std::unique_ptr<net::hook_caller> hooks;         // null: no hook configured
    std::unique_ptr<net::webhook_emitter> webhooks;  // null: no webhook configured
    asio::io_context ioc;
    asio::steady_timer tick_timer;
    std::shared_ptr<net::listener> listener;
    std::thread thread;
};

struct server::impl {
    explicit impl(config::settings c) : cfg(std::move(c)), metrics(cfg.effective_workers()) {}

    void schedule_tick(worker& w) {
        w.tick_timer.expires_after(k_tick);
        w.tick_timer.async_wait([this, &w](error_code ec) {
            if (ec) return;
            const auto now = clock::now();
            metrics.at(w.id).loop_lag.observe(now - w.tick_timer.expiry());
            w.ctx->tick(now);
            // History expiry once a second is plenty.
            if (++w_ticks[w.id] % 4 == 0) {
                broker->on_tick(w.id, now);
                w.ctx->rejects.tick(now);
            }
            schedule_tick(w);
        });
    }

    // Revocation: every worker closes the user's connections; the count goes back to `from`.
    void revoke(unsigned from, const std::string& user, std::function<void(std::size_t)> done) {
        struct tally {
            std::size_t count = 0;
            std::size_t left = 0;
            std::function<void(std::size_t)> done;
        };
        auto t = std::make_shared<tally>();
        t->left = workers.size();
        t->done = std::move(done);
        for (auto& w : workers) {
            asio::post(w->ioc, [this, &w = *w, from, user, t] {
                const std::size_t n = w.ctx->revoke(user);
                asio::post(workers[from]->ioc, [t, n] {
                    t->count += n;
                    if (--t->left == 0) t->done(t->count);
                });
            });
        }
    }

    // Reload: reads the new file; the settings applied so far and the auth contexts replaced by
    // reloads that some worker may still use (dropped once every worker switched). Main thread.
    std::function<config::settings()> config_source;
    config::settings running;
    std::vector<std::shared_ptr<auth::context>> retired;
    // The settings snapshot of the last reload (every worker copied it; the brokers read its
    // history rules) and the ones it replaced, kept until every worker switched.
    std::shared_ptr<const config::settings> snapshot;
    std::vector<std::shared_ptr<const config::settings>> retired_snapshots;

    config::settings cfg;
    metrics::registry metrics;
    net::process_state state;
    // Outlives the workers (session destructors release slots); replaced by reloads.
    std::shared_ptr<auth::context> auth;
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<unsigned> w_ticks;
    std::unique_ptr<hub::hub> hub;
    std::unique_ptr<broker::broker> broker;
    std::unique_ptr<app::api> api;
    std::vector<std::unique_ptr<net::hook_counters>> hook_counters;
    std::vector<std::unique_ptr<net::webhook_counters>> webhook_counters;
};

namespace {
// A random id for this process: the prefix of its webhook event ids.
std::string instance_id() {
    std::random_device rd;
    static constexpr char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    std::string id;
    for (int i = 0; i < 10; ++i) id += alphabet[rd() % 36];
    return id;
}
}  // namespace

server::server(config::settings cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}
server::~server() = default;

void server::set_config_source(std::function<config::settings()> source) {
    impl_->config_source = std::move(source);
}

namespace {
std::optional<std::string> process_env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
}
}  // namespace

int server::run() {
    auto& s = *impl_;
    const unsigned n = s.cfg.effective_workers();
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);

    std::vector<asio::io_context*> contexts;
    for (unsigned i = 0; i < n; ++i) {
        s.workers.push_back(std::make_unique<worker>(i));
        contexts.push_back(&s.workers.back()->ioc);
    }
    s.w_ticks.assign(n, 0);
    s.hub = std::make_unique<hub::hub>(contexts);
    s.hub->set_quotas(quota_rules(s.cfg));
    s.hub->set_presence(s.cfg.presence.patterns, s.cfg.presence.max_clients);
    s.broker = broker::make_broker(*s.hub, s.cfg, contexts);
    s.hub->set_broker(*s.broker);
    s.api = std::make_unique<app::api>(s.cfg, s.metrics, *s.broker, s.state);
    try {
        s.auth = std::make_shared<auth::context>(s.cfg, process_env, nullptr,
                                                 std::make_shared<auth::audit_log>(s.cfg));
    } catch (const config::config_error& e) {
        spdlog::critical("config error: {}", e.what());
        return 2;
    }
    std::shared_ptr<const net::tls::context> tls;
    try {
        tls = net::tls::load_configured(s.cfg);
    } catch (const config::config_error& e) {
        spdlog::critical("config error: {}", e.what());
        return 2;
    }
    // Revocation: every worker of this instance closes the user's connections (the count goes
    // back to `from`), and the broker tells the other instances.
    s.api->set_disconnect(
        [&s](unsigned from, const std::string& user, std::function<void(std::size_t)> done) {
            s.revoke(from, user, std::move(done));
        });
    // The admin page's busiest topics: every owner shard scans a bounded share of its topics on
    // its own thread; the lists are merged on `from`.
    s.api->set_busiest([&s](unsigned from, std::function<void(hub::busiest_topics)> done) {
        struct gather {
            hub::busiest_topics all;
            std::size_t left = 0;
            std::function<void(hub::busiest_topics)> done;
        };
        auto g = std::make_shared<gather>();
        g->left = s.workers.size();
        g->done = std::move(done);
        for (auto& w : s.workers)
            asio::post(w->ioc, [&s, &w = *w, from, g] {
                auto b = s.hub->at(w.id).busiest(k_busiest_top, hub::k_busiest_scan, clock::now());
                asio::post(s.workers[from]->ioc, [g, b = std::move(b)]() mutable {
                    g->all.merge(std::move(b), k_busiest_top);
                    if (--g->left == 0) g->done(std::move(g->all));
                });
            });
    });
    s.broker->set_disconnect_handler([&s](unsigned w, const std::string& user) {
        s.revoke(w, user, [](std::size_t n) {
            spdlog::info("disconnect broadcast by another instance: closed {} connections", n);
        });
    });

    // Bind every worker's acceptor before any thread starts: with port 0 the first bind picks
    // the port and the others join it.
    tcp::endpoint ep;
    try {
        ep = tcp::endpoint(asio::ip::make_address(s.cfg.listen_host), s.cfg.listen_port);
    } catch (const std::exception&) {
        spdlog::critical("listen: '{}' is not an IP address", s.cfg.listen_host);
        return 2;
    }
    // Claimed before the workers bind with SO_REUSEPORT, held until the drain starts.
    std::optional<net::port_claim> claim;
    try {
        claim.emplace(ep);
    } catch (const net::port_in_use& e) {
        spdlog::critical("{}", e.what());
        return 1;
    } catch (const boost::system::system_error& e) {
        spdlog::critical("cannot listen on {}:{}: {}", s.cfg.listen_host, s.cfg.listen_port,
                         e.code().message());
        return 1;
    }
    const bool any_hook = !s.cfg.hooks.connect.url.empty() || !s.cfg.hooks.subscribe.url.empty() ||
                          !s.cfg.hooks.publish.url.empty();
    const std::string instance = instance_id();
    for (unsigned i = 0; i < n; ++i) {
        s.hook_counters.push_back(std::make_unique<net::hook_counters>());
        s.webhook_counters.push_back(std::make_unique<net::webhook_counters>());
    }
    // Exposed (as zeros) also when no hook or webhook is configured: dashboards and alerts
    // need not know the config.
    s.api->set_extra_metrics([&s] {
        auto out = net::hook_metrics(s.hook_counters);
        for (auto& g : net::webhook_metrics(s.webhook_counters)) out.push_back(std::move(g));
        return out;
    });
    for (auto& w : s.workers) {
        w->ctx = std::make_unique<net::worker_context>(w->id, w->ioc, s.cfg, s.hub->at(w->id),
                                                       *s.broker, s.metrics.at(w->id), s.state,
                                                       *s.api, s.auth.get(), tls);
        try {
            if (any_hook)
                w->hooks =
                    std::make_unique<net::hook_caller>(w->ioc, s.cfg, *s.hook_counters[w->id]);
            if (!s.cfg.webhooks.empty())
                w->webhooks = std::make_unique<net::webhook_emitter>(
                    w->ioc, w->id, n, s.cfg, *s.webhook_counters[w->id], instance);
        } catch (const config::config_error& e) {
            spdlog::critical("config error: {}", e.what());
            return 2;
        }
        w->ctx->hooks = w->hooks.get();
        w->ctx->webhooks = w->webhooks.get();
    }
    // occupied/vacated: with the memory broker this process sees every subscriber, so the
    // topic's owner decides, for every topic. With redis that takes a decision across instances,
    // which the presence script makes (redis_presence.cpp): there, the events come for the
    // topics of presence.patterns only. join/leave come from presence on both brokers.
    if (!s.cfg.webhooks.empty()) {
        const bool memory = s.cfg.broker == "memory";
        if (memory) {
            s.hub->set_activity_listener(
                [&s](unsigned owner, const std::string& topic, bool active) {
                    if (auto* e = s.workers[owner]->webhooks.get())
                        e->emit(active ? "occupied" : "vacated", topic, {});
                });
        }
        s.hub->set_presence_observer([&s, memory](unsigned worker, const hub::presence_change& c) {
            using kind = hub::presence_change_kind;
            const bool member = c.kind == kind::join || c.kind == kind::leave;
            if (memory && !member) return;  // the activity listener above sends these
            auto* e = s.workers[worker]->webhooks.get();
            const auto type = hub::to_string(c.kind);
            if (!e || !e->wants(type)) return;
            e->emit(type, c.topic,
                    member ? "\"client\":" + hub::presence_client_json(c.client) : std::string());
        });
    }
    for (auto& w : s.workers) {
        try {
            auto acceptor = net::open_acceptor(w->ioc, ep);
            w->listener = std::make_shared<net::listener>(*w->ctx, std::move(acceptor));
        } catch (const boost::system::system_error& e) {
            spdlog::critical("cannot listen on {}:{}: {}", s.cfg.listen_host, s.cfg.listen_port,
                             e.code().message());
            return 1;
        }
    }

    // The main thread only waits for signals, runs reloads and the drain.
    asio::io_context main_ioc(1);
    // The signals are ours before the first worker runs and before herald says it is ready: a
    // SIGTERM sent right after readiness is queued here, not lost (a process started with
    // SIGINT ignored, as a shell's background job is, would otherwise drop it) and never kills.
    // They are given up only at the end of run(), and then ignored (stop_catching_signals).
    std::optional<asio::signal_set> stop_signals(std::in_place, main_ioc, SIGINT, SIGTERM);
    std::optional<asio::signal_set> reload_signal(std::in_place, main_ioc, SIGHUP);
    auto& signals = *stop_signals;
    auto& reload = *reload_signal;
    // A reload: read the file again, apply what can change live, report the rest. Runs on the
    // main thread (reloads are serialised); nothing changes when the file or a key in it is bad.
    const auto do_reload = [&](const char* trigger) -> std::pair<bool, std::string> {
        try {
            if (!s.config_source) throw config::config_error("", "no config source");
            auto plan = plan_reload(s.running, s.config_source());
            auto fresh = std::make_shared<auth::context>(plan.next, process_env, s.auth.get());
            std::shared_ptr<const net::tls::context> cert;
            if (tls) cert = net::tls::load_configured(s.cfg);  // the same files, read again
            // Nothing can fail from here on.
            auto* old = s.auth.get();
            s.retired.push_back(std::move(s.auth));
            s.auth = std::move(fresh);
            const auto* old_snapshot = s.snapshot.get();
            if (s.snapshot) s.retired_snapshots.push_back(std::move(s.snapshot));
            s.snapshot = std::make_shared<const config::settings>(plan.next);
            broker::set_live_history(s.snapshot.get());
            s.hub->set_quotas(quota_rules(plan.next), true);
            auto left = std::make_shared<std::size_t>(s.workers.size());
            for (auto& w : s.workers)
                asio::post(w->ioc, [&s, &main_ioc, &w = *w, now = s.auth.get(), old, left, cert,
                                    snap = s.snapshot, old_snapshot] {
                    w.ctx->set_auth(now);
                    w.ctx->set_settings(*snap);
                    if (cert) w.ctx->reload_tls(cert);
                    asio::post(main_ioc, [&s, old, old_snapshot, left] {
                        if (--*left != 0) return;
                        std::erase_if(s.retired, [old](const auto& a) { return a.get() == old; });
                        std::erase_if(s.retired_snapshots, [old_snapshot](const auto& a) {
                            return a.get() == old_snapshot;
                        });
                    });
                });
            spdlog::set_level(spdlog::level::from_str(plan.next.log.level));
            wire::set_trace_sample(plan.next.log.trace_sample);
            s.running = plan.next;
            auto report = reload_report_json(plan);
            if (tls) spdlog::info("{}: TLS certificate reloaded from {}", trigger, s.cfg.tls.cert);
            spdlog::info("{}: config reloaded: {}", trigger, report);
            if (!plan.restart_required.empty())
                spdlog::warn("{}: changed keys that need a restart were left as they are: {}",
                             trigger, fmt::join(plan.restart_required, ", "));
            return {true, std::move(report)};
        } catch (const config::config_error& e) {
            spdlog::error(
                "{}: nothing reloaded (keeping the current TLS certificate and settings): {}",
                trigger, e.what());
            return {false, e.what()};
        }
    };
    s.running = s.cfg;
    s.api->set_reload([&](unsigned from, std::function<void(bool, std::string)> done) {
        asio::post(main_ioc, [&, from, done = std::move(done)] {
            auto [ok, text] = do_reload("POST /admin/reload");
            asio::post(s.workers[from]->ioc,
                       [done, ok = ok, text = std::move(text)] { done(ok, text); });
        });
    });

    for (auto& w : s.workers) {
        w->listener->start();
        s.schedule_tick(*w);
        w->thread = std::thread([&ioc = w->ioc] {
            auto guard = asio::make_work_guard(ioc);
            ioc.run();
        });
    }
    s.state.ready.store(true);
    spdlog::info("listening on {}:{} ({}{} workers, broker {})", ep.address().to_string(),
                 ep.port(), tls ? "TLS, " : "", n, s.cfg.broker);

    // SIGHUP reloads the config (see do_reload) and the TLS certificate and key from the same
    // files (certificate renewal): connections accepted afterwards get the new one, open ones
    // keep theirs.
    std::function<void(error_code, int)> on_reload = [&](error_code ec, int) {
        if (ec) return;
        const bool ok = do_reload("SIGHUP").first;
        s.auth->audit->admin_action("reload", ok ? "ok" : "bad_config", "SIGHUP", {});
        reload.async_wait(on_reload);
    };
    reload.async_wait(on_reload);
    asio::steady_timer drain_timer(main_ioc);
    time_point drain_deadline{};
    int signals_seen = 0;

    std::function<void()> check_drained = [&] {
        std::size_t open = 0;
        for (auto& w : s.workers) open += w->ctx->connection_count();
        // Webhook events (the drain's own disconnects among them) leave before the process.
        std::int64_t events = 0;
        for (const auto& c : s.webhook_counters) events += c->pending.get();
        if ((open == 0 && events <= 0) || clock::now() >= drain_deadline) {
            if (open) spdlog::warn("drain timeout: closing {} connections", open);
            if (events > 0) spdlog::warn("drain timeout: {} webhook events not delivered", events);
            signals.cancel();
            reload.cancel();
            return;  // main_ioc runs out of work and run() returns
        }
        drain_timer.expires_after(milliseconds(20));
        drain_timer.async_wait([&](error_code ec) {
            if (!ec) check_drained();
        });
    };
    // Once every listener is closed the port is free: a new instance may start (an upgrade)
    // while this one drains its connections. Runs on the main thread.
    std::size_t listening = s.workers.size();
    const std::function<void()> on_listener_closed = [&] {
        if (--listening != 0) return;
        claim->release();
        spdlog::info("stopped listening on {}:{}; a new instance may start", s.cfg.listen_host,
                     ep.port());
    };
    std::function<void(error_code, int)> on_signal = [&](error_code ec, int signo) {
        if (ec) return;
        if (++signals_seen > 1) {
            spdlog::warn("second signal: stopping now");
            drain_timer.cancel();
            reload.cancel();
            return;
        }
        spdlog::info("signal {}: draining (up to {} ms)", signo,
                     s.cfg.shutdown.drain_timeout.count());
        s.state.draining.store(true);
        drain_deadline = clock::now() + s.cfg.shutdown.drain_timeout;
        for (auto& w : s.workers)
            asio::post(w->ioc, [&w = *w, &main_ioc, &on_listener_closed] {
                w.listener->stop();
                asio::post(main_ioc, on_listener_closed);
                w.ctx->drain();
            });
        signals.async_wait(on_signal);  // a second signal stops at once
        check_drained();
    };
    signals.async_wait(on_signal);
    main_ioc.run();

    for (auto& w : s.workers) w->ioc.stop();
    for (auto& w : s.workers)
        if (w->thread.joinable()) w->thread.join();
    broker::set_live_history(nullptr);  // the snapshot goes with this server
    // The hook callers and emitters go before the io_contexts: their sockets and timers must
    // not outlive their loop; handlers still queued hold only shared parts of them.
    for (auto& w : s.workers) {
        w->ctx->hooks = nullptr;
        w->ctx->webhooks = nullptr;
        w->hooks.reset();
        w->webhooks.reset();
    }
    // A stop asked for again while the process tears down (a supervisor repeating SIGTERM, a
    // second Ctrl-C) must not kill it mid-way with the signal's default action: destroying a
    // signal_set restores that default, so the signals are ignored from here on. The stop they
    // ask for is already under way.
    stop_signals.reset();
    reload_signal.reset();
    for (int signo : {SIGINT, SIGTERM, SIGHUP}) std::signal(signo, SIG_IGN);
    spdlog::info("stopped");
    return 0;
}

}  // namespace herald::app
