// One cohesive thing, so one file (about 460 lines): verifying a JWT against the configured keys.
// Loading a key (PEM, file, type and size checks) and verifying a signature share the private
// key_set::key representation (an OpenSSL EVP_PKEY and its algorithm); split, that struct and its
// OpenSSL helpers would become a header shared by two files that nothing else may use.
#include "herald/auth/jwt.hpp"
#include "herald/common/text.hpp"

#include "herald/wire/topic.hpp"

#include <nlohmann/json.hpp>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <iterator>

#include <initializer_list>

namespace herald::auth {

struct key_set::key {
    jwt_alg alg = jwt_alg::hs256;
    std::string kid;
    std::string secret;        // HS256
    EVP_PKEY* pkey = nullptr;  // RS256, ES256; read-only after load

    key() = default;
    key(const key&) = delete;
    key& operator=(const key&) = delete;
    ~key() { EVP_PKEY_free(pkey); }
};

namespace {

using json = nlohmann::json;

constexpr std::size_t k_max_pem_bytes = 64 * 1024;
constexpr std::size_t k_max_kid_bytes = 256;
constexpr std::size_t k_hs256_min_secret = 32;
constexpr int k_rsa_min_bits = 2048;
constexpr int k_rsa_max_bits = 8192;
// NumericDate values are clamped to about +-34,000 years so arithmetic cannot overflow.
constexpr long long k_max_date = 1LL << 40;

std::string openssl_error(std::string_view fallback) {
    unsigned long e = ERR_peek_last_error();
    std::string out(fallback);
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        out += " (";
        out += buf;
        out += ")";
    }
    ERR_clear_error();
    return out;
}

struct pkey_result {
    EVP_PKEY* pkey = nullptr;
    std::string error;
};

// Decodes the first public key (SPKI or PKCS#1 RSA) or certificate in `pem`.
pkey_result load_public_pem(std::string_view pem) {
    ERR_clear_error();
    if (pem.size() > k_max_pem_bytes) return {nullptr, "PEM text is larger than 64 KiB"};
    if (pem.find("PRIVATE KEY-----") != std::string_view::npos)
        return {nullptr, "this is a private key; give herald only the public key"};
    if (pem.find("-----BEGIN ") == std::string_view::npos)
        return {nullptr, "not PEM text (no -----BEGIN line)"};

    const bool is_cert = pem.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos;
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    if (!bio) return {nullptr, openssl_error("out of memory")};
    EVP_PKEY* pkey = nullptr;
    if (is_cert) {
        X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
        if (cert) {
            pkey = X509_get_pubkey(cert);
            X509_free(cert);
        }
    } else {
        OSSL_DECODER_CTX* dctx = OSSL_DECODER_CTX_new_for_pkey(
            &pkey, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr);
        if (dctx) {
            if (OSSL_DECODER_from_bio(dctx, bio) != 1) pkey = nullptr;
            OSSL_DECODER_CTX_free(dctx);
        }
    }
    BIO_free(bio);
    if (!pkey)
        return {nullptr, openssl_error(is_cert ? "cannot read the certificate's public key"
                                               : "cannot parse the PEM public key")};
    ERR_clear_error();
    return {pkey, {}};
}

std::optional<std::string> check_key_type(EVP_PKEY* pkey, jwt_alg alg) {
    if (alg == jwt_alg::rs256) {
        if (!EVP_PKEY_is_a(pkey, "RSA")) return "RS256 needs an RSA public key";
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < k_rsa_min_bits)
            return cat({"RSA key has ", std::to_string(bits), " bits; at least 2048 needed"});
        if (bits > k_rsa_max_bits)
            return cat({"RSA key has ", std::to_string(bits), " bits; at most 8192 allowed"});
        return std::nullopt;
    }
    if (!EVP_PKEY_is_a(pkey, "EC")) return "ES256 needs an EC (P-256) public key";
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1) {
        ERR_clear_error();
        return "ES256 key has no named curve; P-256 needed";
    }
    std::string_view g(group, len);
    if (g != "prime256v1" && g != "P-256")
        return cat({"ES256 key is on curve ", g, "; P-256 needed"});
    return std::nullopt;
}

std::optional<std::string> read_small_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return cat({"cannot open '", path, "'"});
    out.clear();
    char buf[4096];
    while (in) {
        in.read(buf, sizeof buf);
        out.append(buf, static_cast<std::size_t>(in.gcount()));
        if (out.size() > k_max_pem_bytes) return cat({"'", path, "' is larger than 64 KiB"});
    }
    if (in.bad()) return cat({"cannot read '", path, "'"});
    return std::nullopt;
}

// --- signatures ------------------------------------------------------------------------------

bool verify_hs256(const key_set::key& k, std::string_view input, std::string_view sig) {
    if (sig.size() != 32) return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), k.secret.data(), static_cast<int>(k.secret.size()),
              reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len) ||
        mac_len != 32)
        return false;
    return CRYPTO_memcmp(mac, sig.data(), 32) == 0;
}

bool digest_verify(EVP_PKEY* pkey, std::string_view input, const unsigned char* sig,
                   std::size_t sig_len) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (!ctx) return false;
    bool ok =
        EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
        EVP_DigestVerify(ctx, sig, sig_len, reinterpret_cast<const unsigned char*>(input.data()),
                         input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool verify_rs256(const key_set::key& k, std::string_view input, std::string_view sig) {
    // RSASSA-PKCS1-v1_5 is the default padding of an RSA key in EVP_DigestVerify.
    if (sig.empty() || static_cast<int>(sig.size()) != EVP_PKEY_get_size(k.pkey)) return false;
    return digest_verify(k.pkey, input, reinterpret_cast<const unsigned char*>(sig.data()),
                         sig.size());
}

bool verify_es256(const key_set::key& k, std::string_view input, std::string_view sig) {
    // JWS carries r||s, 32 bytes each (RFC 7518 §3.4); EVP wants a DER ECDSA-Sig-Value.
    if (sig.size() != 64) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = ECDSA_SIG_new();
    if (!es) return false;
    BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
    if (!r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return false;
    }
    unsigned char* der = nullptr;
    int der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (der_len <= 0 || !der) return false;
    bool ok = digest_verify(k.pkey, input, der, static_cast<std::size_t>(der_len));
    OPENSSL_free(der);
    return ok;
}

bool verify_with(const key_set::key& k, std::string_view input, std::string_view sig) {
    switch (k.alg) {
        case jwt_alg::hs256: return verify_hs256(k, input, sig);
        case jwt_alg::rs256: return verify_rs256(k, input, sig);
        case jwt_alg::es256: return verify_es256(k, input, sig);
    }
    return false;
}

// --- claims ----------------------------------------------------------------------------------

std::optional<long long> numeric_date(const json& v) {
    if (v.is_number_integer() && !v.is_number_unsigned()) {
        auto x = v.get<std::int64_t>();
        return std::clamp<long long>(x, -k_max_date, k_max_date);
    }
    if (v.is_number_unsigned()) {
        auto x = v.get<std::uint64_t>();
        return x > static_cast<std::uint64_t>(k_max_date) ? k_max_date : static_cast<long long>(x);
    }
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (!std::isfinite(d)) return std::nullopt;
        if (d > static_cast<double>(k_max_date)) return k_max_date;
        if (d < -static_cast<double>(k_max_date)) return -k_max_date;
        return static_cast<long long>(std::floor(d));
    }
    return std::nullopt;
}

bool read_patterns(const json& obj, const char* name, std::vector<std::string>& out) {
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return true;
    if (!it->is_array()) return false;
    out.reserve(it->size());
    for (const auto& p : *it) {
        if (!p.is_string()) return false;
        const auto& s = p.get_ref<const std::string&>();
        if (!wire::is_valid_pattern(s)) return false;
        out.push_back(s);
    }
    return true;
}

bool read_string(const json& obj, const char* name, std::string& out) {
    auto it = obj.find(name);
    if (it == obj.end()) return true;
    if (!it->is_string()) return false;
    out = it->get<std::string>();
    return true;
}

bool read_date(const json& obj, const char* name, std::optional<std::chrono::sys_seconds>& out) {
    auto it = obj.find(name);
    if (it == obj.end()) return true;
    auto d = numeric_date(*it);
    if (!d) return false;
    out = std::chrono::sys_seconds(std::chrono::seconds(*d));
    return true;
}

result fail(jwt_status s) {
    result r;
    r.status = s;
    return r;
}

result verify_impl(std::string_view token, const key_set& keys,
                   std::chrono::system_clock::time_point now, const expectations& expect) {
    if (token.empty() || token.size() > k_max_token_bytes) return fail(jwt_status::malformed);
    const auto d1 = token.find('.');
    if (d1 == std::string_view::npos) return fail(jwt_status::malformed);
    const auto d2 = token.find('.', d1 + 1);
    if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
        return fail(jwt_status::malformed);
    const auto h64 = token.substr(0, d1);
    const auto p64 = token.substr(d1 + 1, d2 - d1 - 1);
    const auto s64 = token.substr(d2 + 1);
    if (h64.empty() || p64.empty()) return fail(jwt_status::malformed);

    auto header_text = base64url_decode(h64);
    auto payload_text = base64url_decode(p64);
    auto sig = base64url_decode(s64);
    if (!header_text || !payload_text || !sig) return fail(jwt_status::malformed);

    auto header = json::parse(*header_text, nullptr, false);
    if (header.is_discarded() || !header.is_object()) return fail(jwt_status::malformed);
    auto alg_it = header.find("alg");
    if (alg_it == header.end() || !alg_it->is_string()) return fail(jwt_status::malformed);
    auto alg = parse_alg(alg_it->get_ref<const std::string&>());
    if (!alg) return fail(jwt_status::unsupported_alg);  // includes "none"
    // No extension is understood, so any `crit` list must be refused (RFC 7515 §4.1.11).
    if (header.contains("crit")) return fail(jwt_status::malformed);
    std::string kid;
    if (!read_string(header, "kid", kid) || kid.size() > k_max_kid_bytes)
        return fail(jwt_status::malformed);

    if (!keys.has_alg(*alg)) return fail(jwt_status::unsupported_alg);
    const auto input = token.substr(0, d2);
    bool candidate = false;
    bool verified = false;
    for (const auto& k : keys.keys()) {
        if (k->alg != *alg) continue;
        if (!kid.empty() && !k->kid.empty() && k->kid != kid) continue;
        candidate = true;
        if (verify_with(*k, input, *sig)) {
            verified = true;
            break;
        }
    }
    ERR_clear_error();  // failed verifications leave entries on this thread's error queue
    if (!candidate) return fail(jwt_status::unknown_key);
    if (!verified) return fail(jwt_status::bad_signature);

    auto payload = json::parse(*payload_text, nullptr, false);
    if (payload.is_discarded() || !payload.is_object()) return fail(jwt_status::malformed);

    result r;
    auto& c = r.claims;
    c.alg = *alg;
    c.kid = std::move(kid);
    if (!read_string(payload, "sub", c.sub) || !read_string(payload, "iss", c.iss) ||
        !read_date(payload, "exp", c.exp) || !read_date(payload, "nbf", c.nbf) ||
        !read_date(payload, "iat", c.iat) || !read_patterns(payload, "topics", c.topics) ||
        !read_patterns(payload, "publish", c.publish))
        return fail(jwt_status::malformed);
    if (auto it = payload.find("info"); it != payload.end() && !it->is_null())
        c.info = it->dump(-1, ' ', false, json::error_handler_t::replace);

    bool aud_ok = expect.audience.empty();
    if (auto it = payload.find("aud"); it != payload.end()) {
        if (it->is_string()) {
            aud_ok = aud_ok || it->get_ref<const std::string&>() == expect.audience;
        } else if (it->is_array()) {
            for (const auto& a : *it) {
                if (!a.is_string()) return fail(jwt_status::malformed);
                aud_ok = aud_ok || a.get_ref<const std::string&>() == expect.audience;
            }
        } else {
            return fail(jwt_status::malformed);
        }
    }

    const auto leeway =
        std::clamp(expect.leeway, std::chrono::seconds(0), std::chrono::seconds(24 * 3600));
    const auto now_s = std::chrono::floor<std::chrono::seconds>(now);
    if (c.exp) {
        if (now_s >= *c.exp + leeway) return fail(jwt_status::expired);
    } else if (expect.require_exp) {
        return fail(jwt_status::missing_exp);
    }
    if (c.nbf && now_s + leeway < *c.nbf) return fail(jwt_status::not_yet_valid);
    if (!expect.issuer.empty() && c.iss != expect.issuer) return fail(jwt_status::wrong_issuer);
    if (!aud_ok) return fail(jwt_status::wrong_audience);

    r.status = jwt_status::ok;
    return r;
}

}  // namespace

std::string_view to_string(jwt_alg a) noexcept {
    switch (a) {
        case jwt_alg::hs256: return "HS256";
        case jwt_alg::rs256: return "RS256";
        case jwt_alg::es256: return "ES256";
    }
    return "?";
}

std::optional<jwt_alg> parse_alg(std::string_view s) noexcept {
    if (s == "HS256") return jwt_alg::hs256;
    if (s == "RS256") return jwt_alg::rs256;
    if (s == "ES256") return jwt_alg::es256;
    return std::nullopt;
}

std::string_view to_string(jwt_status s) noexcept {
    switch (s) {
        case jwt_status::ok: return "ok";
        case jwt_status::malformed: return "malformed";
        case jwt_status::unsupported_alg: return "unsupported_alg";
        case jwt_status::unknown_key: return "unknown_key";
        case jwt_status::bad_signature: return "bad_signature";
        case jwt_status::expired: return "expired";
        case jwt_status::not_yet_valid: return "not_yet_valid";
        case jwt_status::missing_exp: return "missing_exp";
        case jwt_status::wrong_audience: return "wrong_audience";
        case jwt_status::wrong_issuer: return "wrong_issuer";
    }
    return "unknown";
}

key_set::key_set() = default;
key_set::~key_set() = default;
key_set::key_set(key_set&&) noexcept = default;
key_set& key_set::operator=(key_set&&) noexcept = default;

bool key_set::empty() const noexcept {
    return keys_.empty();
}
std::size_t key_set::size() const noexcept {
    return keys_.size();
}
bool key_set::has_alg(jwt_alg a) const noexcept {
    for (const auto& k : keys_)
        if (k->alg == a) return true;
    return false;
}

std::optional<key_error> key_set::add(const key_spec& spec) {
    auto alg = parse_alg(spec.alg);
    if (!alg)
        return key_error{
            "alg", cat({"unsupported alg '", spec.alg, "' (expected HS256, RS256 or ES256)"})};
    if (spec.kid.size() > k_max_kid_bytes) return key_error{"kid", "longer than 256 bytes"};
    const int given = int(!spec.secret.empty()) + int(!spec.public_key_pem.empty()) +
                      int(!spec.public_key_file.empty());
    auto k = std::make_unique<key>();
    k->alg = *alg;
    k->kid = spec.kid;

    if (*alg == jwt_alg::hs256) {
        if (!spec.public_key_pem.empty() || !spec.public_key_file.empty())
            return key_error{spec.public_key_pem.empty() ? "public_key_file" : "public_key",
                             "HS256 takes a shared secret, not a public key"};
        if (spec.secret.empty()) return key_error{"secret", "missing (HS256 needs a secret)"};
        if (spec.secret.size() < k_hs256_min_secret)
            return key_error{"secret", "HS256 secret must be at least 32 bytes"};
        if (spec.secret.find("-----BEGIN") != std::string::npos)
            return key_error{"secret", "looks like a PEM key; use RS256/ES256 with public_key"};
        k->secret = spec.secret;
        keys_.push_back(std::move(k));
        return std::nullopt;
    }

    if (!spec.secret.empty())
        return key_error{"secret", cat({to_string(*alg), " takes a public key, not a secret"})};
    if (given != 1)
        return key_error{"public_key", "give exactly one of public_key and public_key_file"};
    std::string pem_storage;
    std::string_view pem = spec.public_key_pem;
    const char* field = "public_key";
    if (!spec.public_key_file.empty()) {
        field = "public_key_file";
        if (auto err = read_small_file(spec.public_key_file, pem_storage))
            return key_error{field, *err};
        pem = pem_storage;
    }
    auto loaded = load_public_pem(pem);
    if (!loaded.pkey) return key_error{field, loaded.error};
    k->pkey = loaded.pkey;
    if (auto err = check_key_type(k->pkey, *alg)) return key_error{field, *err};
    keys_.push_back(std::move(k));
    return std::nullopt;
}

result verify(std::string_view token, const key_set& keys,
              std::chrono::system_clock::time_point now, const expectations& expect) noexcept {
    try {
        return verify_impl(token, keys, now, expect);
    } catch (...) {
        ERR_clear_error();
        return fail(jwt_status::malformed);
    }
}

}  // namespace herald::auth
