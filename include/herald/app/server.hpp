#pragma once
// Wiring: N workers (one thread and one io_context each), the hub, the broker, the listeners,
// signals and the graceful drain.
#include "herald/config/config.hpp"

#include <cstdint>
#include <functional>
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

    // How a reload (SIGHUP, POST /admin/reload) reads the config again: the file, the
    // environment and the flags, as at start-up; throws config::config_error. Set before run().
    void set_config_source(std::function<config::settings()> source);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Sets up spdlog from the config: level, and text or JSON lines on stderr.
void setup_logging(const config::settings& cfg);

}  // namespace herald::app
