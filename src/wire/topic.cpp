#include "herald/wire/topic.hpp"

namespace herald::wire {
namespace {
bool is_topic_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '@' || c == '=' || c == '~' || c == '-';
}
}  // namespace

bool is_valid_topic(std::string_view t) noexcept {
    if (t.empty() || t.size() > k_max_topic_bytes) return false;
    for (char c : t)
        if (!is_topic_char(c)) return false;
    return true;
}

bool is_valid_pattern(std::string_view p) noexcept {
    if (p.empty() || p.size() > k_max_topic_bytes) return false;
    for (char c : p)
        if (c != '*' && !is_topic_char(c)) return false;
    return true;
}

bool pattern_match(std::string_view p, std::string_view t) noexcept {
    // Iterative glob with single-star backtracking: linear in practice, no recursion.
    std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
    while (ti < t.size()) {
        if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = ti;
        } else if (pi < p.size() && p[pi] == t[ti]) {
            ++pi;
            ++ti;
        } else if (star != std::string_view::npos) {
            pi = star + 1;
            ti = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

bool any_match(const std::vector<std::string>& patterns, std::string_view topic) noexcept {
    for (const auto& p : patterns)
        if (pattern_match(p, topic)) return true;
    return false;
}

bool is_valid_event_name(std::string_view e) noexcept {
    if (e.empty() || e.size() > 64) return false;
    for (char c : e) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool is_valid_idempotency_key(std::string_view k) noexcept {
    if (k.empty() || k.size() > 128) return false;
    for (char c : k)
        if (c < 0x21 || c > 0x7E) return false;
    return true;
}

std::uint64_t topic_hash(std::string_view t) noexcept {
    std::uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : t) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

}  // namespace herald::wire
