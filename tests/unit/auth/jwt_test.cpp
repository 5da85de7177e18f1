#include "herald/auth/jwt.hpp"

#include "herald/common/text.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <unistd.h>

using namespace herald::auth;
using herald::base64url_decode;
using herald::base64url_encode;
using json = nlohmann::json;
using std::chrono::seconds;

namespace {

// --- a small signer, used only by the tests --------------------------------------------------

struct pkey_deleter {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

pkey_ptr make_rsa(unsigned bits = 2048) {
    return pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
}
pkey_ptr make_ec(const char* curve = "P-256") {
    return pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
}

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return s;
}
std::string public_pem(EVP_PKEY* k) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, k);
    return bio_text(bio);
}
std::string private_pem(EVP_PKEY* k) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
    return bio_text(bio);
}

std::string digest_sign(EVP_PKEY* k, const std::string& input) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, k), 1);
    EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &len,
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()),
              1);
    std::string sig(len, '\0');
    EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()),
              1);
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    return sig;
}

// DER ECDSA-Sig-Value to JWS r||s.
std::string der_to_raw(const std::string& der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(s), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(s), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(s);
    return raw;
}

std::string hmac(const std::string& secret, const std::string& input) {
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return std::string(reinterpret_cast<char*>(mac), len);
}

// Signs raw header and payload texts as given (so tests can sign malformed JSON).
std::string sign_raw(const std::string& header, const std::string& payload, const std::string& alg,
                     EVP_PKEY* k, const std::string& secret = {}) {
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    std::string sig;
    if (alg == "HS256")
        sig = hmac(secret, input);
    else if (alg == "RS256")
        sig = digest_sign(k, input);
    else if (alg == "ES256")
        sig = der_to_raw(digest_sign(k, input));
    return input + "." + base64url_encode(sig);
}

std::string sign(const json& header, const json& payload, EVP_PKEY* k,
                 const std::string& secret = {}) {
    return sign_raw(header.dump(), payload.dump(), header.at("alg").get<std::string>(), k, secret);
}

const std::string k_secret = "0123456789abcdef0123456789abcdef-hs256-test-secret";
const auto k_now = std::chrono::system_clock::time_point(seconds(1'700'000'000));
constexpr long long k_now_s = 1'700'000'000;

json claims_json(long long exp_offset = 3600) {
    return {{"sub", "user-1"},
            {"exp", k_now_s + exp_offset},
            {"topics", {"news", "chat:room-*"}},
            {"publish", {"chat:room-1"}}};
}

class Jwt : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        rsa_ = make_rsa().release();
        rsa_other_ = make_rsa().release();
        ec_ = make_ec().release();
        ec_other_ = make_ec().release();
    }
    static void TearDownTestSuite() {
        for (auto* k : {rsa_, rsa_other_, ec_, ec_other_}) EVP_PKEY_free(k);
    }

    static key_set all_keys() {
        key_set ks;
        EXPECT_FALSE(ks.add({"HS256", k_secret, "", "", ""}));
        EXPECT_FALSE(ks.add({"RS256", "", public_pem(rsa_), "", ""}));
        EXPECT_FALSE(ks.add({"ES256", "", public_pem(ec_), "", ""}));
        return ks;
    }
    static key_set only(const std::string& alg) {
        key_set ks;
        std::optional<key_error> err;
        if (alg == "HS256") err = ks.add({"HS256", k_secret, "", "", ""});
        if (alg == "RS256") err = ks.add({"RS256", "", public_pem(rsa_), "", ""});
        if (alg == "ES256") err = ks.add({"ES256", "", public_pem(ec_), "", ""});
        EXPECT_FALSE(err);
        EXPECT_EQ(ks.size(), 1u);
        return ks;
    }
    static std::string token(const std::string& alg, const json& payload = claims_json()) {
        EVP_PKEY* k = alg == "RS256" ? rsa_ : alg == "ES256" ? ec_ : nullptr;
        return sign({{"alg", alg}, {"typ", "JWT"}}, payload, k, k_secret);
    }
    static jwt_status check(const std::string& tok, const key_set& ks, const expectations& e = {}) {
        return verify(tok, ks, k_now, e).status;
    }

    static inline EVP_PKEY* rsa_ = nullptr;
    static inline EVP_PKEY* rsa_other_ = nullptr;
    static inline EVP_PKEY* ec_ = nullptr;
    static inline EVP_PKEY* ec_other_ = nullptr;
};

}  // namespace

TEST(JwtStatus, StableStrings) {
    EXPECT_EQ(to_string(jwt_status::ok), "ok");
    EXPECT_EQ(to_string(jwt_status::expired), "expired");
    EXPECT_EQ(to_string(jwt_status::bad_signature), "bad_signature");
    EXPECT_EQ(to_string(jwt_status::malformed), "malformed");
    EXPECT_EQ(to_string(jwt_status::unsupported_alg), "unsupported_alg");
    EXPECT_EQ(to_string(jwt_status::wrong_audience), "wrong_audience");
    EXPECT_EQ(to_string(jwt_status::wrong_issuer), "wrong_issuer");
    EXPECT_EQ(to_string(jwt_status::not_yet_valid), "not_yet_valid");
    EXPECT_EQ(to_string(jwt_status::unknown_key), "unknown_key");
    EXPECT_EQ(to_string(jwt_status::missing_exp), "missing_exp");
    EXPECT_EQ(to_string(jwt_alg::es256), "ES256");
    EXPECT_EQ(parse_alg("RS256"), jwt_alg::rs256);
    EXPECT_FALSE(parse_alg("rs256"));
    EXPECT_FALSE(parse_alg("none"));
}

TEST_F(Jwt, ValidTokensOfEachAlg) {
    auto ks = all_keys();
    for (std::string alg : {"HS256", "RS256", "ES256"}) {
        auto r = verify(token(alg), ks, k_now, {});
        ASSERT_EQ(r.status, jwt_status::ok) << alg << ": " << to_string(r.status);
        EXPECT_TRUE(r.ok());
        EXPECT_EQ(r.claims.sub, "user-1");
        ASSERT_TRUE(r.claims.exp);
        EXPECT_EQ(r.claims.exp->time_since_epoch().count(), k_now_s + 3600);
        EXPECT_EQ(r.claims.topics, (std::vector<std::string>{"news", "chat:room-*"}));
        EXPECT_EQ(r.claims.publish, (std::vector<std::string>{"chat:room-1"}));
        EXPECT_EQ(to_string(r.claims.alg), alg);
        // Each alg is also accepted when its key is the only one.
        EXPECT_EQ(check(token(alg), only(alg)), jwt_status::ok) << alg;
    }
}

TEST_F(Jwt, ForgedSignatures) {
    auto ks = all_keys();
    for (std::string alg : {"HS256", "RS256", "ES256"}) {
        auto tok = token(alg);
        // One flipped bit in the signature.
        auto dot = tok.rfind('.');
        auto sig = *base64url_decode(tok.substr(dot + 1));
        sig[sig.size() / 2] ^= 0x01;
        EXPECT_EQ(check(tok.substr(0, dot + 1) + base64url_encode(sig), ks),
                  jwt_status::bad_signature)
            << alg;
        // A payload changed after signing.
        auto parts_dot = tok.find('.');
        auto forged_payload = claims_json();
        forged_payload["sub"] = "admin";
        forged_payload["topics"] = {"*"};
        auto forged = tok.substr(0, parts_dot + 1) + base64url_encode(forged_payload.dump()) +
                      tok.substr(dot);
        EXPECT_EQ(check(forged, ks), jwt_status::bad_signature) << alg;
        // Truncated or empty signature.
        EXPECT_EQ(check(tok.substr(0, dot + 1), ks), jwt_status::bad_signature) << alg;
        EXPECT_EQ(check(tok.substr(0, dot + 1) + base64url_encode(sig.substr(0, 10)), ks),
                  jwt_status::bad_signature)
            << alg;
    }
    // Signed by another key of the right type.
    auto payload = claims_json();
    EXPECT_EQ(check(sign({{"alg", "RS256"}}, payload, rsa_other_), ks), jwt_status::bad_signature);
    EXPECT_EQ(check(sign({{"alg", "ES256"}}, payload, ec_other_), ks), jwt_status::bad_signature);
    EXPECT_EQ(check(sign({{"alg", "HS256"}}, payload, nullptr, k_secret + "x"), ks),
              jwt_status::bad_signature);
    // An all-zero ES256 signature (r = s = 0) is invalid, not a crash.
    auto tok = token("ES256");
    EXPECT_EQ(
        check(tok.substr(0, tok.rfind('.') + 1) + base64url_encode(std::string(64, '\0')), ks),
        jwt_status::bad_signature);
}

TEST_F(Jwt, AlgNoneIsRefused) {
    auto ks = all_keys();
    auto payload = base64url_encode(claims_json().dump());
    for (std::string alg : {"none", "None", "NONE", "nOnE", ""}) {
        auto h = base64url_encode(json{{"alg", alg}, {"typ", "JWT"}}.dump());
        EXPECT_EQ(check(h + "." + payload + ".", ks), jwt_status::unsupported_alg) << alg;
        // Even with something in the signature segment.
        EXPECT_EQ(check(h + "." + payload + "." + base64url_encode("xx"), ks),
                  jwt_status::unsupported_alg);
    }
    // Missing or non-string alg.
    EXPECT_EQ(check(base64url_encode(R"({"typ":"JWT"})") + "." + payload + ".", ks),
              jwt_status::malformed);
    EXPECT_EQ(check(base64url_encode(R"({"alg":null})") + "." + payload + ".", ks),
              jwt_status::malformed);
    EXPECT_EQ(check(base64url_encode(R"({"alg":256})") + "." + payload + ".", ks),
              jwt_status::malformed);
}

TEST_F(Jwt, AlgNotConfiguredForAnyKey) {
    EXPECT_EQ(check(token("ES256"), only("RS256")), jwt_status::unsupported_alg);
    EXPECT_EQ(check(token("RS256"), only("ES256")), jwt_status::unsupported_alg);
    EXPECT_EQ(check(token("HS256"), only("RS256")), jwt_status::unsupported_alg);
    EXPECT_EQ(check(token("RS256"), only("HS256")), jwt_status::unsupported_alg);
    EXPECT_EQ(check(token("HS256"), key_set{}), jwt_status::unsupported_alg);
    // Known-but-unsupported algs, HMAC'd with the configured secret for good measure.
    for (std::string alg : {"HS384", "HS512", "RS512", "PS256", "ES384", "EdDSA"}) {
        auto tok =
            sign_raw(json{{"alg", alg}}.dump(), claims_json().dump(), "HS256", nullptr, k_secret);
        EXPECT_EQ(check(tok, all_keys()), jwt_status::unsupported_alg) << alg;
    }
}

TEST_F(Jwt, RsaPublicKeyAsHmacSecretConfusion) {
    // The classic attack: take the server's RSA public key (public!), use its PEM text as an
    // HMAC secret, and claim alg HS256.
    const auto pem = public_pem(rsa_);
    auto forged = sign({{"alg", "HS256"}, {"typ", "JWT"}}, claims_json(), nullptr, pem);
    EXPECT_EQ(check(forged, only("RS256")), jwt_status::unsupported_alg);
    // Also when an (unrelated) HS256 key exists: the RSA key is never used as an HMAC secret.
    EXPECT_EQ(check(forged, all_keys()), jwt_status::bad_signature);
    // The DER form of the key too.
    EXPECT_EQ(check(sign({{"alg", "HS256"}}, claims_json(), nullptr, *base64url_decode("AAAA")),
                    only("RS256")),
              jwt_status::unsupported_alg);
    // And the loader refuses to take a PEM key as an HMAC secret at all.
    key_set ks;
    auto err = ks.add({"HS256", pem, "", "", ""});
    ASSERT_TRUE(err);
    EXPECT_EQ(err->field, "secret");
    EXPECT_TRUE(ks.empty());
}

TEST_F(Jwt, KeyLoaderRejectsBadKeys) {
    key_set ks;
    auto expect_err = [&](const key_spec& s, const std::string& field) {
        auto e = ks.add(s);
        ASSERT_TRUE(e) << s.alg;
        EXPECT_EQ(e->field, field) << e->message;
        EXPECT_FALSE(e->message.empty());
    };
    expect_err({"HS512", k_secret, "", "", ""}, "alg");
    expect_err({"none", "", "", "", ""}, "alg");
    expect_err({"HS256", "short", "", "", ""}, "secret");
    expect_err({"HS256", "", "", "", ""}, "secret");
    expect_err({"HS256", "", public_pem(rsa_), "", ""}, "public_key");
    expect_err({"RS256", k_secret, "", "", ""}, "secret");
    expect_err({"RS256", "", "", "", ""}, "public_key");
    expect_err({"RS256", "", public_pem(ec_), "", ""}, "public_key");   // EC key for RS256
    expect_err({"ES256", "", public_pem(rsa_), "", ""}, "public_key");  // RSA key for ES256
    {
        auto p384 = make_ec("P-384");
        expect_err({"ES256", "", public_pem(p384.get()), "", ""}, "public_key");
        auto small = make_rsa(1024);
        expect_err({"RS256", "", public_pem(small.get()), "", ""}, "public_key");
    }
    expect_err({"RS256", "", private_pem(rsa_), "", ""}, "public_key");
    expect_err({"RS256", "", "not a pem", "", ""}, "public_key");
    expect_err(
        {"RS256", "", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", ""},
        "public_key");
    expect_err({"RS256", "", "", "/nonexistent/herald/key.pem", ""}, "public_key_file");
    expect_err({"ES256", "", public_pem(ec_), "/tmp/x.pem", ""}, "public_key");
    expect_err({"RS256", "", public_pem(rsa_), "", std::string(300, 'k')}, "kid");
    EXPECT_TRUE(ks.empty());
    EXPECT_EQ(check(token("RS256"), ks), jwt_status::unsupported_alg);
}

TEST_F(Jwt, KeyFromFileAndCertificate) {
    char path[] = "/tmp/herald-jwt-test-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    auto pem = public_pem(ec_);
    ASSERT_EQ(write(fd, pem.data(), pem.size()), static_cast<ssize_t>(pem.size()));
    close(fd);
    key_set ks;
    EXPECT_FALSE(ks.add({"ES256", "", "", path, ""}));
    std::remove(path);
    EXPECT_EQ(check(token("ES256"), ks), jwt_status::ok);

    // A self-signed certificate: its public key is used.
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, rsa_);
    X509_sign(cert, rsa_, EVP_sha256());
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    X509_free(cert);
    key_set ks2;
    auto err = ks2.add({"RS256", "", bio_text(bio), "", ""});
    EXPECT_FALSE(err) << err->message;
    EXPECT_EQ(check(token("RS256"), ks2), jwt_status::ok);
}

TEST_F(Jwt, ExpiryAndNotBefore) {
    auto ks = only("HS256");
    expectations e;
    e.leeway = seconds(30);
    EXPECT_EQ(check(token("HS256", claims_json(-31)), ks, e), jwt_status::expired);
    EXPECT_EQ(check(token("HS256", claims_json(-30)), ks, e), jwt_status::expired);
    EXPECT_EQ(check(token("HS256", claims_json(-29)), ks, e), jwt_status::ok);
    EXPECT_EQ(check(token("HS256", claims_json(-1'000'000)), ks, e), jwt_status::expired);
    e.leeway = seconds(0);
    EXPECT_EQ(check(token("HS256", claims_json(0)), ks, e), jwt_status::expired);
    EXPECT_EQ(check(token("HS256", claims_json(1)), ks, e), jwt_status::ok);
    // A float NumericDate and absurd values.
    auto p = claims_json();
    p["exp"] = static_cast<double>(k_now_s) - 0.5;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::expired);
    p["exp"] = 1e300;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::ok);
    p["exp"] = -1e300;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::expired);
    p["exp"] = std::numeric_limits<std::int64_t>::min();
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::expired);
    p["exp"] = std::numeric_limits<std::uint64_t>::max();
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::ok);
    p["exp"] = "tomorrow";
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::malformed);
    p["exp"] = true;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::malformed);

    // nbf
    e.leeway = seconds(30);
    p = claims_json();
    p["nbf"] = k_now_s + 31;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::not_yet_valid);
    p["nbf"] = k_now_s + 30;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::ok);
    p["nbf"] = k_now_s - 100;
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::ok);

    // Missing exp.
    p = claims_json();
    p.erase("exp");
    EXPECT_EQ(check(token("HS256", p), ks, e), jwt_status::missing_exp);
    e.require_exp = false;
    auto r = verify(token("HS256", p), ks, k_now, e);
    EXPECT_EQ(r.status, jwt_status::ok);
    EXPECT_FALSE(r.claims.exp);
    // Leeway is clamped: a negative one acts as zero.
    e.leeway = seconds(-1000);
    EXPECT_EQ(check(token("HS256", claims_json(1)), ks, e), jwt_status::ok);
}

TEST_F(Jwt, AudienceAndIssuer) {
    auto ks = only("ES256");
    expectations e;
    e.audience = "herald";
    e.issuer = "https://id.example.com/";
    auto p = claims_json();
    p["iss"] = "https://id.example.com/";
    p["aud"] = "herald";
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::ok);
    p["aud"] = json::array({"other", "herald"});
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::ok);
    p["aud"] = json::array({"other", "Herald"});
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_audience);
    p["aud"] = json::array();
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_audience);
    p["aud"] = "heraldx";
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_audience);
    p.erase("aud");
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_audience);
    p["aud"] = 5;
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::malformed);
    p["aud"] = json::array({"herald", 5});
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::malformed);

    p["aud"] = "herald";
    p["iss"] = "https://evil.example.com/";
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_issuer);
    p.erase("iss");
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::wrong_issuer);
    p["iss"] = 1;
    EXPECT_EQ(check(token("ES256", p), ks, e), jwt_status::malformed);

    // Not configured: not checked.
    p = claims_json();
    p["aud"] = "anything";
    p["iss"] = "anyone";
    EXPECT_EQ(check(token("ES256", p), ks, {}), jwt_status::ok);
}

TEST_F(Jwt, MalformedInputs) {
    auto ks = all_keys();
    auto good = token("HS256");
    auto d1 = good.find('.');
    auto d2 = good.rfind('.');
    const auto h = good.substr(0, d1);
    const auto p = good.substr(d1 + 1, d2 - d1 - 1);
    const auto s = good.substr(d2 + 1);
    for (const std::string& bad :
         std::vector<std::string>{"",
                                  ".",
                                  "..",
                                  "...",
                                  "abc",
                                  h,
                                  h + "." + p,
                                  h + "." + p + "." + s + ".",
                                  h + "." + p + "." + s + "." + s,
                                  "." + p + "." + s,
                                  h + ".." + s,
                                  h + "." + p + "." + s + "=",
                                  h + "=." + p + "." + s,
                                  h + "." + p + "+." + s,
                                  h + "." + p + "." + s.substr(0, s.size() - 1) + "/",
                                  " " + good,
                                  good + " ",
                                  good + "\n",
                                  std::string(good).insert(5, 1, '\0'),
                                  "Bearer " + good}) {
        EXPECT_EQ(check(bad, ks), jwt_status::malformed) << bad;
    }
    // Header that is not JSON, or JSON but not an object.
    for (std::string header : {"not json", "[1,2]", "\"HS256\"", "null", "{\"alg\":\"HS256\"",
                               "{\"alg\":\"HS256\",\"kid\":5}"}) {
        auto tok = sign_raw(header, claims_json().dump(), "HS256", nullptr, k_secret);
        EXPECT_EQ(check(tok, ks), jwt_status::malformed) << header;
    }
    // Signed correctly, but the payload is not a JSON object.
    for (std::string payload :
         {"not json", "[]", "42", "\"sub\"", "null", "{\"sub\":\"a\"", "{\"sub\":\"\xff\"}"}) {
        auto tok = sign_raw(R"({"alg":"HS256"})", payload, "HS256", nullptr, k_secret);
        EXPECT_EQ(check(tok, ks), jwt_status::malformed) << payload;
    }
    // Claims of the wrong type, and topic patterns that are not valid hub patterns.
    for (auto [name, value] :
         std::vector<std::pair<std::string, json>>{{"sub", 5},
                                                   {"sub", json::array()},
                                                   {"topics", "news"},
                                                   {"topics", {1}},
                                                   {"topics", {"a b"}},
                                                   {"topics", {""}},
                                                   {"publish", {"x/y"}},
                                                   {"topics", {std::string(300, 'a')}},
                                                   {"nbf", "soon"},
                                                   {"iat", json::object()}}) {
        auto pl = claims_json();
        pl[name] = value;
        EXPECT_EQ(check(token("RS256", pl), ks), jwt_status::malformed) << name << value;
    }
    // A `crit` header lists extensions herald cannot honour.
    EXPECT_EQ(check(sign({{"alg", "HS256"}, {"crit", {"exp"}}, {"exp", 1}}, claims_json(), nullptr,
                         k_secret),
                    ks),
              jwt_status::malformed);
}

TEST_F(Jwt, SizeLimit) {
    auto ks = only("HS256");
    // Grow a padding claim until the token crosses 8 KiB; every size up to the limit verifies.
    std::size_t last_ok = 0;
    for (std::size_t pad = 7000; pad < 7000 + 400; ++pad) {
        auto pl = claims_json();
        pl["pad"] = std::string(pad - 7000 + 5900, 'x');
        auto tok = token("HS256", pl);
        auto st = check(tok, ks);
        if (tok.size() <= k_max_token_bytes) {
            EXPECT_EQ(st, jwt_status::ok) << tok.size();
            last_ok = std::max(last_ok, tok.size());
        } else {
            EXPECT_EQ(st, jwt_status::malformed) << tok.size();
        }
    }
    EXPECT_GT(last_ok, k_max_token_bytes - 8);
    EXPECT_EQ(check(std::string(1 << 20, 'a'), ks), jwt_status::malformed);
}

TEST_F(Jwt, KeyIds) {
    const std::string secret_a(40, 'a');
    const std::string secret_b(40, 'b');
    key_set ks;
    ASSERT_FALSE(ks.add({"HS256", secret_a, "", "", "a"}));
    ASSERT_FALSE(ks.add({"HS256", secret_b, "", "", "b"}));
    ASSERT_FALSE(ks.add({"RS256", "", public_pem(rsa_), "", "r"}));
    EXPECT_EQ(ks.size(), 3u);
    EXPECT_TRUE(ks.has_alg(jwt_alg::rs256));
    EXPECT_FALSE(ks.has_alg(jwt_alg::es256));

    auto r = verify(sign({{"alg", "HS256"}, {"kid", "b"}}, claims_json(), nullptr, secret_b), ks,
                    k_now, {});
    EXPECT_EQ(r.status, jwt_status::ok);
    EXPECT_EQ(r.claims.kid, "b");
    // kid "a" but signed with b's secret.
    EXPECT_EQ(check(sign({{"alg", "HS256"}, {"kid", "a"}}, claims_json(), nullptr, secret_b), ks),
              jwt_status::bad_signature);
    // No kid: every key of the alg is tried.
    EXPECT_EQ(check(sign({{"alg", "HS256"}}, claims_json(), nullptr, secret_b), ks),
              jwt_status::ok);
    // A kid no HS256 key has (the RS256 key's kid does not count).
    EXPECT_EQ(check(sign({{"alg", "HS256"}, {"kid", "r"}}, claims_json(), nullptr, secret_a), ks),
              jwt_status::unknown_key);
    EXPECT_EQ(check(sign({{"alg", "HS256"}, {"kid", "zzz"}}, claims_json(), nullptr, secret_a), ks),
              jwt_status::unknown_key);
    // A key configured without kid accepts tokens whatever kid they carry.
    EXPECT_EQ(check(sign({{"alg", "HS256"}, {"kid", "any"}}, claims_json(), nullptr, k_secret),
                    only("HS256")),
              jwt_status::ok);
    // A header `jwk` is never used as the key.
    auto attacker = make_rsa();
    EXPECT_EQ(
        check(sign({{"alg", "RS256"}, {"jwk", {{"kty", "RSA"}}}}, claims_json(), attacker.get()),
              ks),
        jwt_status::bad_signature);
}

TEST_F(Jwt, DeepJsonDoesNotOverflow) {
    auto ks = all_keys();
    std::string deep(2000, '[');
    deep += std::string(2000, ']');
    auto tok = sign_raw(deep, claims_json().dump(), "HS256", nullptr, k_secret);
    EXPECT_EQ(check(tok, ks), jwt_status::malformed);
    std::string deep_payload = "{\"x\":" + std::string(2500, '[') + std::string(2500, ']') + "}";
    auto pl = sign_raw(R"({"alg":"HS256"})", deep_payload, "HS256", nullptr, k_secret);
    expectations no_exp;
    no_exp.require_exp = false;
    EXPECT_EQ(check(pl, ks, no_exp), jwt_status::ok);
}

TEST_F(Jwt, TenThousandMutatedTokensNeverCrash) {
    auto ks = all_keys();
    std::vector<std::string> seeds = {token("HS256"), token("RS256"), token("ES256")};
    std::mt19937 rng(20240601);
    auto rnd = [&](std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng() % n); };
    const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff{}\"";
    std::size_t ok = 0, counts[10] = {};
    for (int i = 0; i < 10'000; ++i) {
        const auto& seed = seeds[rnd(seeds.size())];
        std::string t = seed;
        switch (rnd(8)) {
            case 0:  // random bytes
                t.assign(rnd(300), '\0');
                for (auto& c : t) c = static_cast<char>(rng());
                break;
            case 1: {  // random base64url segments around random JSON-ish text
                std::string junk(rnd(120), '\0');
                for (auto& c : junk) c = alphabet[rnd(alphabet.size())];
                t = base64url_encode(junk) + "." + base64url_encode(junk) + "." + junk;
                break;
            }
            case 2:  // header replaced by a random but valid-looking one
                t = base64url_encode(
                        json{{"alg", std::string(1, alphabet[rnd(alphabet.size())])}}.dump()) +
                    seed.substr(seed.find('.'));
                break;
            default: {  // a few point mutations of a valid token
                int n = 1 + static_cast<int>(rnd(4));
                for (int m = 0; m < n && !t.empty(); ++m) {
                    auto pos = rnd(t.size());
                    switch (rnd(4)) {
                        case 0: t[pos] = alphabet[rnd(alphabet.size())]; break;
                        case 1: t.insert(pos, 1, alphabet[rnd(alphabet.size())]); break;
                        case 2: t.erase(pos, 1 + rnd(8)); break;
                        case 3: t = t.substr(0, pos); break;
                    }
                }
            }
        }
        auto r = verify(t, ks, k_now, {});
        counts[static_cast<int>(r.status)]++;
        if (r.ok()) {
            ++ok;
            // Only an unchanged token may verify: base64url is canonical, so any other string
            // changes the signed bytes or the signature.
            EXPECT_TRUE(std::find(seeds.begin(), seeds.end(), t) != seeds.end()) << t;
        }
        EXPECT_FALSE(to_string(r.status).empty());
    }
    // The mix exercised the interesting paths.
    EXPECT_GT(counts[static_cast<int>(jwt_status::malformed)], 1000u);
    EXPECT_GT(counts[static_cast<int>(jwt_status::bad_signature)], 100u);
    EXPECT_GT(counts[static_cast<int>(jwt_status::unsupported_alg)], 100u);
}
