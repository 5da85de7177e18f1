# cmake -DIN=clients/js/herald.js -DOUT=<build>/generated/client_js.cpp -P embed_client_js.cmake
# Writes a C++ source holding the file's bytes (an array: a string literal this long is beyond what
# ISO C++ promises), its VERSION and an entity tag, for GET /client/herald.js (src/app/client_js.hpp).
file(READ "${IN}" text)
string(REGEX MATCH "export const VERSION = \"([0-9A-Za-z.+-]+)\"" _ "${text}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "${IN}: no 'export const VERSION = \"x.y.z\"' line")
endif()
set(version "${CMAKE_MATCH_1}")
file(SHA256 "${IN}" sha)
string(SUBSTRING "${sha}" 0 12 sha)
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "// Generated from ${IN} by cmake/embed_client_js.cmake; do not edit.
#include \"app/client_js.hpp\"

namespace herald::app {
namespace {
constexpr unsigned char k_bytes[] = {
${bytes}};
}  // namespace

std::string_view client_js() noexcept {
    return {reinterpret_cast<const char*>(k_bytes), sizeof k_bytes};
}
std::string_view client_js_version() noexcept { return \"${version}\"; }
std::string_view client_js_etag() noexcept { return \"\\\"${version}-${sha}\\\"\"; }

}  // namespace herald::app
")
