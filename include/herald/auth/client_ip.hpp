#pragma once
// The client address that rate limits and logs use.
//
// Behind a reverse proxy every connection comes from the proxy, and the client's address is in
// X-Forwarded-For. That header is believed only when the TCP peer is a configured trusted proxy;
// then the chain is walked from the right (the hop the proxy itself appended) and the first address
// that is not a trusted proxy is the client. Everything left of it was written by the client and is
// ignored, so a spoofed "X-Forwarded-For: 1.2.3.4" buys nothing.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack socket reports) are treated as
// the IPv4 address everywhere. Immutable after loading; a const set may be shared by all workers.
#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::auth {

using ip_address = boost::asio::ip::address;

// An IPv4 or IPv6 network: "10.0.0.0/8", "fd00::/8", or one address ("127.0.0.1", "::1").
struct cidr {
    ip_address network;
    unsigned prefix = 0;

    // Refuses host bits set below the prefix ("10.0.0.1/8"), a sign of a typo.
    [[nodiscard]] static std::optional<cidr> parse(std::string_view text,
                                                   std::string* why = nullptr);
    [[nodiscard]] bool contains(const ip_address& a) const noexcept;
};

class trusted_proxies {
public:
    [[nodiscard]] std::optional<std::string> add(std::string_view cidr_text);
    [[nodiscard]] bool contains(const ip_address& a) const noexcept;
    [[nodiscard]] bool empty() const noexcept { return nets_.empty(); }

private:
    std::vector<cidr> nets_;
};

// ::ffff:a.b.c.d becomes a.b.c.d; anything else is returned as is.
[[nodiscard]] ip_address unmap(const ip_address& a) noexcept;

// `xff` is the X-Forwarded-For value; several X-Forwarded-For header lines must be joined with
// "," in the order received. Entries may carry a port ("1.2.3.4:5678", "[::1]:80"). An entry that
// is not an address ends the walk at the last good hop.
[[nodiscard]] ip_address client_address(const ip_address& peer, std::string_view xff,
                                        const trusted_proxies& proxies);

}  // namespace herald::auth
