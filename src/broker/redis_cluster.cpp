#include "redis_cluster.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>

namespace herald::broker::redis {

namespace {

std::string_view str(const redisReply* r) {
    return {r->str, r->len};
}

bool as_int(const redisReply* r, long long& out) {
    if (r->type == REDIS_REPLY_INTEGER) {
        out = r->integer;
        return true;
    }
    return false;
}

// [ip, port, id, ...] (Redis 7 adds a map of hostnames after the id; ignored).
std::optional<std::pair<redis_endpoint, std::string>> node_of(const redisReply* n) {
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 3) return std::nullopt;
    long long port = 0;
    if (n->element[0]->type != REDIS_REPLY_STRING || !as_int(n->element[1], port) || port <= 0 ||
        port > 65535 || n->element[2]->type != REDIS_REPLY_STRING)
        return std::nullopt;
    redis_endpoint ep;
    ep.host = std::string(str(n->element[0]));
    ep.port = static_cast<std::uint16_t>(port);
    if (ep.host.empty()) return std::nullopt;  // "?" or "" for a node not reachable yet
    return std::pair{ep, std::string(str(n->element[2]))};
}

}  // namespace

std::uint16_t crc16(std::string_view data) noexcept {
    std::uint16_t crc = 0;
    for (unsigned char c : data) {
        crc ^= static_cast<std::uint16_t>(c << 8);
        for (int i = 0; i < 8; ++i)
            crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                      : static_cast<std::uint16_t>(crc << 1);
    }
    return crc;
}

std::uint16_t key_slot(std::string_view key) noexcept {
    if (auto open = key.find('{'); open != std::string_view::npos) {
        auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1)
            key = key.substr(open + 1, close - open - 1);
    }
    return static_cast<std::uint16_t>(crc16(key) % k_slots);
}

std::optional<std::vector<cluster_master>> parse_cluster_slots(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return std::nullopt;
    std::vector<cluster_master> out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        long long from = 0;
        long long to = 0;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !as_int(e->element[0], from) ||
            !as_int(e->element[1], to) || from < 0 || to < from ||
            to >= static_cast<long long>(k_slots))
            return std::nullopt;
        auto m = node_of(e->element[2]);
        if (!m) continue;  // a master without an address yet: its slots stay unknown
        auto it = std::find_if(out.begin(), out.end(),
                               [&](const cluster_master& c) { return c.id == m->second; });
        if (it == out.end()) {
            cluster_master c;
            c.endpoint = m->first;
            c.id = m->second;
            c.nodes.push_back(m->second);
            for (std::size_t j = 3; j < e->elements; ++j) {
                if (auto rep = node_of(e->element[j])) {
                    c.nodes.push_back(rep->second);
                    c.replicas.push_back(rep->first);
                }
            }
            out.push_back(std::move(c));
            it = out.end() - 1;
        }
        it->ranges.emplace_back(static_cast<std::uint16_t>(from), static_cast<std::uint16_t>(to));
    }
    return out;
}

std::optional<redirect> parse_redirect(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ERROR) return std::nullopt;
    auto s = str(r);
    redirect out;
    if (s.starts_with("MOVED ")) {
        s.remove_prefix(6);
    } else if (s.starts_with("ASK ")) {
        out.ask = true;
        s.remove_prefix(4);
    } else {
        return std::nullopt;
    }
    const auto sp = s.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    unsigned slot = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + sp, slot);
    if (ec != std::errc() || p != s.data() + sp || slot >= k_slots) return std::nullopt;
    out.slot = static_cast<std::uint16_t>(slot);
    auto ep = parse_endpoint(s.substr(sp + 1));
    if (!ep) return std::nullopt;
    out.to = *ep;
    return out;
}

}  // namespace herald::broker::redis
