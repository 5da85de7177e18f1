#pragma once
// The router's table: every HTTP endpoint herald serves, with its method and access class.
//
// Invariant: a request reaches a handler only through a row of this table (the HTTP session
// looks the path up, answers 404 and 405 from it, and makes the row's authorization decision
// before dispatching), so an endpoint cannot be added without declaring who may call it.
// `herald --list-endpoints` prints the table; tests/integration/test_authz_matrix.py reads it and
// fails on a row its matrix does not cover. CORS preflights (OPTIONS) are answered on every path
// of the table, to anyone.
#include "herald/auth/access.hpp"

#include <boost/beast/http/verb.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace herald::net {

enum class endpoint_id : std::uint8_t {
    healthz,
    readyz,
    metrics,
    ws,
    sse,
    poll,
    history,
    publish,
    publish_topic,
    admin_disconnect,
    admin_reload,
    client_js,
    presence,
    admin_page,
    admin_login,
    admin_stats,
};

// Where a read endpoint names the topics it delivers (they are validated, then authorized, by
// the router before its handler runs).
enum class topic_source : std::uint8_t {
    none,
    query,           // `topic` query parameters, at least one
    query_optional,  // `topic` query parameters, possibly none (/ws subscribes later, by op)
    path,            // the rest of the path after a prefix ("/history/{topic}")
};

struct endpoint {
    endpoint_id id;
    std::string_view path;  // the exact path, or with `prefix` what the path starts with
    bool prefix;
    boost::beast::http::verb method;
    auth::access_class access;
    topic_source topics;
    std::string_view summary;
};

[[nodiscard]] std::span<const endpoint> endpoints() noexcept;
// The row serving `path`, or null (404).
[[nodiscard]] const endpoint* find_endpoint(std::string_view path) noexcept;
// One JSON object per row, for --list-endpoints:
// {"path":"/history/","match":"prefix","methods":["GET"],"access":"read","topics":"path",...}
[[nodiscard]] std::string endpoint_json(const endpoint& e);

}  // namespace herald::net
