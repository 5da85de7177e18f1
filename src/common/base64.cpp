#include "herald/common/text.hpp"

#include <array>
#include <cstdint>

namespace herald {
namespace {

// RFC 4648: the standard alphabet (§4) and the URL and filename safe one (§5).
constexpr char k_standard[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char k_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// -1 marks a byte outside the alphabet (int16_t: a signed char would read like a character).
using reverse_table = std::array<std::int16_t, 256>;

constexpr reverse_table make_reverse(const char* alphabet) {
    reverse_table r{};
    for (auto& v : r) v = -1;
    for (int i = 0; i < 64; ++i)
        r[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int16_t>(i);
    return r;
}
constexpr auto k_standard_reverse = make_reverse(k_standard);
constexpr auto k_url_reverse = make_reverse(k_url);

std::string encode(std::string_view in, const char* alphabet, bool pad) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v =
            (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8) | p[i + 2];
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (const std::size_t rest = in.size() - i; rest > 0) {
        std::uint32_t v = std::uint32_t(p[i]) << 16;
        if (rest == 2) v |= std::uint32_t(p[i + 1]) << 8;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        if (rest == 2) out += alphabet[(v >> 6) & 63];
        if (pad) out.append(3 - rest, '=');
    }
    return out;
}

// Decodes unpadded characters of one alphabet. `canonical`: the unused low bits of the last
// character must be zero, so that every byte string has exactly one encoding.
std::optional<std::string> decode(std::string_view in, const reverse_table& reverse,
                                  bool canonical) {
    if (in.size() % 4 == 1) return std::nullopt;  // 6 bits cannot end a byte
    std::string out;
    out.reserve(in.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : in) {
        const int v = reverse[static_cast<unsigned char>(ch)];
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    if (canonical && bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    return out;
}

}  // namespace

std::string base64_encode(std::string_view in) {
    return encode(in, k_standard, true);
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    // Padding only at the end, at most two characters; any other '=' fails in decode().
    std::size_t pad = 0;
    while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
    return decode(in.substr(0, in.size() - pad), k_standard_reverse, false);
}

std::string base64url_encode(std::string_view in) {
    return encode(in, k_url, false);
}

std::optional<std::string> base64url_decode(std::string_view in) {
    return decode(in, k_url_reverse, true);
}

}  // namespace herald
