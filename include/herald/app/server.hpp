#pragma once
// Wiring: N workers (one thread and one io_context each), the hub, the broker, the listeners,
// signals and the graceful drain.
#include "herald/config/config.hpp"

#include <cstdint>
#include <memory>

namespace herald::app {

class server {
public:
    explicit server(config::settings cfg);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds, serves until SIGTERM/SIGINT, drains, and returns the process exit code.
    int run();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Sets up spdlog from the config: level, and text or JSON lines on stderr.
void setup_logging(const config::settings& cfg);

}  // namespace herald::app
