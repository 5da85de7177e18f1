#pragma once
// clients/js/herald.js, compiled into the binary at build time (cmake/embed_client_js.cmake) and
// served at GET /client/herald.js.
#include <string_view>

namespace herald::app {

[[nodiscard]] std::string_view client_js() noexcept;
// The client's VERSION, as written in herald.js ("0.1.0").
[[nodiscard]] std::string_view client_js_version() noexcept;
// A quoted entity tag: "<version>-<first 12 hex digits of the file's SHA-256>".
[[nodiscard]] std::string_view client_js_etag() noexcept;

}  // namespace herald::app
