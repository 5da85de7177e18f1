#include "herald/auth/api_keys.hpp"
#include "herald/common/text.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <initializer_list>

namespace herald::auth {
namespace {

bool sha256(std::string_view in, std::array<unsigned char, 32>& out) noexcept {
    unsigned int len = 0;
    return EVP_Digest(in.data(), in.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
           len == 32;
}

bool is_token68_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<std::string> api_key_set::add(std::string_view key) {
    if (key.size() < k_min_api_key_bytes) return "an API key must be at least 16 bytes";
    if (key.size() > k_max_api_key_bytes) return "an API key must be at most 4096 bytes";
    for (char c : key) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e) return "an API key is visible ASCII only (no spaces or commas)";
        if (c == ',') return "an API key is visible ASCII only (no spaces or commas)";
    }
    std::array<unsigned char, 32> d{};
    if (!sha256(key, d)) return "SHA-256 failed";
    digests_.push_back(d);
    return std::nullopt;
}

std::optional<std::string> api_key_set::add_from_env(const std::string& name,
                                                     const env_lookup& getenv) {
    auto value = getenv ? getenv(name.c_str()) : std::nullopt;
    if (!value || trim(*value).empty()) return cat({"environment variable ", name, " is not set"});
    std::string_view rest = *value;
    std::size_t added = 0;
    while (!rest.empty()) {
        auto is_sep = [](char c) {
            return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
        };
        while (!rest.empty() && is_sep(rest.front())) rest.remove_prefix(1);
        std::size_t n = 0;
        while (n < rest.size() && !is_sep(rest[n])) ++n;
        if (n == 0) break;
        if (auto err = add(rest.substr(0, n)))
            return cat({"key ", std::to_string(added + 1), " in ", name, ": ", *err});
        ++added;
        rest.remove_prefix(n);
    }
    if (added == 0) return cat({"environment variable ", name, " holds no key"});
    return std::nullopt;
}

std::optional<std::size_t> api_key_set::match(std::string_view presented) const noexcept {
    std::array<unsigned char, 32> d{};
    if (presented.empty() || presented.size() > k_max_api_key_bytes || !sha256(presented, d))
        return std::nullopt;
    // Visit every digest; select the index with a mask instead of a branch.
    std::size_t found = 0;
    std::size_t any = 0;
    for (std::size_t i = 0; i < digests_.size(); ++i) {
        const std::size_t eq =
            static_cast<std::size_t>(CRYPTO_memcmp(digests_[i].data(), d.data(), 32) == 0);
        const std::size_t mask = ~(eq - 1);  // all ones when equal
        found |= (i & mask);
        any |= eq;
    }
    if (!any) return std::nullopt;
    return found;
}

bool api_key_set::check(std::string_view presented) const noexcept {
    return match(presented).has_value();
}

std::optional<std::string_view> parse_bearer(std::string_view h) noexcept {
    h = trim(h);
    constexpr std::string_view scheme = "bearer";
    if (h.size() <= scheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        char c = h[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != scheme[i]) return std::nullopt;
    }
    if (h[scheme.size()] != ' ') return std::nullopt;
    auto tok = h.substr(scheme.size());
    while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
    if (tok.empty()) return std::nullopt;
    // token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    std::size_t i = 0;
    while (i < tok.size() && is_token68_char(tok[i])) ++i;
    if (i == 0) return std::nullopt;
    while (i < tok.size() && tok[i] == '=') ++i;
    if (i != tok.size()) return std::nullopt;
    return tok;
}

std::optional<std::string_view> cookie_value(std::string_view header,
                                             std::string_view name) noexcept {
    if (name.empty()) return std::nullopt;
    while (!header.empty()) {
        auto semi = header.find(';');
        auto pair = trim(header.substr(0, semi));
        header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
        auto eq = pair.find('=');
        if (eq == std::string_view::npos) continue;
        if (trim(pair.substr(0, eq)) != name) continue;
        auto v = trim(pair.substr(eq + 1));
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        return v;
    }
    return std::nullopt;
}

}  // namespace herald::auth
