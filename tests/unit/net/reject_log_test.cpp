#include "herald/net/reject_log.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

using namespace herald;
using namespace herald::net;
using namespace std::chrono_literals;

namespace {
// Captures what spdlog's default logger writes while it lives.
class captured_log {
public:
    captured_log() : previous_(spdlog::default_logger()) {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
        sink->set_pattern("%v");
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    }
    ~captured_log() { spdlog::set_default_logger(previous_); }
    std::vector<std::string> lines() const {
        std::vector<std::string> out;
        std::istringstream in(out_.str());
        for (std::string l; std::getline(in, l);) out.push_back(l);
        return out;
    }

private:
    std::shared_ptr<spdlog::logger> previous_;
    std::ostringstream out_;
};
}  // namespace

TEST(RejectLog, FirstRefusalIsLoggedTheRestSummarisedOncePerInterval) {
    captured_log log;
    reject_log r(60s);
    const auto t0 = time_point{} + 1h;
    for (int i = 0; i < 50; ++i)
        r.note(reject_log::reason::connections_per_ip, "203.0.113.5", t0 + i * 100ms);
    r.note(reject_log::reason::new_connections_per_ip, "203.0.113.5", t0);  // another reason
    r.tick(t0 + 30s);                                                       // nothing ended yet
    ASSERT_EQ(log.lines().size(), 2u);
    EXPECT_NE(log.lines()[0].find("rejected 203.0.113.5: too many connections from this address"),
              std::string::npos)
        << log.lines()[0];
    EXPECT_NE(log.lines()[1].find("too many new connections"), std::string::npos);

    r.tick(t0 + 60s);
    ASSERT_EQ(log.lines().size(), 3u);
    EXPECT_NE(log.lines()[2].find("203.0.113.5: too many connections from this address "
                                  "(limits.connections_per_ip; 429 rate_limited): 49 more in the "
                                  "last 60 s"),
              std::string::npos)
        << log.lines()[2];
    EXPECT_EQ(r.entries(), 1u);  // the quiet reason was forgotten

    // A quiet interval forgets the address; its next refusal is logged at once again.
    r.tick(t0 + 121s);
    EXPECT_EQ(r.entries(), 0u);
    EXPECT_EQ(log.lines().size(), 3u);
    r.note(reject_log::reason::connections_per_ip, "203.0.113.5", t0 + 122s);
    EXPECT_EQ(log.lines().size(), 4u);
}

TEST(RejectLog, TheTableIsBoundedAndTheOverflowIsSummarised) {
    captured_log log;
    reject_log r(60s);
    const auto t0 = time_point{} + 1h;
    const std::size_t n = reject_log::k_max_entries + 500;
    for (std::size_t i = 0; i < n; ++i)
        r.note(reject_log::reason::publish_rate,
               "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), t0);
    EXPECT_EQ(r.entries(), reject_log::k_max_entries);
    EXPECT_EQ(log.lines().size(), reject_log::k_max_entries);
    r.tick(t0 + 60s);
    EXPECT_EQ(r.entries(), 0u);
    const auto lines = log.lines();
    ASSERT_EQ(lines.size(), reject_log::k_max_entries + 1);
    EXPECT_NE(lines.back().find("rejected 500 more clients from other addresses in the last 60 s"),
              std::string::npos)
        << lines.back();
}
