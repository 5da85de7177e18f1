#include "herald/auth/client_ip.hpp"
#include "herald/common/text.hpp"

#include <array>

#include <initializer_list>

namespace herald::auth {
namespace {

constexpr std::size_t k_max_entry_bytes = 64;

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::optional<ip_address> parse_address(std::string_view s) {
    if (s.empty() || s.size() > k_max_entry_bytes) return std::nullopt;
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return std::nullopt;
    }
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address(std::string(s), ec);
    if (ec) return std::nullopt;
    return unmap(a);
}

bool valid_port(std::string_view p) noexcept {
    if (p.empty() || p.size() > 5) return false;
    for (char c : p)
        if (c < '0' || c > '9') return false;
    return true;
}

// "1.2.3.4", "1.2.3.4:80", "::1", "[::1]", "[::1]:80".
std::optional<ip_address> parse_forwarded_entry(std::string_view s) {
    if (s.empty()) return std::nullopt;
    if (s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        auto after = s.substr(close + 1);
        if (!after.empty() && (after.front() != ':' || !valid_port(after.substr(1))))
            return std::nullopt;
        return parse_address(s.substr(1, close - 1));
    }
    if (auto a = parse_address(s)) return a;
    // One colon: IPv4 with a port.
    auto colon = s.find(':');
    if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos &&
        valid_port(s.substr(colon + 1))) {
        auto a = parse_address(s.substr(0, colon));
        if (a && a->is_v4()) return a;
    }
    return std::nullopt;
}

template <std::size_t N>
bool prefix_equal(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& b,
                  unsigned prefix) noexcept {
    unsigned full = prefix / 8;
    for (unsigned i = 0; i < full; ++i)
        if (a[i] != b[i]) return false;
    unsigned rest = prefix % 8;
    if (rest == 0) return true;
    auto mask = static_cast<unsigned char>(0xFF << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

template <std::size_t N>
bool host_bits_zero(const std::array<unsigned char, N>& a, unsigned prefix) noexcept {
    for (unsigned bit = prefix; bit < N * 8; ++bit)
        if (a[bit / 8] & (0x80 >> (bit % 8))) return false;
    return true;
}

}  // namespace

ip_address unmap(const ip_address& a) noexcept {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
    return a;
}

std::optional<cidr> cidr::parse(std::string_view text, std::string* why) {
    auto fail = [&](std::string w) -> std::optional<cidr> {
        if (why) *why = std::move(w);
        return std::nullopt;
    };
    text = trim(text);
    auto slash = text.find('/');
    auto a = parse_address(text.substr(0, slash));
    if (!a) return fail(cat({"'", text, "' is not an IP address or CIDR network"}));
    const unsigned max_bits = a->is_v4() ? 32 : 128;
    unsigned prefix = max_bits;
    if (slash != std::string_view::npos) {
        auto p = text.substr(slash + 1);
        if (p.empty() || p.size() > 3) return fail(cat({"invalid prefix length in '", text, "'"}));
        prefix = 0;
        for (char c : p) {
            if (c < '0' || c > '9') return fail(cat({"invalid prefix length in '", text, "'"}));
            prefix = prefix * 10 + static_cast<unsigned>(c - '0');
        }
        if (prefix > max_bits) return fail(cat({"prefix length out of range in '", text, "'"}));
    }
    bool zero = a->is_v4() ? host_bits_zero(a->to_v4().to_bytes(), prefix)
                           : host_bits_zero(a->to_v6().to_bytes(), prefix);
    if (!zero) return fail(cat({"'", text, "' has host bits set below the prefix"}));
    return cidr{*a, prefix};
}

bool cidr::contains(const ip_address& raw) const noexcept {
    auto a = unmap(raw);
    if (a.is_v4() != network.is_v4()) return false;
    if (a.is_v4()) return prefix_equal(a.to_v4().to_bytes(), network.to_v4().to_bytes(), prefix);
    return prefix_equal(a.to_v6().to_bytes(), network.to_v6().to_bytes(), prefix);
}

std::optional<std::string> trusted_proxies::add(std::string_view text) {
    std::string why;
    auto c = cidr::parse(text, &why);
    if (!c) return why;
    nets_.push_back(*c);
    return std::nullopt;
}

bool trusted_proxies::contains(const ip_address& a) const noexcept {
    for (const auto& n : nets_)
        if (n.contains(a)) return true;
    return false;
}

ip_address client_address(const ip_address& peer_raw, std::string_view xff,
                          const trusted_proxies& proxies) {
    auto candidate = unmap(peer_raw);
    if (proxies.empty() || !proxies.contains(candidate)) return candidate;
    while (!xff.empty()) {
        auto comma = xff.rfind(',');
        auto entry = trim(comma == std::string_view::npos ? xff : xff.substr(comma + 1));
        xff = comma == std::string_view::npos ? std::string_view{} : xff.substr(0, comma);
        if (entry.empty()) continue;  // "a,,b" or a trailing comma
        auto a = parse_forwarded_entry(entry);
        if (!a) return candidate;
        candidate = *a;
        if (!proxies.contains(candidate)) return candidate;
    }
    return candidate;
}

}  // namespace herald::auth
