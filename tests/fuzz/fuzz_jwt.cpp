// Tokens against an HS256 key: never a crash, and only the untouched token verifies.
#include "herald/auth/jwt.hpp"

#include <chrono>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const herald::auth::key_set keys = [] {
        herald::auth::key_set k;
        (void)k.add({"HS256", "fuzzing-secret-fuzzing-secret-32b!", "", "", ""});
        return k;
    }();
    herald::auth::expectations expect;
    expect.require_exp = false;
    std::string_view token(reinterpret_cast<const char*>(data), size);
    (void)herald::auth::verify(token, keys, std::chrono::system_clock::now(), expect);
    return 0;
}
