#include "herald/wire/payload.hpp"

#include "herald/common/text.hpp"

#include <nlohmann/json.hpp>

namespace herald::wire {

payload_status read_payload(const nlohmann::json& m, payload_kind& kind, std::string& payload) {
    if (auto d = m.find("data_base64"); d != m.end()) {
        auto bytes =
            d->is_string() ? base64_decode(d->get_ref<const std::string&>()) : std::nullopt;
        if (!bytes) return payload_status::bad_base64;
        kind = payload_kind::binary;
        payload = std::move(*bytes);
        return payload_status::ok;
    }
    auto d = m.find("data");
    if (d == m.end()) return payload_status::missing;
    if (d->is_string()) {
        kind = payload_kind::text;
        payload = d->get<std::string>();
    } else {
        kind = payload_kind::json;
        payload = d->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return payload_status::ok;
}

std::string json_field_text(std::string_view json, std::string_view field) {
    const auto j = nlohmann::json::parse(json, nullptr, false);
    if (!j.is_object()) return {};
    const auto it = j.find(field);
    if (it == j.end()) return {};
    return it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace herald::wire
