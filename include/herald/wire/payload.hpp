#pragma once
// The payload of a message published as JSON (a WebSocket publish op, an entry of POST /publish):
// one rule for both.
#include "herald/wire/envelope.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace herald::wire {

enum class payload_status : std::uint8_t { ok, missing, bad_base64 };

// "data_base64" (standard base64: binary), else "data": a string is text, any other JSON value is
// json (serialised compactly, invalid UTF-8 replaced). Sets `kind` and `payload` on ok.
[[nodiscard]] payload_status read_payload(const nlohmann::json& m, payload_kind& kind,
                                          std::string& payload);

// The value of the top-level field `field` of a JSON object, as compact JSON text ("\"AAPL\"",
// "42"); empty when `json` is not an object or has no such field. The conflation key.
[[nodiscard]] std::string json_field_text(std::string_view json, std::string_view field);

}  // namespace herald::wire
