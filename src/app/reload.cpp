#include "reload.hpp"

#include "herald/wire/envelope.hpp"

namespace herald::app {

bool live_key(std::string_view key) noexcept {
    return key.starts_with("auth.") || key.starts_with("origins.") || key == "trusted_proxies" ||
           key == "limits.connections_per_ip" || key == "limits.new_connections_per_ip_per_s" ||
           key == "limits.publishes_per_key_per_s" || key == "log.level" ||
           key == "log.trace_sample";
}

reload_plan plan_reload(const config::settings& running, const config::settings& fresh) {
    reload_plan p;
    const auto before = config::describe(running);
    const auto after = config::describe(fresh);
    // describe() lists every key in one fixed order, so the two lists line up.
    for (std::size_t i = 0; i < before.size() && i < after.size(); ++i) {
        if (before[i].value == after[i].value) continue;
        (live_key(after[i].key) ? p.applied : p.restart_required).push_back(after[i].key);
    }
    p.next = running;
    p.next.auth = fresh.auth;
    p.next.origins = fresh.origins;
    p.next.trusted_proxies = fresh.trusted_proxies;
    p.next.limits.connections_per_ip = fresh.limits.connections_per_ip;
    p.next.limits.new_connections_per_ip_per_s = fresh.limits.new_connections_per_ip_per_s;
    p.next.limits.publishes_per_key_per_s = fresh.limits.publishes_per_key_per_s;
    p.next.log.level = fresh.log.level;
    p.next.log.trace_sample = fresh.log.trace_sample;
    return p;
}

std::string reload_report_json(const reload_plan& p) {
    const auto list = [](const std::vector<std::string>& keys) {
        std::string o = "[";
        for (std::size_t i = 0; i < keys.size(); ++i) {
            if (i) o += ',';
            o += wire::json_quote(keys[i]);
        }
        return o + "]";
    };
    return "{\"reloaded\":true,\"applied\":" + list(p.applied) +
           ",\"restart_required\":" + list(p.restart_required) + "}";
}

}  // namespace herald::app
