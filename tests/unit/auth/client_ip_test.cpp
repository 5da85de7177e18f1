#include "herald/auth/client_ip.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace herald::auth;

namespace {
ip_address ip(const char* s) {
    return boost::asio::ip::make_address(s);
}
trusted_proxies proxies(std::initializer_list<const char*> nets) {
    trusted_proxies p;
    for (auto* n : nets) {
        auto err = p.add(n);
        EXPECT_FALSE(err) << n << ": " << *err;
    }
    return p;
}
std::string client(const char* peer, std::string_view xff, const trusted_proxies& p) {
    return client_address(ip(peer), xff, p).to_string();
}
}  // namespace

TEST(Cidr, ParseAndContain) {
    auto c = cidr::parse("10.0.0.0/8");
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->contains(ip("10.255.1.2")));
    EXPECT_FALSE(c->contains(ip("11.0.0.1")));
    EXPECT_TRUE(c->contains(ip("::ffff:10.1.2.3")));  // IPv4-mapped counts as IPv4
    EXPECT_FALSE(c->contains(ip("::1")));

    auto v6 = cidr::parse("fd00::/8");
    ASSERT_TRUE(v6);
    EXPECT_TRUE(v6->contains(ip("fd12:3456::1")));
    EXPECT_FALSE(v6->contains(ip("fe80::1")));
    EXPECT_FALSE(v6->contains(ip("10.0.0.1")));

    auto odd = cidr::parse("192.168.1.128/25");
    ASSERT_TRUE(odd);
    EXPECT_TRUE(odd->contains(ip("192.168.1.200")));
    EXPECT_FALSE(odd->contains(ip("192.168.1.127")));

    auto one = cidr::parse("127.0.0.1");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->prefix, 32u);
    EXPECT_TRUE(one->contains(ip("127.0.0.1")));
    EXPECT_FALSE(one->contains(ip("127.0.0.2")));
    auto all = cidr::parse("0.0.0.0/0");
    ASSERT_TRUE(all);
    EXPECT_TRUE(all->contains(ip("8.8.8.8")));
    EXPECT_TRUE(cidr::parse("::1/128"));
    EXPECT_TRUE(cidr::parse(" 10.0.0.0/8 "));

    std::string why;
    for (const char* bad :
         {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0.0/8x",
          "10.0.0.0/-1", "host.example.com", "10.0.0.0/8/8", "1.2.3.4.5", "10.0.0.0/0008"}) {
        EXPECT_FALSE(cidr::parse(bad, &why)) << bad;
    }
    EXPECT_FALSE(cidr::parse("10.0.0.1/8", &why));
    EXPECT_NE(why.find("host bits"), std::string::npos) << why;
}

TEST(ClientIp, UntrustedPeerIgnoresForwardedFor) {
    auto p = proxies({"10.0.0.0/8"});
    EXPECT_EQ(client("203.0.113.7", "1.2.3.4", p), "203.0.113.7");
    EXPECT_EQ(client("203.0.113.7", "", p), "203.0.113.7");
    // Without any trusted proxy, XFF is never read.
    trusted_proxies none;
    EXPECT_EQ(client("10.0.0.1", "1.2.3.4", none), "10.0.0.1");
    EXPECT_EQ(client("::ffff:203.0.113.7", "1.2.3.4", none), "203.0.113.7");
}

TEST(ClientIp, TrustedPeerUsesRightmostUntrusted) {
    auto p = proxies({"10.0.0.0/8", "fd00::/8"});
    EXPECT_EQ(client("10.0.0.5", "198.51.100.9", p), "198.51.100.9");
    // A client spoofing the header: nginx appends the real address; everything left of it is the
    // client's own text and is ignored.
    EXPECT_EQ(client("10.0.0.5", "1.1.1.1, 6.6.6.6, 198.51.100.9", p), "198.51.100.9");
    // A chain of trusted proxies is walked through.
    EXPECT_EQ(client("10.0.0.5", "1.1.1.1, 198.51.100.9, 10.0.0.7, 10.1.2.3", p), "198.51.100.9");
    // Spoofing a trusted address on the left does not help either.
    EXPECT_EQ(client("10.0.0.5", "10.9.9.9, 198.51.100.9", p), "198.51.100.9");
    // IPv6 and ports.
    EXPECT_EQ(client("fd00::1", "2001:db8::7", p), "2001:db8::7");
    EXPECT_EQ(client("fd00::1", "[2001:db8::7]:4431", p), "2001:db8::7");
    EXPECT_EQ(client("::ffff:10.0.0.5", "198.51.100.9:5555", p), "198.51.100.9");
    EXPECT_EQ(client("10.0.0.5", "::ffff:198.51.100.9", p), "198.51.100.9");
    // Odd spacing and empty elements.
    EXPECT_EQ(client("10.0.0.5", " ,198.51.100.9 ,, ", p), "198.51.100.9");
    // No header: the proxy itself.
    EXPECT_EQ(client("10.0.0.5", "", p), "10.0.0.5");
    // Everything trusted: the left-most hop.
    EXPECT_EQ(client("10.0.0.5", "10.0.0.9, 10.0.0.8", p), "10.0.0.9");
}

TEST(ClientIp, GarbageStopsAtLastGoodHop) {
    auto p = proxies({"10.0.0.0/8"});
    EXPECT_EQ(client("10.0.0.5", "unknown", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "198.51.100.9, garbage", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "garbage, 10.0.0.6", p), "10.0.0.6");
    EXPECT_EQ(client("10.0.0.5", "garbage, 198.51.100.9", p), "198.51.100.9");
    EXPECT_EQ(client("10.0.0.5", "1.2.3.4:x", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "[::1", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "[2001:db8::1]:x", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "[2001:db8::1]junk", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", "1.2.3.4:", p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", std::string(5000, ','), p), "10.0.0.5");
    EXPECT_EQ(client("10.0.0.5", std::string(100, 'a'), p), "10.0.0.5");
    std::string big;
    for (int i = 0; i < 2000; ++i) big += "10.0.0.1, ";
    EXPECT_EQ(client("10.0.0.5", big, p), "10.0.0.1");
}

TEST(TrustedProxies, AddErrors) {
    trusted_proxies p;
    EXPECT_TRUE(p.add("nonsense"));
    EXPECT_TRUE(p.add("10.0.0.1/8"));
    EXPECT_TRUE(p.empty());
    EXPECT_FALSE(p.add("127.0.0.1"));
    EXPECT_FALSE(p.add("::1"));
    EXPECT_TRUE(p.contains(ip("127.0.0.1")));
    EXPECT_TRUE(p.contains(ip("::1")));
    EXPECT_FALSE(p.contains(ip("127.0.0.2")));
}
