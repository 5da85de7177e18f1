// herald: flags, config, logging, then the server. The only code the tests do not link.
#include "herald/app/server.hpp"
#include "herald/auth/context.hpp"
#include "herald/app/probe.hpp"
#include "herald/auth/dev_token.hpp"
#include "herald/wire/topic.hpp"
#include "herald/net/endpoints.hpp"
#include "herald/net/tls.hpp"
#include "herald/config/config.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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
    // herald token: a development JWT signed with the configured HS256 key.
    auth::dev_token_request token_req;
    std::string token_ttl = "1h";
    auto* token_cmd = cli.add_subcommand(
        "token", "print a development JWT signed with the config's first HS256 key");
    token_cmd->add_option("-c,--config", config_path, "YAML config file with auth.jwt.keys");
    token_cmd->add_option("--sub", token_req.sub, "the token's subject (user)")->required();
    token_cmd->add_option("--topics", token_req.topics, "topic patterns it may read")
        ->delimiter(',');
    token_cmd->add_option("--publish", token_req.publish, "topic patterns it may publish on")
        ->delimiter(',');
    token_cmd->add_option("--ttl", token_ttl, "lifetime: 30s, 15m, 1h, 7d (default 1h)");
    // herald probe: a synthetic client (connect, subscribe, publish, receive) against a server.
    app::probe_options probe_opts;
    auto* probe_cmd = cli.add_subcommand(
        "probe", "connect, subscribe, publish and receive; print connect time and latency");
    probe_cmd->add_option("url", probe_opts.url, "http(s)://host:port of a herald")->required();
    probe_cmd->add_option("--api-key", probe_opts.api_key, "API key for the publish");
    probe_cmd->add_option("--token", probe_opts.token, "JWT for the subscribe (default: the key)");
    probe_cmd->add_option("--topic", probe_opts.topic, "topic to use (default: probe)");
    probe_cmd->add_option("--count", probe_opts.count, "messages to send (default 1)")
        ->check(CLI::Range(1, 10000));
    probe_cmd->add_option("--cacert", probe_opts.cacert,
                          "https/wss: CA file to verify the server with (default: the system's)");
    probe_cmd->add_option("--jwt-secret", probe_opts.jwt_secret,
                          "HS256 secret: sign a short-lived token and check its refresh");
    long long probe_token_ttl = 4;
    probe_cmd->add_option("--token-ttl", probe_token_ttl, "seconds the signed token lives (4..600)")
        ->check(CLI::Range(4, 600));
    // herald genconfig: a commented production config with fresh random secrets.
    std::string genconfig_out;
    auto* genconfig_cmd = cli.add_subcommand(
        "genconfig", "write a production config with a random publish key and JWT secret");
    genconfig_cmd->add_option("-o,--output", genconfig_out, "file to write (default: stdout)");
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
    if (probe_cmd->parsed()) {
        probe_opts.token_ttl = std::chrono::seconds(probe_token_ttl);
        if (!wire::is_valid_topic(probe_opts.topic)) {
            std::cerr << "herald: probe: invalid --topic\n";
            return 2;
        }
        return app::run_probe(probe_opts);
    }
    if (genconfig_cmd->parsed()) {
        const auto text = config::production_config(
            auth::random_secret(32), auth::random_secret(48), auth::random_secret(32));
        if (genconfig_out.empty()) {
            std::cout << text;
            return 0;
        }
        // Secrets inside: created for the owner only, never over an existing file.
        if (std::filesystem::exists(genconfig_out)) {
            std::cerr << "herald: genconfig: " << genconfig_out << " exists; not overwritten\n";
            return 2;
        }
        std::ofstream f(genconfig_out);
        std::filesystem::permissions(genconfig_out, std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
        f << text;
        if (!f.flush()) {
            std::cerr << "herald: genconfig: cannot write " << genconfig_out << '\n';
            return 1;
        }
        std::cerr << "herald: wrote " << genconfig_out << "; check it with herald --check-config "
                  << genconfig_out << '\n';
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
        if (token_cmd->parsed()) {
            const auto ttl = config::parse_duration(token_ttl);
            if (!ttl || ttl->count() < 1000)
                throw config::config_error("--ttl", "expected a duration of 1s or more, e.g. 1h");
            token_req.ttl = std::chrono::duration_cast<std::chrono::seconds>(*ttl);
            std::cout << auth::make_dev_token(cfg, token_req, std::chrono::system_clock::now())
                      << '\n';
            return 0;
        }
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
