#include "herald/hub/presence.hpp"

#include "herald/wire/envelope.hpp"
#include "herald/wire/sse_codec.hpp"
#include "herald/wire/ws_codec.hpp"

namespace herald::hub {

std::string presence_client_json(const presence_client& c) {
    return "{\"client\":" + wire::json_quote(c.client) + ",\"sub\":" + wire::json_quote(c.sub) +
           ",\"info\":" + (c.info.empty() ? std::string("null") : c.info) + "}";
}

bool presence_table::add(const presence_client& c) {
    auto [it, fresh] = clients_.try_emplace(c.client);
    ++it->second.holds;
    if (!fresh) return false;
    it->second.who = c;
    if (!c.sub.empty()) ++users_[c.sub];
    return true;
}

bool presence_table::remove(std::string_view client, presence_client& out) {
    auto it = clients_.find(std::string(client));
    if (it == clients_.end()) return false;
    if (--it->second.holds > 0) return false;
    out = std::move(it->second.who);
    clients_.erase(it);
    if (!out.sub.empty()) {
        auto u = users_.find(out.sub);
        if (u != users_.end() && --u->second == 0) users_.erase(u);
    }
    return true;
}

std::string presence_table::clients_json() const {
    std::string out = "[";
    for (const auto& [id, e] : clients_) {
        if (out.size() > 1) out += ',';
        out += presence_client_json(e.who);
    }
    return out + "]";
}

std::string presence_event_json(std::string_view topic, bool join, const presence_client& c) {
    return std::string("{\"type\":\"") + (join ? "join" : "leave") +
           "\",\"topic\":" + wire::json_quote(topic) + ",\"client\":" + presence_client_json(c) +
           "}";
}

presence_event_ptr make_presence_event(std::string topic, bool join, std::string client,
                                       std::string_view json) {
    auto e = std::make_shared<presence_event>();
    e->topic = std::move(topic);
    e->join = join;
    e->client = std::move(client);
    e->ws_frame = ws::make_frame(ws::opcode::text, json);
    e->sse_event = sse::encode_body(join ? "join" : "leave", json);
    return e;
}

presence_event_ptr make_presence_event(const std::string& topic, bool join,
                                       const presence_client& c) {
    return make_presence_event(topic, join, c.client, presence_event_json(topic, join, c));
}

std::string presence_result_members(const presence_result& r) {
    std::string out = r.clients_omitted ? "\"clients_omitted\":true" : "\"clients\":" + r.clients;
    out += ",\"users\":" + std::to_string(r.users);
    out += ",\"connections\":" + std::to_string(r.connections);
    return out;
}

std::string_view to_string(presence_change_kind k) noexcept {
    switch (k) {
        case presence_change_kind::occupied: return "occupied";
        case presence_change_kind::vacated: return "vacated";
        case presence_change_kind::join: return "join";
        case presence_change_kind::leave: return "leave";
    }
    return "?";
}

}  // namespace herald::hub
