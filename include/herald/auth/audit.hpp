#pragma once
// The audit log: one JSON line per security event (authentication failures by reason,
// revocations, admin actions, sampled rate-limit and quota refusals) to its own sink (a file or
// stderr), apart from the operational log.
//
// Personal data is minimised: a client address and a user (a token's `sub`) appear only as
// pseudonyms, the first 16 hex digits of HMAC-SHA256(audit.pseudonym_key, value), so one
// client's events can be correlated without the log naming it (and the key, kept elsewhere,
// re-identifies on purpose). API keys appear as their index in auth.publish_keys ("key#0").
//
// Writing never blocks a worker: lines go to a bounded queue drained by one background thread;
// when a flood of events outruns the sink, the oldest queued lines are dropped (counted).
#include "herald/config/config.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
namespace details {
class thread_pool;
}
}  // namespace spdlog

namespace herald::auth {

class audit_log {
public:
    // Throws config::config_error when the sink cannot be opened. audit.sink "" makes a log that
    // records nothing.
    explicit audit_log(const config::settings& cfg);
    ~audit_log();
    audit_log(const audit_log&) = delete;
    audit_log& operator=(const audit_log&) = delete;

    [[nodiscard]] bool enabled() const noexcept { return logger_ != nullptr; }

    // A request or op refused for its credential: `reason` is the error code (unauthorized,
    // forbidden), `detail` the client's message (names no secret).
    void auth_failure(std::string_view reason, std::string_view detail, std::string_view client,
                      std::string_view path, std::string_view user = {});
    // Rate-limit and quota refusals, 1 in audit.sample_one_in (per worker thread).
    void refused(std::string_view reason, std::string_view client, std::string_view path);
    // An admin request: what it did (`action`, `outcome`), by whom (an API key index).
    void admin_action(std::string_view action, std::string_view outcome, std::string_view by,
                      std::string_view client, std::string_view user = {});

    [[nodiscard]] std::string pseudonym(std::string_view value) const;
    [[nodiscard]] std::uint64_t written() const noexcept {
        return written_.load(std::memory_order_relaxed);
    }

private:
    void write(std::string_view event, std::string members);

    std::shared_ptr<spdlog::details::thread_pool> pool_;
    std::shared_ptr<spdlog::logger> logger_;
    std::size_t sample_one_in_;
    std::array<unsigned char, 32> key_{};
    std::atomic<std::uint64_t> written_{0};
};

}  // namespace herald::auth
