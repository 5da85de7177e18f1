#include "herald/auth/access.hpp"

#include "herald/auth/admin_session.hpp"
#include "herald/auth/context.hpp"
#include "herald/common/text.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>
#include <vector>

using namespace herald;
using auth::access_class;
using auth::verdict;

namespace {
const std::string k_secret = "access-test-secret-of-at-least-32-bytes!";
const std::string k_key = "access-test-api-key-0123456789";

std::string hs256(const std::string& payload) {
    const std::string signing =
        base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(EVP_sha256(), k_secret.data(), static_cast<int>(k_secret.size()),
         reinterpret_cast<const unsigned char*>(signing.data()), signing.size(), mac, &len);
    return signing + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), len));
}

std::string token(const std::string& topics, long ttl = 600) {
    const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() +
                     ttl;
    return hs256(R"({"sub":"u","exp":)" + std::to_string(exp) + R"(,"topics":)" + topics + "}");
}

config::settings settings(bool open_publish) {
    config::settings c;
    c.auth.jwt.keys.push_back({"HS256", k_secret, "", "", ""});
    c.auth.jwt.leeway = std::chrono::milliseconds(0);
    c.auth.token_cookie = "tok";
    c.auth.default_anonymous_subscribe = true;
    c.auth.namespaces.push_back({"private:*", false});
    c.auth.publish_keys.push_back(k_key);
    c.auth.allow_unauthenticated_publish = open_publish;
    c.limits.publishes_per_key_per_s = 0;
    return c;
}

struct fixture {
    explicit fixture(bool open_publish = false)
        : cfg(settings(open_publish)),
          ctx(cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; }) {}
    config::settings cfg;
    auth::context ctx;

    auth::decision ask(access_class c, std::string authorization,
                       std::vector<std::string> topics = {}, std::string cookie = {},
                       std::vector<std::pair<std::string, std::string>> query = {}) {
        return ctx.authorize(c, auth::credentials{authorization, cookie, query, {}, false}, topics,
                             "1.2.3.4");
    }
};
}  // namespace

TEST(Access, ReadByPrincipal) {
    fixture f;
    const std::vector<std::string> priv{"private:a"};
    const std::vector<std::string> pub{"news"};
    const auto good = "Bearer " + token(R"(["private:a"])");

    auto anon = f.ask(access_class::read, "", priv);
    EXPECT_EQ(anon.status, verdict::forbidden);
    EXPECT_TRUE(anon.anonymous);
    EXPECT_TRUE(f.ask(access_class::read, "", pub).ok());
    EXPECT_TRUE(f.ask(access_class::read, "", {}).ok());  // nothing to read yet (/ws)

    auto tok = f.ask(access_class::read, good, priv);
    ASSERT_TRUE(tok.ok());
    ASSERT_TRUE(tok.reader);
    EXPECT_EQ(tok.reader->sub, "u");
    EXPECT_FALSE(tok.reader->api_key);
    // Every topic must be readable, not just one.
    auto mixed = f.ask(access_class::read, good, {"private:a", "private:b"});
    EXPECT_EQ(mixed.status, verdict::forbidden);
    EXPECT_FALSE(mixed.anonymous);
    EXPECT_NE(mixed.message.find("private:b"), std::string::npos);

    auto other = f.ask(access_class::read, "Bearer " + token(R"(["private:b"])"), priv);
    EXPECT_EQ(other.status, verdict::forbidden);

    auto expired = f.ask(access_class::read, "Bearer " + token(R"(["private:a"])", -60), pub);
    EXPECT_EQ(expired.status, verdict::unauthorized);  // even for a public topic
    EXPECT_TRUE(expired.invalid_token);

    auto key = f.ask(access_class::read, "Bearer " + k_key, {"private:a", "private:zzz"});
    ASSERT_TRUE(key.ok());
    ASSERT_TRUE(key.reader);
    EXPECT_TRUE(key.reader->api_key);
    EXPECT_TRUE(f.ctx.may_read(key.reader.get(), "private:anything"));
    EXPECT_FALSE(f.ctx.may_read(nullptr, "private:anything"));

    EXPECT_EQ(f.ask(access_class::read, "Bearer wrong-key-0123456789", pub).status,
              verdict::unauthorized);
}

TEST(Access, ReadTokenSources) {
    fixture f;
    const std::vector<std::string> priv{"private:a"};
    const auto t = token(R"(["private:a"])");
    EXPECT_TRUE(f.ask(access_class::read, "", priv, "x=1; tok=" + t).ok());
    EXPECT_TRUE(
        f.ask(access_class::read, "", priv, "", {{"topic", "private:a"}, {"token", t}}).ok());
    // An API key counts only in the Authorization header, never in the URL.
    EXPECT_EQ(f.ask(access_class::read, "", priv, "", {{"token", k_key}}).status,
              verdict::unauthorized);
    // The header wins over the query parameter.
    EXPECT_EQ(
        f.ask(access_class::read, "Bearer " + token(R"(["private:b"])"), priv, "", {{"token", t}})
            .status,
        verdict::forbidden);
}

TEST(Access, PublishAndAdmin) {
    fixture locked;
    EXPECT_EQ(locked.ask(access_class::publish, "").status, verdict::unauthorized);
    EXPECT_TRUE(locked.ask(access_class::publish, "Bearer " + k_key).ok());
    EXPECT_EQ(locked.ask(access_class::publish, "Bearer " + token(R"(["*"])")).status,
              verdict::unauthorized);  // a token is not an API key
    EXPECT_EQ(locked.ask(access_class::admin, "").status, verdict::unauthorized);
    EXPECT_TRUE(locked.ask(access_class::admin, "Bearer " + k_key).ok());

    fixture open(true);
    EXPECT_TRUE(open.ask(access_class::publish, "").ok());
    EXPECT_EQ(open.ask(access_class::publish, "Bearer wrong-key-0123456789").status,
              verdict::unauthorized);
    // Open publishing does not open the admin endpoints.
    auto admin = open.ask(access_class::admin, "");
    EXPECT_EQ(admin.status, verdict::unauthorized);
    EXPECT_NE(admin.message.find("allow_unauthenticated_publish"), std::string::npos);
    EXPECT_TRUE(open.ask(access_class::admin, "Bearer " + k_key).ok());

    EXPECT_TRUE(open.ask(access_class::open, "Bearer garbage").ok());
}

TEST(Access, PublishRate) {
    auto cfg = settings(false);
    cfg.limits.publishes_per_key_per_s = 1;  // burst 2
    auth::context ctx(cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; });
    const std::string h = "Bearer " + k_key;
    const auth::credentials cred{h, "", {}, {}, false};
    EXPECT_TRUE(ctx.authorize(access_class::publish, cred, {}, "ip").ok());
    EXPECT_TRUE(ctx.authorize(access_class::publish, cred, {}, "ip").ok());
    auto d = ctx.authorize(access_class::publish, cred, {}, "ip");
    EXPECT_EQ(d.status, verdict::rate_limited);
    EXPECT_GE(d.retry_after_s, 1);
    // Admin requests do not spend (or need) the publish rate.
    EXPECT_TRUE(ctx.authorize(access_class::admin, cred, {}, "ip").ok());
}

TEST(Access, Names) {
    EXPECT_EQ(auth::to_string(access_class::open), "public");
    EXPECT_EQ(auth::to_string(access_class::read), "read");
    EXPECT_EQ(auth::to_string(access_class::publish), "publish");
    EXPECT_EQ(auth::to_string(access_class::admin), "admin");
}

// Stream admission: the new-stream rate first, then the concurrent-stream slots of the address.
TEST(Admission, RateThenSlotsPerAddress) {
    config::settings cfg;
    cfg.limits.connections_per_ip = 2;
    cfg.limits.new_connections_per_ip_per_s = 2;  // a burst of 4
    auth::context ctx(cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; });
    using adm = auth::context::admission;
    EXPECT_TRUE(ctx.admit_stream("10.0.0.1").ok());
    EXPECT_TRUE(ctx.admit_stream("10.0.0.1").ok());
    auto full = ctx.admit_stream("10.0.0.1");
    EXPECT_EQ(full.status, adm::streams_per_ip);
    EXPECT_EQ(full.retry_after_s, 1);
    EXPECT_TRUE(ctx.admit_stream("10.0.0.2").ok());  // another address has its own slots
    ctx.release_stream("10.0.0.1");
    EXPECT_TRUE(ctx.admit_stream("10.0.0.1").ok());  // the 4th new stream of the burst
    ctx.release_stream("10.0.0.1");
    // A slot is free again, but the address spent its burst of new streams.
    auto fast = ctx.admit_stream("10.0.0.1");
    EXPECT_EQ(fast.status, adm::new_streams_per_ip);
    EXPECT_GE(fast.retry_after_s, 1);
    EXPECT_EQ(fast.message, "too many new connections from this address");
}

TEST(AdminSession, SignedExpiringAndBoundToItsCsrfToken) {
    const auto now = std::chrono::system_clock::now();
    const auto s = auth::make_admin_session(now + std::chrono::hours(1));
    EXPECT_TRUE(auth::valid_admin_session(s, now));
    EXPECT_FALSE(auth::valid_admin_session(s, now + std::chrono::hours(2)));  // expired
    auto forged = s;
    forged.back() = forged.back() == '0' ? '1' : '0';
    EXPECT_FALSE(auth::valid_admin_session(forged, now));
    // A later expiry with the old signature.
    auto stretched = s;
    stretched[3] = stretched[3] == '9' ? '8' : '9';
    EXPECT_FALSE(auth::valid_admin_session(stretched, now));
    EXPECT_FALSE(auth::valid_admin_session("", now));
    EXPECT_FALSE(auth::valid_admin_session("v1.", now));
    EXPECT_NE(auth::admin_csrf_token(s), auth::admin_csrf_token(forged));
}

TEST(AdminSession, CookieStandsForAnApiKeyOnlyWhenEnabledAndWithCsrfOnUnsafeMethods) {
    auto cfg = settings(false);
    cfg.admin.enabled = true;
    auth::context ctx(cfg, [](const char*) -> std::optional<std::string> { return std::nullopt; });
    const auto s =
        auth::make_admin_session(std::chrono::system_clock::now() + std::chrono::hours(1));
    const auto cookie = "a=b; herald-admin=" + s;
    const auto csrf = auth::admin_csrf_token(s);
    const auto ask = [&](auth::context& c, access_class a, std::string_view ck,
                         std::string_view token, bool unsafe) {
        return c.authorize(a, auth::credentials{"", ck, {}, token, unsafe}, {}, "1.2.3.4").status;
    };
    EXPECT_EQ(ask(ctx, access_class::admin, cookie, "", false), verdict::ok);
    EXPECT_EQ(ask(ctx, access_class::admin, cookie, "", true), verdict::forbidden);
    EXPECT_EQ(ask(ctx, access_class::admin, cookie, "wrong", true), verdict::forbidden);
    EXPECT_EQ(ask(ctx, access_class::publish, cookie, csrf, true), verdict::ok);
    EXPECT_EQ(ask(ctx, access_class::admin, "herald-admin=v1.99999999999.00", "", false),
              verdict::unauthorized);
    const std::vector<std::string> priv{"private:a"};
    auto d = ctx.authorize(access_class::read, auth::credentials{"", cookie, {}, {}, false}, priv,
                           "1.2.3.4");
    EXPECT_TRUE(d.ok());
    // admin.enabled off: the cookie is not looked at.
    fixture off;
    EXPECT_EQ(ask(off.ctx, access_class::admin, cookie, csrf, true), verdict::unauthorized);
}
