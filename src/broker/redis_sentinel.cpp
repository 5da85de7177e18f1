#include "redis_sentinel.hpp"

#include "redis_codec.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <utility>

namespace herald::broker {

namespace redis {

namespace {
constexpr std::string_view k_switch_channel = "+switch-master";
constexpr std::size_t k_max_fields = 256;  // SENTINEL MASTER has about 40 fields

std::string_view str(const redisReply* r) {
    return std::string_view(r->str, r->len);
}

template <class T>
bool to_int(std::string_view s, T& out) {
    if (s.empty()) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}
}  // namespace

std::optional<sentinel_master> parse_sentinel_master(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0 ||
        r->elements > k_max_fields)
        return std::nullopt;
    sentinel_master m;
    bool ip = false, port = false, epoch = false;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply* k = r->element[i];
        const redisReply* v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) return std::nullopt;
        const auto key = str(k);
        if (key == "ip") {
            m.endpoint.host = std::string(str(v));
            ip = !m.endpoint.host.empty() && m.endpoint.host.size() < 256;
        } else if (key == "port") {
            port = to_int(str(v), m.endpoint.port) && m.endpoint.port != 0;
        } else if (key == "config-epoch") {
            epoch = to_int(str(v), m.config_epoch);
        }
    }
    if (!ip || !port || !epoch) return std::nullopt;
    return m;
}

std::optional<redis_endpoint> parse_switch_master(std::string_view payload,
                                                  std::string_view master) {
    std::string_view f[5];
    for (std::size_t i = 0; i < 5; ++i) {
        const auto sp = payload.find(' ');
        f[i] = payload.substr(0, sp);
        payload = sp == std::string_view::npos ? std::string_view{} : payload.substr(sp + 1);
        if (f[i].empty()) return std::nullopt;
    }
    if (!payload.empty() || f[0] != master) return std::nullopt;
    redis_endpoint ep{std::string(f[3]), 0};
    if (!to_int(f[4], ep.port) || ep.port == 0) return std::nullopt;
    return ep;
}

}  // namespace redis

sentinel_watch::sentinel_watch(asio::io_context& ioc, options opt, std::uint64_t seed)
    : opt_(std::move(opt)) {
    for (std::size_t i = 0; i < opt_.sentinels.size(); ++i) {
        auto lo = opt_.link;
        lo.endpoint = opt_.sentinels[i];
        lo.username.clear();
        lo.password.clear();
        lo.require_master = false;
        sentinel s;
        lo.heartbeat_pattern.clear();
        s.cmd = std::make_unique<redis_link>(ioc, lo, seed + 2 * i);
        lo.heartbeat_pattern = redis::heartbeat_pattern("herald-sentinel:");
        s.sub = std::make_unique<redis_link>(ioc, lo, seed + 2 * i + 1);
        links_.push_back(std::move(s));
    }
    for (std::size_t i = 0; i < links_.size(); ++i) {
        auto* cmd = links_[i].cmd.get();
        auto* sub = links_[i].sub.get();
        cmd->on_up = [this, i] { ask(links_[i]); };
        cmd->on_down = [this, i] { links_[i].asking = false; };
        sub->on_up = [sub] { sub->subscribe({std::string(redis::k_switch_channel)}); };
        sub->on_push = [this](redisReply* r) {
            const auto p = redis::parse_push(r);
            if (p.kind != redis::push::type::message || p.channel != redis::k_switch_channel)
                return;
            if (auto ep = redis::parse_switch_master(p.payload, opt_.master)) {
                spdlog::warn("redis sentinel: +switch-master '{}' to {}", opt_.master, ep->name());
                // The sentinel that announced it answers with the new config-epoch: ask rather
                // than trust an epoch-less push over a newer answer.
                query();
            }
        };
    }
}

sentinel_watch::~sentinel_watch() {
    *alive_ = false;
}

void sentinel_watch::start() {
    for (auto& s : links_) {
        s.cmd->start();
        s.sub->start();
    }
}

void sentinel_watch::query() {
    for (auto& s : links_)
        if (s.cmd->up() && !s.asking) ask(s);
}

std::size_t sentinel_watch::sentinels_up() const noexcept {
    std::size_t n = 0;
    for (const auto& s : links_) n += s.cmd->up() ? 1 : 0;
    return n;
}

void sentinel_watch::ask(sentinel& s) {
    const bool sent = s.cmd->command(
        {"SENTINEL", "MASTER", opt_.master},
        [this, &s, alive = alive_, name = s.cmd->endpoint().name()](redisReply* r, no_reply) {
            if (!*alive) return;
            s.asking = false;
            if (r == nullptr) return;  // timed out or lost: the link's own deadline handles it
            auto m = redis::parse_sentinel_master(r);
            if (!m) {
                // Logged once until a sentinel answers with a master: it is asked every second.
                if (std::exchange(quiet_, true)) return;
                spdlog::warn("redis sentinel {}: no master '{}': {}", name, opt_.master,
                             r->type == REDIS_REPLY_ERROR ? std::string_view(r->str, r->len)
                                                          : std::string_view("bad answer"));
                return;
            }
            on_answer(*m);
        });
    s.asking = sent;
}

void sentinel_watch::on_answer(const redis::sentinel_master& m) {
    quiet_ = false;
    if (m.config_epoch < config_epoch_) return;  // a sentinel that has not seen the switch yet
    if (master_ && *master_ == m.endpoint) {
        config_epoch_ = m.config_epoch;
        return;
    }
    config_epoch_ = m.config_epoch;
    spdlog::info("redis sentinel: master '{}' is {} (config-epoch {})", opt_.master,
                 m.endpoint.name(), m.config_epoch);
    master_ = m.endpoint;
    if (on_master) on_master(m.endpoint);
}

}  // namespace herald::broker
