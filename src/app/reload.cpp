#include "reload.hpp"

#include "herald/wire/envelope.hpp"

namespace herald::app {

bool live_key(std::string_view key) noexcept {
    return key.starts_with("auth.") || key.starts_with("origins.") || key == "trusted_proxies" ||
           key.starts_with("limits.") || key == "quotas" || key == "history.size" ||
           key == "history.ttl" || key == "history.namespaces" || key.starts_with("delivery.") ||
           key.starts_with("compression.") || key == "log.level" || key == "log.trace_sample";
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
    p.next.limits = fresh.limits;
    p.next.quotas = fresh.quotas;
    p.next.history.size = fresh.history.size;
    p.next.history.ttl = fresh.history.ttl;
    p.next.history.namespaces = fresh.history.namespaces;
    p.next.delivery = fresh.delivery;
    p.next.compression = fresh.compression;
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
