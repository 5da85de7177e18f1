#include "herald/auth/origin.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace herald::auth;

namespace {
origin_allowlist make(std::initializer_list<const char*> entries) {
    origin_allowlist a;
    for (auto* e : entries) {
        auto err = a.add(e);
        EXPECT_FALSE(err) << e << ": " << *err;
    }
    return a;
}
}  // namespace

TEST(Origin, ExactMatch) {
    auto a = make({"https://app.example.com", "http://localhost:3000", "http://[::1]:8080"});
    struct row {
        const char* origin;
        bool allowed;
    };
    for (auto [o, want] : std::vector<row>{
             {"https://app.example.com", true},
             {"HTTPS://APP.Example.COM", true},        // scheme and host are case-insensitive
             {"https://app.example.com:443", true},    // default port == no port
             {"https://app.example.com:8443", false},  // port is significant
             {"http://app.example.com", false},        // scheme is significant
             {"https://app.example.com.evil.net", false},
             {"https://evil-app.example.com", false},
             {"https://x.app.example.com", false},  // exact entries do not cover subdomains
             {"https://app.example.com/", false},   // browsers never send a path
             {"https://app.example.com/x", false},
             {"https://user@app.example.com", false},
             {"http://localhost:3000", true},
             {"http://localhost", false},
             {"http://localhost:3001", false},
             {"http://[::1]:8080", true},
             {"http://[::1]", false},
             {"null", false},
             {"", false},
             {"app.example.com", false},
             {"https://", false},
             {"https://:443", false},
             {"https://app..example.com", false},
             {"https://app.example.com:", false},
             {"https://app.example.com:99999", false},
         }) {
        EXPECT_EQ(a.allows(o), want) << o;
    }
    EXPECT_FALSE(a.empty());
    EXPECT_FALSE(a.allows_any());
}

TEST(Origin, WildcardSubdomains) {
    auto a = make({"https://*.example.com"});
    for (auto [o, want] : std::vector<std::pair<const char*, bool>>{
             {"https://a.example.com", true},
             {"https://a.b.example.com", true},
             {"https://A.Example.Com", true},
             {"https://a.example.com:443", true},
             {"https://example.com", false},  // the apex is not a subdomain
             {"https://.example.com", false},
             {"https://example.com.evil.net", false},
             {"https://a.example.com.evil.net", false},
             {"https://evilexample.com", false},
             {"https://a.evilexample.com", false},
             {"https://a.example.com:8443", false},
             {"http://a.example.com", false},
             {"https://a.example.co", false},
             {"https://a.example.com.", false},
             {"https://*.example.com", false},  // a browser never sends '*'
         }) {
        EXPECT_EQ(a.allows(o), want) << o;
    }
    auto p = make({"http://*.dev.local:8080"});
    EXPECT_TRUE(p.allows("http://x.dev.local:8080"));
    EXPECT_FALSE(p.allows("http://x.dev.local"));
}

TEST(Origin, AnyAndNull) {
    auto any = make({"*"});
    EXPECT_TRUE(any.allows_any());
    EXPECT_TRUE(any.allows("https://whatever.test"));
    EXPECT_TRUE(any.allows("null"));
    EXPECT_EQ(any.classify("https://whatever.test"), origin_allowlist::match::any);
    EXPECT_FALSE(any.allows(""));
    EXPECT_FALSE(any.allows("https://a.test\r\nSet-Cookie: x=1"));  // never echoed into headers

    auto n = make({"null", "https://a.test"});
    EXPECT_TRUE(n.allows("null"));
    EXPECT_EQ(n.classify("https://a.test"), origin_allowlist::match::listed);
    EXPECT_EQ(n.classify("https://b.test"), origin_allowlist::match::none);

    origin_allowlist empty;
    EXPECT_TRUE(empty.empty());
    EXPECT_FALSE(empty.allows("https://a.test"));
}

TEST(Origin, BadEntriesAreRefused) {
    origin_allowlist a;
    for (const char* bad : {"", "example.com", "https://example.com/", "https://example.com/app",
                            "https://*example.com", "https://a.*.example.com", "https://*",
                            "https://*.", "https://ex ample.com", "ftp//x", "://x",
                            "https://example.com:0", "https://example.com:70000",
                            "https://u:p@example.com", "https://[::1", "1https://x.com"}) {
        auto err = a.add(bad);
        EXPECT_TRUE(err) << bad;
        if (err) {
            EXPECT_NE(err->find("invalid origin"), std::string::npos) << *err;
        }
    }
    EXPECT_TRUE(a.empty());
}

TEST(Cors, Headers) {
    auto a = make({"https://app.example.com", "https://*.example.org"});
    EXPECT_FALSE(cors_headers(a, "https://evil.test", false));
    EXPECT_FALSE(cors_headers(a, "https://evil.test", true));

    auto simple = cors_headers(a, "https://app.example.com", false);
    ASSERT_TRUE(simple);
    header_list want = {{"Access-Control-Allow-Origin", "https://app.example.com"},
                        {"Vary", "Origin"},
                        {"Access-Control-Expose-Headers", "Retry-After"}};
    EXPECT_EQ(*simple, want);

    auto pre = cors_headers(a, "https://x.example.org", true);
    ASSERT_TRUE(pre);
    header_list want_pre = {{"Access-Control-Allow-Origin", "https://x.example.org"},
                            {"Vary", "Origin"},
                            {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                            {"Access-Control-Allow-Headers",
                             "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"},
                            {"Access-Control-Max-Age", "600"}};
    EXPECT_EQ(*pre, want_pre);

    // Credentials only for listed origins, never because of "*".
    cors_options opts;
    opts.allow_credentials = true;
    auto with_any = make({"*", "https://app.example.com"});
    auto listed = cors_headers(with_any, "https://app.example.com", false, opts);
    ASSERT_TRUE(listed);
    EXPECT_NE(
        std::find(listed->begin(), listed->end(),
                  std::pair<std::string, std::string>{"Access-Control-Allow-Credentials", "true"}),
        listed->end());
    auto anyone = cors_headers(with_any, "https://other.test", false, opts);
    ASSERT_TRUE(anyone);
    for (const auto& [k, v] : *anyone) EXPECT_NE(k, "Access-Control-Allow-Credentials");
}
