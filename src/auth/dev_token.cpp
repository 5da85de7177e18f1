#include "herald/auth/dev_token.hpp"

#include "herald/common/text.hpp"
#include "herald/wire/topic.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace herald::auth {

std::string random_secret(std::size_t bytes) {
    std::string raw(bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
        throw std::runtime_error("no random bytes from OpenSSL");
    return base64url_encode(raw);
}

std::string make_dev_token(const config::settings& cfg, const dev_token_request& r,
                           std::chrono::system_clock::time_point now) {
    const config::settings::jwt_key* key = nullptr;
    for (const auto& k : cfg.auth.jwt.keys)
        if (k.alg == "HS256" && !k.secret.empty()) {
            key = &k;
            break;
        }
    if (!key)
        throw config::config_error("auth.jwt.keys",
                                   "no HS256 key with a secret to sign a development token");
    for (const auto* list : {&r.topics, &r.publish})
        for (const auto& p : *list)
            if (!wire::is_valid_pattern(p))
                throw config::config_error("--topics", "'" + p + "' is not a topic pattern");
    nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}};
    if (!key->kid.empty()) header["kid"] = key->kid;
    const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
    nlohmann::json claims = {{"sub", r.sub}, {"iat", iat.count()}, {"exp", (iat + r.ttl).count()}};
    if (!r.topics.empty()) claims["topics"] = r.topics;
    if (!r.publish.empty()) claims["publish"] = r.publish;
    if (!cfg.auth.jwt.audience.empty()) claims["aud"] = cfg.auth.jwt.audience;
    if (!cfg.auth.jwt.issuer.empty()) claims["iss"] = cfg.auth.jwt.issuer;
    const std::string input =
        base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key->secret.data(), static_cast<int>(key->secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return input + "." +
           base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

}  // namespace herald::auth
