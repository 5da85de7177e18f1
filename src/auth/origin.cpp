#include "herald/auth/origin.hpp"
#include "herald/common/text.hpp"

#include <cstdint>

#include <initializer_list>

namespace herald::auth {
namespace {

constexpr std::size_t k_max_origin_bytes = 2048;

char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

struct parsed {
    std::string scheme;
    std::string host;
    std::string port;  // canonical decimal, empty for none or the scheme's default
    bool wildcard = false;
};

// A dotted host name: labels of [a-z0-9_-], none empty. `host` is already lower case.
bool valid_host_name(std::string_view host) noexcept {
    if (host.empty() || host.size() > 253) return false;
    std::size_t label = 0;
    for (char c : host) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_')) return false;
        if (++label > 63) return false;
    }
    return label > 0;
}

bool valid_ipv6_literal(std::string_view h) noexcept {
    // "[...]" holding hex digits, ':' and '.' (IPv4 tail); exact parsing is not needed to compare.
    if (h.size() < 4 || h.front() != '[' || h.back() != ']') return false;
    bool colon = false;
    for (char c : h.substr(1, h.size() - 2)) {
        if (c == ':') {
            colon = true;
        } else if (!(is_digit(c) || (c >= 'a' && c <= 'f') || c == '.')) {
            return false;
        }
    }
    return colon;
}

// Parses "scheme://host[:port]"; `allow_wildcard` permits a leading "*." label (config only).
std::optional<parsed> parse_origin(std::string_view s, bool allow_wildcard, std::string* why) {
    auto fail = [&](const char* w) -> std::optional<parsed> {
        if (why) *why = w;
        return std::nullopt;
    };
    if (s.empty() || s.size() > k_max_origin_bytes) return fail("empty or too long");
    auto sep = s.find("://");
    if (sep == std::string_view::npos || sep == 0) return fail("expected scheme://host[:port]");
    parsed p;
    for (std::size_t i = 0; i < sep; ++i) {
        char c = s[i];
        bool ok = is_alpha(c) || (i > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.'));
        if (!ok) return fail("invalid scheme");
        p.scheme += lower(c);
    }
    auto rest = s.substr(sep + 3);
    for (char c : rest) {
        if (c == '/' || c == '?' || c == '#')
            return fail("an origin has no path, query or fragment");
        if (c == '@') return fail("an origin has no user info");
    }
    std::string_view host_part = rest;
    std::string_view port_part;
    bool has_port = false;
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) return fail("unterminated IPv6 literal");
        host_part = rest.substr(0, close + 1);
        auto after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail("unexpected text after the host");
            port_part = after.substr(1);
            has_port = true;
        }
    } else if (auto colon = rest.find(':'); colon != std::string_view::npos) {
        host_part = rest.substr(0, colon);
        port_part = rest.substr(colon + 1);
        has_port = true;
    }
    if (host_part.empty()) return fail("missing host");
    p.host.reserve(host_part.size());
    for (char c : host_part) p.host += lower(c);
    if (allow_wildcard && p.host.size() > 2 && p.host.compare(0, 2, "*.") == 0) {
        p.wildcard = true;
        p.host.erase(0, 1);  // keep the dot: ".example.com"
        if (!valid_host_name(std::string_view(p.host).substr(1)))
            return fail("invalid host after '*.'");
    } else if (p.host.front() == '[') {
        if (!valid_ipv6_literal(p.host)) return fail("invalid IPv6 literal");
    } else if (!valid_host_name(p.host)) {
        return fail(allow_wildcard
                        ? "invalid host (a wildcard is only allowed as '*.' at the start)"
                        : "invalid host");
    }
    if (has_port) {
        if (port_part.empty() || port_part.size() > 5) return fail("invalid port");
        std::uint32_t v = 0;
        for (char c : port_part) {
            if (!is_digit(c)) return fail("invalid port");
            v = v * 10 + static_cast<std::uint32_t>(c - '0');
        }
        if (v == 0 || v > 65535) return fail("port out of range");
        const bool is_default = (p.scheme == "http" && v == 80) ||
                                (p.scheme == "https" && v == 443) ||
                                (p.scheme == "ws" && v == 80) || (p.scheme == "wss" && v == 443);
        if (!is_default) p.port = std::to_string(v);
    }
    return p;
}

}  // namespace

std::optional<std::string> origin_allowlist::add(std::string_view entry) {
    if (entry == "*") {
        any_ = true;
        return std::nullopt;
    }
    if (entry == "null") {
        null_ = true;
        return std::nullopt;
    }
    std::string why;
    auto p = parse_origin(entry, true, &why);
    if (!p) return cat({"invalid origin '", entry, "': ", why});
    rules_.push_back(
        rule{std::move(p->scheme), std::move(p->host), std::move(p->port), p->wildcard});
    return std::nullopt;
}

origin_allowlist::match origin_allowlist::classify(std::string_view origin) const {
    if (origin == "null") return null_ ? match::listed : (any_ ? match::any : match::none);
    auto p = parse_origin(origin, false, nullptr);
    if (p) {
        for (const auto& r : rules_) {
            if (r.scheme != p->scheme || r.port != p->port) continue;
            if (r.wildcard) {
                // ".example.com" matches "a.example.com" and "a.b.example.com"; the host is a
                // valid name, so what precedes the suffix is one or more whole labels.
                if (p->host.size() > r.host.size() &&
                    p->host.compare(p->host.size() - r.host.size(), r.host.size(), r.host) == 0)
                    return match::listed;
            } else if (r.host == p->host) {
                return match::listed;
            }
        }
    }
    // "*" admits any origin string a browser could send, but not arbitrary bytes that would be
    // echoed into a response header.
    if (any_ && origin.size() <= k_max_origin_bytes) {
        for (char c : origin)
            if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
                return match::none;
        return origin.empty() ? match::none : match::any;
    }
    return match::none;
}

bool origin_allowlist::allows(std::string_view origin) const {
    return classify(origin) != match::none;
}

std::optional<header_list> cors_headers(const origin_allowlist& allow, std::string_view origin,
                                        bool preflight, const cors_options& opts) {
    const auto m = allow.classify(origin);
    if (m == origin_allowlist::match::none) return std::nullopt;
    header_list h;
    h.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    h.emplace_back("Vary", "Origin");
    if (opts.allow_credentials && m == origin_allowlist::match::listed)
        h.emplace_back("Access-Control-Allow-Credentials", "true");
    if (preflight) {
        h.emplace_back("Access-Control-Allow-Methods", opts.allow_methods);
        h.emplace_back("Access-Control-Allow-Headers", opts.allow_headers);
        h.emplace_back("Access-Control-Max-Age", std::to_string(opts.max_age.count()));
    } else if (!opts.expose_headers.empty()) {
        h.emplace_back("Access-Control-Expose-Headers", opts.expose_headers);
    }
    return h;
}

}  // namespace herald::auth
