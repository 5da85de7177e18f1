#include "herald/auth/audit.hpp"

#include "herald/wire/envelope.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace herald::auth {

namespace {
// Lines waiting for the sink; past it the oldest are dropped (overrun), never a worker blocked.
constexpr std::size_t k_queue_lines = 8192;

std::string quoted_member(std::string_view name, std::string_view value) {
    std::string o = ",\"";
    o += name;
    o += "\":";
    o += wire::json_quote(value);
    return o;
}
}  // namespace

audit_log::audit_log(const config::settings& cfg) : sample_one_in_(cfg.audit.sample_one_in) {
    const auto& k = cfg.audit.pseudonym_key;
    if (k.empty()) {
        if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1)
            throw config::config_error("audit.pseudonym_key", "no random bytes for a key");
    } else {
        SHA256(reinterpret_cast<const unsigned char*>(k.data()), k.size(), key_.data());
    }
    if (cfg.audit.sink.empty()) return;
    spdlog::sink_ptr sink;
    try {
        if (cfg.audit.sink == "stderr")
            sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
        else
            sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.audit.sink);
    } catch (const spdlog::spdlog_ex& e) {
        throw config::config_error("audit.sink", e.what());
    }
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%fZ\",%v}", spdlog::pattern_time_type::utc, "\n"));
    pool_ = std::make_shared<spdlog::details::thread_pool>(k_queue_lines, 1U);
    logger_ = std::make_shared<spdlog::async_logger>("audit", std::move(sink), pool_,
                                                     spdlog::async_overflow_policy::overrun_oldest);
    logger_->set_level(spdlog::level::info);
    logger_->flush_on(spdlog::level::info);
}

audit_log::~audit_log() {
    if (logger_) logger_->flush();
    // Join the pool's thread (it drains its queue first) before the logger and its sink go: that
    // thread touches the sink until then. The logger holds the pool only weakly.
    pool_.reset();
}

std::string audit_log::pseudonym(std::string_view value) const {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
         reinterpret_cast<const unsigned char*>(value.data()), value.size(), mac, &len);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < 8 && i < len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

void audit_log::write(std::string_view event, std::string members) {
    std::string line = "\"event\":";
    line += wire::json_quote(event);
    line += members;
    logger_->info(line);
    written_.fetch_add(1, std::memory_order_relaxed);
}

void audit_log::auth_failure(std::string_view reason, std::string_view detail,
                             std::string_view client, std::string_view path,
                             std::string_view user) {
    if (!enabled()) return;
    std::string m = quoted_member("reason", reason) + quoted_member("detail", detail) +
                    quoted_member("client", pseudonym(client)) + quoted_member("path", path);
    if (!user.empty()) m += quoted_member("user", pseudonym(user));
    write("auth_failure", std::move(m));
}

void audit_log::refused(std::string_view reason, std::string_view client, std::string_view path) {
    if (!enabled() || sample_one_in_ == 0) return;
    // Per thread, so that sampling takes no shared counter: each worker logs 1 in N of its own.
    thread_local std::size_t seen = 0;
    if (seen++ % sample_one_in_ != 0) return;
    write("refused", quoted_member("reason", reason) + quoted_member("client", pseudonym(client)) +
                         quoted_member("path", path) +
                         ",\"sample_one_in\":" + std::to_string(sample_one_in_));
}

void audit_log::admin_action(std::string_view action, std::string_view outcome, std::string_view by,
                             std::string_view client, std::string_view user) {
    if (!enabled()) return;
    std::string m = quoted_member("action", action) + quoted_member("outcome", outcome) +
                    quoted_member("by", by);
    if (!client.empty()) m += quoted_member("client", pseudonym(client));
    if (!user.empty()) m += quoted_member("user", pseudonym(user));
    write("admin", std::move(m));
}

}  // namespace herald::auth
