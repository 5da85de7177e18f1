#include "herald/net/reject_log.hpp"

#include <spdlog/spdlog.h>

namespace herald::net {

const char* describe(reject_log::reason r) noexcept {
    switch (r) {
        case reject_log::reason::new_connections_per_ip:
            return "too many new connections from this address "
                   "(limits.new_connections_per_ip_per_s; 429 rate_limited)";
        case reject_log::reason::connections_per_ip:
            return "too many connections from this address "
                   "(limits.connections_per_ip; 429 rate_limited)";
        case reject_log::reason::max_connections:
            return "the server is at limits.max_connections (503 over_capacity)";
        case reject_log::reason::publish_rate:
            return "too many publishes (limits.publishes_per_key_per_s; 429 rate_limited)";
        case reject_log::reason::count_: break;
    }
    return "?";
}

void reject_log::note(reason r, std::string_view address, time_point now) {
    std::string key;
    key.reserve(1 + address.size());
    key += static_cast<char>(r);
    key += address;
    if (auto it = table_.find(key); it != table_.end()) {
        ++it->second.suppressed;
        return;
    }
    if (table_.size() >= k_max_entries) {
        // Bounded: a flood from many addresses is summarised per reason, not per address.
        if (overflow_window_end_ == time_point{}) overflow_window_end_ = now + interval_;
        ++overflow_[static_cast<std::size_t>(r)];
        return;
    }
    table_.emplace(std::move(key), entry{now + interval_, 0});
    spdlog::warn(
        "rejected {}: {}; further rejections of this address for this reason are "
        "summarised every {} s",
        address, describe(r), std::chrono::duration_cast<std::chrono::seconds>(interval_).count());
}

void reject_log::tick(time_point now) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(interval_).count();
    for (auto it = table_.begin(); it != table_.end();) {
        auto& e = it->second;
        if (now < e.window_end) {
            ++it;
            continue;
        }
        if (e.suppressed == 0) {
            it = table_.erase(it);  // quiet for a whole interval: the next one is logged at once
            continue;
        }
        const auto r = static_cast<reason>(it->first[0]);
        spdlog::warn("rejected {}: {}: {} more in the last {} s",
                     std::string_view(it->first).substr(1), describe(r), e.suppressed, secs);
        e.suppressed = 0;
        e.window_end = now + interval_;
        ++it;
    }
    if (overflow_window_end_ != time_point{} && now >= overflow_window_end_) {
        for (std::size_t i = 0; i < overflow_.size(); ++i) {
            if (overflow_[i] == 0) continue;
            spdlog::warn("rejected {} more clients from other addresses in the last {} s: {}",
                         overflow_[i], secs, describe(static_cast<reason>(i)));
            overflow_[i] = 0;
        }
        overflow_window_end_ = time_point{};
    }
}

}  // namespace herald::net
