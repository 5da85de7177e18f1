#pragma once
// Warnings for clients refused by a limit, so that an operator sees who hits which limit (a proxy
// that hides client addresses shows up as one address refused over and over). Rate-limited per
// (reason, address): the first refusal is logged at once, later ones within
// `log.rejection_interval` are counted and summarised once per interval. One per worker, used on
// its thread only: no lock. The table is bounded; refusals of addresses that do not fit are
// counted per reason and summarised too.
#include "herald/common/net.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace herald::net {

class reject_log {
public:
    enum class reason : std::uint8_t {
        new_connections_per_ip,  // 429: limits.new_connections_per_ip_per_s
        connections_per_ip,      // 429: limits.connections_per_ip
        max_connections,         // 503: limits.max_connections
        publish_rate,            // 429: limits.publishes_per_key_per_s
        count_
    };
    static constexpr std::size_t k_max_entries = 1024;

    explicit reject_log(milliseconds interval = milliseconds(60'000)) : interval_(interval) {}

    // A client at `address` was refused for `r`.
    void note(reason r, std::string_view address, time_point now = clock::now());
    // Writes the summaries of intervals that ended; called about once a second.
    void tick(time_point now);

    [[nodiscard]] std::size_t entries() const noexcept { return table_.size(); }
    void set_interval(milliseconds interval) noexcept { interval_ = interval; }

private:
    struct entry {
        time_point window_end;
        std::uint64_t suppressed = 0;
    };
    milliseconds interval_;
    std::unordered_map<std::string, entry> table_;  // key: reason byte + address
    std::array<std::uint64_t, static_cast<std::size_t>(reason::count_)> overflow_{};
    time_point overflow_window_end_{};
};

[[nodiscard]] const char* describe(reject_log::reason r) noexcept;

}  // namespace herald::net
