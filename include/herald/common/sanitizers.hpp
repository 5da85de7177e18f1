#pragma once
// Whether this build runs under AddressSanitizer: recycling of freed blocks (messages, request
// parsers) is off there, so that it sees every lifetime.

namespace herald {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool k_address_sanitizer = true;  // gcc
#elif defined(__has_feature)
inline constexpr bool k_address_sanitizer = __has_feature(address_sanitizer);  // clang
#else
inline constexpr bool k_address_sanitizer = false;
#endif

}  // namespace herald
