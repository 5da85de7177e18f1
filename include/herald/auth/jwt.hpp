#pragma once
// Connection tokens: compact JWS (JWT) verified with OpenSSL 3 EVP.
//
// Only HS256, RS256 and ES256 exist here. The algorithm of every key is fixed by the
// configuration, never by the token: a token is tried only against keys configured for the `alg`
// its header names, so `alg: none`, an unknown alg, or an HS256 token "signed" with an RSA public
// key's PEM text (the classic key-confusion attack) fail before any signature arithmetic.
// Header fields that point at keys (`jwk`, `jku`, `x5u`, `x5c`) are ignored; `crit` is rejected.
//
// Thread safety: a key_set is immutable after loading; a const key_set may be shared by every
// worker (OpenSSL 3 EVP_PKEY objects are safe for concurrent read-only use).
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::auth {

inline constexpr std::size_t k_max_token_bytes = 8 * 1024;

enum class jwt_alg { hs256, rs256, es256 };

[[nodiscard]] std::string_view to_string(jwt_alg a) noexcept;
// "HS256", "RS256", "ES256" (exact case, as in the JWS header).
[[nodiscard]] std::optional<jwt_alg> parse_alg(std::string_view s) noexcept;

// One configured key. Exactly one of secret (HS256), public_key_pem or public_key_file (RS256,
// ES256) is set. The PEM may be a "PUBLIC KEY" (SPKI), an "RSA PUBLIC KEY" (PKCS#1) or a
// "CERTIFICATE" whose public key is used; private keys are refused.
struct key_spec {
    std::string alg;
    std::string secret;
    std::string public_key_pem;
    std::string public_key_file;
    std::string kid;  // optional; when set, a token carrying another `kid` skips this key
};

// Why a key_spec was refused; `field` is the spec member at fault ("alg", "secret",
// "public_key", "public_key_file", "kid"), for a config_error naming "auth.jwt.keys[2].secret".
struct key_error {
    std::string field;
    std::string message;
};

class key_set {
public:
    key_set();
    ~key_set();
    key_set(key_set&&) noexcept;
    key_set& operator=(key_set&&) noexcept;
    key_set(const key_set&) = delete;
    key_set& operator=(const key_set&) = delete;

    // Validates and adds one key; nothing is added on error. Rules: HS256 secrets are at least
    // 32 bytes (RFC 7518 §3.2) and may not be PEM text; RS256 keys are RSA of at least 2048 bits;
    // ES256 keys are EC on P-256. Files are read up to 64 KiB.
    [[nodiscard]] std::optional<key_error> add(const key_spec& spec);

    [[nodiscard]] bool empty() const noexcept;
    [[nodiscard]] std::size_t size() const noexcept;
    [[nodiscard]] bool has_alg(jwt_alg a) const noexcept;

    struct key;  // defined in jwt.cpp; opaque to users
    [[nodiscard]] const std::vector<std::unique_ptr<key>>& keys() const noexcept { return keys_; }

private:
    std::vector<std::unique_ptr<key>> keys_;
};

struct expectations {
    std::string audience;             // empty: `aud` is not checked
    std::string issuer;               // empty: `iss` is not checked
    std::chrono::seconds leeway{30};  // clock skew allowed on exp and nbf; clamped to [0, 1 day]
    bool require_exp = true;          // a token without `exp` is `missing_exp`
};

// The stable strings (to_string) are what logs, metrics labels and error replies use.
enum class jwt_status {
    ok,               // "ok"
    malformed,        // "malformed": segments, base64url, JSON, claim types, token too large
    unsupported_alg,  // "unsupported_alg": `none`, unknown, or no key configured for the alg
    unknown_key,      // "unknown_key": the `kid` names no key configured for the alg
    bad_signature,    // "bad_signature"
    expired,          // "expired"
    not_yet_valid,    // "not_yet_valid": nbf in the future
    missing_exp,      // "missing_exp": no exp while expectations.require_exp
    wrong_audience,   // "wrong_audience"
    wrong_issuer,     // "wrong_issuer"
};

[[nodiscard]] std::string_view to_string(jwt_status s) noexcept;

struct token_claims {
    std::string sub;
    std::string iss;
    std::string kid;  // from the header, empty if none
    jwt_alg alg = jwt_alg::hs256;
    std::optional<std::chrono::sys_seconds> exp;
    std::optional<std::chrono::sys_seconds> nbf;
    std::optional<std::chrono::sys_seconds> iat;
    // Topic patterns (wire::pattern_match syntax) the holder may subscribe to / publish on. Each is
    // a valid hub pattern; a token carrying an invalid one is `malformed` (fail closed).
    std::vector<std::string> topics;
    std::vector<std::string> publish;
    // The `info` claim (any JSON value) as compact JSON; empty when absent. A connect hook's
    // `info` replaces it (integration.md). Shown in presence.
    std::string info;
    // Not a claim: set by context::authorize for a reader that presented an API key, which may
    // read every topic (access.hpp). verify() never sets it, so no token can.
    bool api_key = false;
    // Not claims: set when a connect hook named the user or gave `info` (stream_gate.cpp), with
    // the token's own sub before the hook's user replaced it. A WebSocket refresh then checks
    // the new token against token_sub and keeps the hook's sub and info.
    bool from_hook = false;
    std::string token_sub;
};

struct result {
    jwt_status status = jwt_status::malformed;
    token_claims claims;  // meaningful only when status == ok
    [[nodiscard]] bool ok() const noexcept { return status == jwt_status::ok; }
};

// Verifies signature first, then the time and audience/issuer claims. Never throws; any input
// (hostile bytes included) gives a status. At most k_max_token_bytes are looked at.
[[nodiscard]] result verify(std::string_view token, const key_set& keys,
                            std::chrono::system_clock::time_point now,
                            const expectations& expect) noexcept;

}  // namespace herald::auth
