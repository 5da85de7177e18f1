#include "herald/auth/admin_session.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <stdexcept>

namespace herald::auth {

namespace {
using key_bytes = std::array<unsigned char, 32>;

// Drawn once per process (a function-local static: initialised once, thread-safe).
const key_bytes& process_key() {
    static const key_bytes k = [] {
        key_bytes b{};
        if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
            throw std::runtime_error("RAND_bytes failed: cannot key admin sessions");
        return b;
    }();
    return k;
}

std::string mac_hex(std::string_view label, std::string_view data) {
    std::string in(label);
    in += data;
    std::array<unsigned char, 32> out{};
    unsigned int len = 0;
    const auto& k = process_key();
    HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()),
         reinterpret_cast<const unsigned char*>(in.data()), in.size(), out.data(), &len);
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s += hex[out[i] >> 4];
        s += hex[out[i] & 15];
    }
    return s;
}

bool same(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace

std::string make_admin_session(std::chrono::system_clock::time_point expires) {
    const auto body =
        "v1." +
        std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count());
    return body + "." + mac_hex("session:", body);
}

bool valid_admin_session(std::string_view session, std::chrono::system_clock::time_point now) {
    const auto dot = session.rfind('.');
    if (!session.starts_with("v1.") || dot == std::string_view::npos || dot < 4) return false;
    const auto body = session.substr(0, dot);
    if (!same(session.substr(dot + 1), mac_hex("session:", body))) return false;
    long long exp = 0;
    const auto digits = body.substr(3);
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), exp);
    if (ec != std::errc{} || p != digits.data() + digits.size()) return false;
    return std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() < exp;
}

std::string admin_csrf_token(std::string_view session) {
    return mac_hex("csrf:", session);
}

}  // namespace herald::auth
