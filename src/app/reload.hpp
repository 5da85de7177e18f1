#pragma once
// Reload without restart (SIGHUP, POST /admin/reload): which keys of a newly read config change,
// which of them apply to a running server, and the settings that result. Pure: the server
// builds the new auth context from `next` and swaps it in (see server.cpp).
#include "herald/config/config.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace herald::app {

// Keys a running server takes on: everything the auth context is built from (API keys, JWT keys
// and expectations, namespaces, origins, trusted proxies, the per-address and per-key rate
// limits), every worker's settings snapshot (limits.*, delivery.*, compression.*), the hub's
// quotas, the brokers' history policies (history.size, .ttl, .namespaces) and log.level.
// Every other key needs a restart (docs/operations.md says which and why).
[[nodiscard]] bool live_key(std::string_view key) noexcept;

struct reload_plan {
    std::vector<std::string> applied;           // changed, taken on live
    std::vector<std::string> restart_required;  // changed, left as they are until a restart
    config::settings next;                      // the running settings with `applied` changed
};

[[nodiscard]] reload_plan plan_reload(const config::settings& running,
                                      const config::settings& fresh);

// {"reloaded":true,"applied":[..],"restart_required":[..]}: key names only, never values.
[[nodiscard]] std::string reload_report_json(const reload_plan& p);

}  // namespace herald::app
