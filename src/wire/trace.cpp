#include "herald/wire/trace.hpp"

#include <atomic>

namespace herald::wire {

namespace {

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is invalid in traceparent
}

bool read_hex(std::string_view s, std::uint64_t& out) noexcept {
    out = 0;
    for (char c : s) {
        const int d = hex_digit(c);
        if (d < 0) return false;
        out = (out << 4) | static_cast<std::uint64_t>(d);
    }
    return true;
}

bool all_hex(std::string_view s) noexcept {
    for (char c : s)
        if (hex_digit(c) < 0) return false;
    return true;
}

std::atomic<std::size_t> g_sample_one_in{0};

}  // namespace

std::optional<trace_id> trace_from_hex(std::string_view hex) noexcept {
    trace_id t;
    if (hex.size() != 32 || !read_hex(hex.substr(0, 16), t.hi) || !read_hex(hex.substr(16), t.lo))
        return std::nullopt;
    if (t.empty()) return std::nullopt;
    return t;
}

std::optional<trace_id> parse_traceparent(std::string_view v) noexcept {
    // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55 bytes.
    if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
    const auto version = v.substr(0, 2);
    if (!all_hex(version) || version == "ff") return std::nullopt;
    if (version == "00" ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
    std::uint64_t parent = 0;
    if (!read_hex(v.substr(36, 16), parent) || parent == 0) return std::nullopt;
    if (!all_hex(v.substr(53, 2))) return std::nullopt;
    return trace_from_hex(v.substr(3, 32));
}

std::string to_hex(const trace_id& t) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(32, '0');
    for (int i = 0; i < 16; ++i) {
        out[15 - i] = digits[(t.hi >> (4 * i)) & 0xf];
        out[31 - i] = digits[(t.lo >> (4 * i)) & 0xf];
    }
    return out;
}

void set_trace_sample(std::size_t one_in) noexcept {
    g_sample_one_in.store(one_in, std::memory_order_relaxed);
}

bool trace_sampled(const trace_id& t) noexcept {
    const auto n = g_sample_one_in.load(std::memory_order_relaxed);
    // The id's low bits are random (W3C asks for random ids): a fair draw, the same everywhere.
    return n != 0 && t.lo % n == 0;
}

}  // namespace herald::wire
