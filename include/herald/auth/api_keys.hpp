#pragma once
// Publisher API keys and credential extraction from request headers.
//
// Keys are kept only as SHA-256 digests. check() hashes the presented key and compares it with
// every stored digest using CRYPTO_memcmp, without stopping at a match, so neither the length of
// the keys nor which one matched shows in the timing. Immutable after loading; a const key set
// may be shared by all workers.
#include <array>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::auth {

inline constexpr std::size_t k_min_api_key_bytes = 16;
inline constexpr std::size_t k_max_api_key_bytes = 4096;

class api_key_set {
public:
    // A key is 16..4096 bytes of visible ASCII (0x21..0x7e). Returns why a key is refused.
    [[nodiscard]] std::optional<std::string> add(std::string_view key);

    // Adds every key in the environment variable `name`, separated by commas and/or whitespace
    // (so two keys can overlap during rotation). An unset or empty variable is an error: a
    // configured variable that is missing would otherwise silently lock publishers out.
    using env_lookup = std::function<std::optional<std::string>(const char*)>;
    [[nodiscard]] std::optional<std::string> add_from_env(const std::string& name,
                                                          const env_lookup& getenv);

    [[nodiscard]] bool check(std::string_view presented) const noexcept;
    // The index (in order of addition) of the matching key, e.g. to key a per-publisher rate
    // limit ("key#2") without keeping the secret around; constant time like check().
    [[nodiscard]] std::optional<std::size_t> match(std::string_view presented) const noexcept;

    [[nodiscard]] bool empty() const noexcept { return digests_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return digests_.size(); }

private:
    std::vector<std::array<unsigned char, 32>> digests_;
};

// The credentials of "Authorization: Bearer <token>" (scheme case-insensitive, RFC 6750 token68
// syntax), or nullopt when the header is absent, another scheme or malformed. The view points into
// `authorization`.
[[nodiscard]] std::optional<std::string_view> parse_bearer(std::string_view authorization) noexcept;

// The value of cookie `name` in a Cookie header ("a=1; token=xyz"), or nullopt. Double quotes
// around the value are removed. The view points into `cookie_header`.
[[nodiscard]] std::optional<std::string_view> cookie_value(std::string_view cookie_header,
                                                           std::string_view name) noexcept;

}  // namespace herald::auth
