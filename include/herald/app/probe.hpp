#pragma once
// `herald probe URL`: a synthetic client (seed: "synthetic tests check connection setup ... and
// latency"). Connects over WebSocket, subscribes, publishes over HTTP, checks receipt, prints one
// JSON line with connect time and publish-to-receive latency.
#include <chrono>
#include <string>

namespace herald::app {

struct probe_options {
    std::string url;      // http://host[:port] or ws://host[:port] (plain TCP only)
    std::string api_key;  // for the publish (Authorization: Bearer)
    std::string token;    // for the subscribe; without it the API key is used, if any
    std::string topic = "probe";
    int count = 1;
    std::chrono::milliseconds timeout{5000};  // per step
};

// Prints the JSON line on stdout; 0 when every message arrived, 1 otherwise (with the reason).
int run_probe(const probe_options& o);

}  // namespace herald::app
