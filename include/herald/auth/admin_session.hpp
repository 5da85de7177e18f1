#pragma once
// The admin page's login session (docs/security.md, "Admin page"): after POST /admin/login with
// an API key, a cookie holding "v1.<expiry, unix seconds>.<hex HMAC-SHA256>" signed with a key
// drawn at random when the process starts (so a restart logs everyone out, and no key is
// configured or stored). A valid session is an API-key equivalent for admin, publish and read
// endpoints; because a cookie is ambient authority, a request with an unsafe method (or a stream)
// that relies on it must also carry the session's CSRF token (X-Herald-CSRF), which the page
// embeds.
#include <chrono>
#include <string>
#include <string_view>

namespace herald::auth {

inline constexpr std::string_view k_admin_cookie = "herald-admin";
inline constexpr std::string_view k_csrf_header = "X-Herald-CSRF";

// A session that expires at `expires`.
[[nodiscard]] std::string make_admin_session(std::chrono::system_clock::time_point expires);
// Whether `session` was signed by this process and has not expired at `now`.
[[nodiscard]] bool valid_admin_session(std::string_view session,
                                       std::chrono::system_clock::time_point now);
// The CSRF token bound to `session` (a different HMAC of it: the page can show it, and a forged
// request from another site, which cannot read the page, cannot).
[[nodiscard]] std::string admin_csrf_token(std::string_view session);

}  // namespace herald::auth
