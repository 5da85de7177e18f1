// herald: flags, config, logging, then the server. The only code the tests do not link.
#include "herald/app/server.hpp"
#include "herald/auth/context.hpp"
#include "herald/net/endpoints.hpp"
#include "herald/net/tls.hpp"
#include "herald/config/config.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
    using namespace herald;
    CLI::App cli{"herald: a WebSocket and Server-Sent Events push server"};
    std::string config_path;
    std::string check_path;
    std::string listen;
    int workers = -1;
    std::string log_level;
    cli.add_option("-c,--config", config_path,
                   "YAML config file (default: config/herald.yaml if present)");
    cli.add_option("--check-config", check_path,
                   "validate this config file and exit (0 valid, 2 invalid)");
    cli.add_option("-l,--listen", listen, "address:port, overrides listen");
    cli.add_option("-w,--workers", workers, "event-loop threads, overrides workers (0 = cores)");
    cli.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off");
    bool list_endpoints = false;
    cli.add_flag("--list-endpoints", list_endpoints,
                 "print the HTTP endpoints (path, method, access class) as JSON lines and exit");
    bool print_defaults = false;
    cli.add_flag("--print-defaults", print_defaults,
                 "print every config key with its compiled default (YAML) and exit");
    cli.set_version_flag("--version", "herald 0.1.0");
    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version end here with 0; a command-line error exits 2, as a config error.
        const int rc = cli.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (print_defaults) {
        std::cout << config::defaults_yaml();
        return 0;
    }
    if (list_endpoints) {
        for (const auto& e : net::endpoints()) std::cout << net::endpoint_json(e) << '\n';
        return 0;
    }

    config::settings cfg;
    const auto env = [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    // What start-up reads, in this order; a reload (SIGHUP, POST /admin/reload) reads it again.
    const auto read_config = [&]() {
        config::settings c;
        if (!config_path.empty()) c = config::load_file(config_path);
        config::apply_env(c, env);
        if (!listen.empty()) config::set_listen(c, listen, "--listen");
        if (workers >= 0) config::set_workers(c, workers, "--workers");
        if (!log_level.empty()) config::set_log_level(c, log_level, "--log-level");
        return c;
    };
    try {
        // --check-config reads what start-up reads (file, environment, flags) and refuses what
        // start-up refuses, short of binding the address.
        if (!check_path.empty())
            config_path = check_path;
        else if (config_path.empty() && std::filesystem::exists("config/herald.yaml"))
            config_path = "config/herald.yaml";
        cfg = read_config();
        if (!check_path.empty()) {
            auth::context check(cfg, env);         // keys, PEM files, origins, proxies
            (void)net::tls::load_configured(cfg);  // certificate, key, and that they match
            std::cout << check_path << ": ok\n";
            return 0;
        }
    } catch (const config::config_error& e) {
        std::cerr << "herald: config error: " << e.what() << '\n';
        return 2;
    }

    app::setup_logging(cfg);
    if (!config_path.empty()) spdlog::info("config: {}", config_path);
    try {
        app::server srv(cfg);
        srv.set_config_source(read_config);
        return srv.run();
    } catch (const std::exception& e) {
        spdlog::critical("fatal: {}", e.what());
        return 1;
    }
}
