#include "herald/net/tls.hpp"

#include "herald/config/config.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

using namespace herald;
using herald::net::tls::channel;

namespace {

// A self-signed P-256 certificate for "localhost", written as PEM files into a fresh directory.
struct test_cert {
    std::filesystem::path dir;
    std::string cert;
    std::string key;

    test_cert() {
        dir = std::filesystem::temp_directory_path() /
              ("herald-tls-test-" + std::to_string(::getpid()) + "-" + std::to_string(++serial));
        std::filesystem::create_directories(dir);
        cert = (dir / "cert.pem").string();
        key = (dir / "key.pem").string();
        EVP_PKEY* pkey = EVP_EC_gen("P-256");
        X509* x = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, pkey);
        X509_NAME* name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(x, name);
        X509_sign(x, pkey, EVP_sha256());
        FILE* f = std::fopen(cert.c_str(), "w");
        PEM_write_X509(f, x);
        std::fclose(f);
        f = std::fopen(key.c_str(), "w");
        PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
        std::fclose(f);
        X509_free(x);
        EVP_PKEY_free(pkey);
    }
    ~test_cert() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    static inline int serial = 0;
};

// An OpenSSL client over memory BIOs: what it writes is fed to the server channel, and the
// server channel's output is fed back, until neither side has anything to say.
struct client {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = nullptr;
    BIO* in = BIO_new(BIO_s_mem());   // from the server
    BIO* out = BIO_new(BIO_s_mem());  // to the server

    client() {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // the test checks the server side
        ssl = SSL_new(ctx);
        SSL_set_bio(ssl, in, out);
        SSL_set_connect_state(ssl);
        SSL_set_tlsext_host_name(ssl, "localhost");
    }
    ~client() {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }

    // Moves bytes both ways until quiet; returns the server's plaintext.
    std::string pump(channel& server) {
        std::string plain;
        for (int round = 0; round < 50; ++round) {
            bool moved = false;
            SSL_do_handshake(ssl);
            char buf[16384];
            int n;
            while ((n = BIO_read(out, buf, sizeof buf)) > 0) {
                server.feed(buf, static_cast<std::size_t>(n));
                moved = true;
            }
            for (;;) {
                std::size_t got = 0;
                auto r = server.read(buf, sizeof buf, got);
                if (r != channel::result::data) break;
                plain.append(buf, got);
                moved = true;
            }
            auto o = server.output();
            if (!o.empty()) {
                BIO_write(in, o.data(), static_cast<int>(o.size()));
                server.consume_output(o.size());
                moved = true;
            }
            if (!moved) break;
        }
        return plain;
    }

    std::string read_all() {
        std::string s;
        char buf[16384];
        int n;
        while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
        return s;
    }
};

TEST(Tls, HandshakeThenDataBothWays) {
    test_cert c;
    auto ctx = net::tls::context::load(c.cert, c.key, "1.2");
    channel server(*ctx);
    client cl;
    EXPECT_FALSE(server.handshake_started());
    cl.pump(server);
    ASSERT_TRUE(server.handshake_done());
    EXPECT_TRUE(server.handshake_started());
    EXPECT_EQ(SSL_is_init_finished(cl.ssl), 1);

    const std::string request = "GET /sse?topic=a HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(SSL_write(cl.ssl, request.data(), static_cast<int>(request.size())),
              static_cast<int>(request.size()));
    EXPECT_EQ(cl.pump(server), request);

    // Larger than one record: the client reads it whole, in order.
    std::string big(70'000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    ASSERT_TRUE(server.write(big.data(), big.size()));
    EXPECT_TRUE(server.has_output());
    cl.pump(server);
    EXPECT_FALSE(server.has_output());
    EXPECT_EQ(cl.read_all(), big);
}

TEST(Tls, OutputIsConsumedInPieces) {
    test_cert c;
    auto ctx = net::tls::context::load(c.cert, c.key, "1.2");
    channel server(*ctx);
    client cl;
    cl.pump(server);
    ASSERT_TRUE(server.write("hello", 5));
    // A socket that takes one byte at a time still gets every byte once, in order.
    std::string wire;
    while (server.has_output()) {
        auto o = server.output();
        wire.push_back(o[0]);
        server.consume_output(1);
    }
    BIO_write(cl.in, wire.data(), static_cast<int>(wire.size()));
    EXPECT_EQ(cl.read_all(), "hello");
}

TEST(Tls, RecordsLeftInsideAreReportedAsInput) {
    test_cert c;
    auto ctx = net::tls::context::load(c.cert, c.key, "1.2");
    channel server(*ctx);
    client cl;
    cl.pump(server);
    // Three records arrive in one read; the reader takes a few bytes at a time.
    for (const char* part : {"one,", "two,", "three"})
        SSL_write(cl.ssl, part, static_cast<int>(std::strlen(part)));
    char buf[16384];
    int n = BIO_read(cl.out, buf, sizeof buf);
    ASSERT_GT(n, 0);
    server.feed(buf, static_cast<std::size_t>(n));
    std::string got;
    char small[3];
    for (;;) {
        std::size_t k = 0;
        if (server.read(small, sizeof small, k) != channel::result::data) break;
        got.append(small, k);
        if (got.size() < std::strlen("one,two,three")) {
            EXPECT_TRUE(server.has_input()) << got;
        }
    }
    EXPECT_EQ(got, "one,two,three");
    EXPECT_FALSE(server.has_input());
}

TEST(Tls, GarbageIsAnErrorWithAnAlertForThePeer) {
    test_cert c;
    auto ctx = net::tls::context::load(c.cert, c.key, "1.2");
    channel server(*ctx);
    // A handshake record holding a ClientHello of four bytes: no version, random or suites.
    const std::string garbage("\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff", 13);
    server.feed(garbage.data(), garbage.size());
    char buf[256];
    std::size_t n = 0;
    EXPECT_EQ(server.read(buf, sizeof buf, n), channel::result::error);
    EXPECT_FALSE(server.last_error().empty());
    EXPECT_FALSE(server.handshake_done());
    EXPECT_TRUE(server.has_output());  // the alert
}

TEST(Tls, CloseNotifyEndsTheStream) {
    test_cert c;
    auto ctx = net::tls::context::load(c.cert, c.key, "1.3");
    channel server(*ctx);
    client cl;
    cl.pump(server);
    ASSERT_TRUE(server.handshake_done());
    SSL_shutdown(cl.ssl);
    char buf[4096];
    int n = BIO_read(cl.out, buf, sizeof buf);
    ASSERT_GT(n, 0);
    server.feed(buf, static_cast<std::size_t>(n));
    std::size_t got = 0;
    EXPECT_EQ(server.read(buf, sizeof buf, got), channel::result::closed);
    // And ours goes out when asked.
    server.shutdown();
    EXPECT_TRUE(server.has_output());
}

TEST(Tls, LoadErrorsNameTheFile) {
    test_cert c;
    test_cert other;
    EXPECT_THROW((void)net::tls::context::load(c.cert, c.dir.string() + "/missing.pem", "1.2"),
                 std::runtime_error);
    try {
        (void)net::tls::context::load(c.cert, other.key, "1.2");
        FAIL() << "a key that does not match the certificate was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("does not match the certificate"), std::string::npos)
            << e.what();
    }
    config::settings s;
    EXPECT_EQ(net::tls::load_configured(s), nullptr);  // TLS off
    s.tls.cert = c.cert;
    s.tls.key = c.dir.string() + "/missing.pem";
    try {
        (void)net::tls::load_configured(s);
        FAIL() << "a missing key file was accepted";
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.key(), "tls.key");
    }
}

}  // namespace
