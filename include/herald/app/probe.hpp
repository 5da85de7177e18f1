#pragma once
// `herald probe URL`: a synthetic client (seed: "synthetic tests check connection setup ... and
// latency"). Connects over WebSocket (TLS too), subscribes, publishes over HTTP, checks receipt,
// optionally renews its token over the WebSocket, prints one JSON line with connect time,
// publish-to-receive latency and the refresh's round trip.
#include <chrono>
#include <string>

namespace herald::app {

struct probe_options {
    std::string url;      // http:// or ws:// (plain TCP), https:// or wss:// (TLS) host[:port]
    std::string api_key;  // for the publish (Authorization: Bearer)
    std::string token;    // for the subscribe; without it the API key is used, if any
    std::string topic = "probe";
    int count = 1;
    std::chrono::milliseconds timeout{5000};  // per step
    std::string cacert;  // TLS: the CA file the server's certificate must chain to ("": system's)
    // Token renewal: with a secret, the probe signs its own HS256 token living token_ttl,
    // refreshes it over the WebSocket at half its life, and checks the stream outlives it.
    std::string jwt_secret;
    std::chrono::seconds token_ttl{4};
};

// Prints the JSON line on stdout; 0 when every message arrived, 1 otherwise (with the reason).
int run_probe(const probe_options& o);

}  // namespace herald::app
