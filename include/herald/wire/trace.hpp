#pragma once
// W3C Trace Context: the trace id of a publish's `traceparent` header, kept with the message so
// that one message can be followed in the logs (publish, owner, each worker's delivery) across
// instances. See docs/operations.md, "Following one message".
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald::wire {

// 16 bytes; all zero means "none" (W3C forbids an all-zero trace id, so nothing is lost).
struct trace_id {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    [[nodiscard]] bool empty() const noexcept { return hi == 0 && lo == 0; }
    friend bool operator==(const trace_id&, const trace_id&) = default;
};

// The trace id of a `traceparent` value "00-<32 hex>-<16 hex>-<2 hex>" (lower-case hex, version
// 00; a later version may append "-..." after the flags). nullopt for anything else, an
// all-zero trace id or parent id, or version ff: an invalid header is ignored, not an error.
[[nodiscard]] std::optional<trace_id> parse_traceparent(std::string_view v) noexcept;
// 32 lower-case hex digits.
[[nodiscard]] std::string to_hex(const trace_id& t);
// The inverse of to_hex (exactly 32 lower-case hex digits, not all zero), for the Redis entry.
[[nodiscard]] std::optional<trace_id> trace_from_hex(std::string_view hex) noexcept;

// log.trace_sample: one in `one_in` traced messages is logged at info (the others at debug; 0:
// none). The choice is a function of the trace id, so every worker and every instance with the
// same setting logs the same messages.
void set_trace_sample(std::size_t one_in) noexcept;
[[nodiscard]] bool trace_sampled(const trace_id& t) noexcept;

// One line of a message's trace: "trace <id> <what>", at info when sampled, else at debug.
// Costs one level check when the level is off.
template <class... A>
void log_trace(const trace_id& t, spdlog::format_string_t<A...> fmt, A&&... args) {
    const auto level = trace_sampled(t) ? spdlog::level::info : spdlog::level::debug;
    if (!spdlog::should_log(level)) return;
    spdlog::log(level, "trace {} {}", to_hex(t), fmt::format(fmt, std::forward<A>(args)...));
}

}  // namespace herald::wire
