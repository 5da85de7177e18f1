#pragma once
// Where a Sentinel-managed shard's master is. One watch per shard, on one worker's io_context:
// per sentinel a command link (SENTINEL MASTER <name>, asked at start, once a second, and at
// once on +switch-master or when a link to the master says it is not one) and a pub/sub link
// following +switch-master. Sentinels may fail: any one that answers is enough. Answers are
// ordered by the master's config-epoch (a switch increments it), so a lagging sentinel never
// moves herald back to an old master. Every wait is a link deadline (redis_asio.hpp): a stalled
// sentinel times out, it never hangs the watch. Runs on its io_context's thread only.
#include "redis_asio.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::broker {

namespace redis {

// A SENTINEL MASTER answer (a flat list of field, value): the master's address and the
// config-epoch that placed it there. nullopt when malformed.
struct sentinel_master {
    redis_endpoint endpoint;
    std::int64_t config_epoch = 0;
};
[[nodiscard]] std::optional<sentinel_master> parse_sentinel_master(const redisReply* r);

// A +switch-master payload: "<name> <old ip> <old port> <new ip> <new port>". The new address
// when it names `master`.
[[nodiscard]] std::optional<redis_endpoint> parse_switch_master(std::string_view payload,
                                                                std::string_view master);

}  // namespace redis

class sentinel_watch {
public:
    struct options {
        std::vector<redis_endpoint> sentinels;
        std::string master;        // the name the sentinels monitor
        redis_link::options link;  // timeouts and back-off for the sentinel links
    };
    sentinel_watch(asio::io_context& ioc, options opt, std::uint64_t seed);
    ~sentinel_watch();
    sentinel_watch(const sentinel_watch&) = delete;
    sentinel_watch& operator=(const sentinel_watch&) = delete;

    void start();
    // Asks every connected sentinel now (also runs once a second from the broker's tick).
    void query();

    // A master address newer (by config-epoch) than the last one; the first answer too.
    std::function<void(const redis_endpoint&)> on_master;

    [[nodiscard]] std::size_t sentinels_up() const noexcept;
    [[nodiscard]] std::size_t sentinels() const noexcept { return links_.size(); }
    [[nodiscard]] const std::optional<redis_endpoint>& master() const noexcept { return master_; }

private:
    struct sentinel {
        std::unique_ptr<redis_link> cmd;
        std::unique_ptr<redis_link> sub;
        bool asking = false;  // a SENTINEL MASTER is in flight on cmd
    };
    void ask(sentinel& s);
    void on_answer(const redis::sentinel_master& m);

    options opt_;
    std::vector<sentinel> links_;
    std::optional<redis_endpoint> master_;
    std::int64_t config_epoch_ = -1;
    bool quiet_ = false;  // a failed answer was logged; the next ones are not
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herald::broker
