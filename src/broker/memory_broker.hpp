#pragma once
// The in-process broker: each topic's stream lives on its owner worker, which assigns offsets,
// keeps history and hands every message to the hub once. One instance only; nothing survives a
// restart (every epoch changes).
#include "herald/broker/broker.hpp"
#include "history.hpp"
#include "herald/config/config.hpp"

#include <memory>
#include <vector>

namespace herald::broker {

class memory_broker final : public broker {
public:
    memory_broker(hub::hub& h, const config::settings& cfg);

    void publish(unsigned from, hub::publish_request&& req, publish_handler&& done) override;
    void resolve(unsigned owner, const std::string& topic,
                 const std::optional<hub::stream_pos>& since, subscribe_handler done) override;
    void history(unsigned from, const std::string& topic, std::optional<hub::stream_pos> since,
                 std::size_t limit, history_handler done) override;
    void on_tick(unsigned worker, time_point now) override;
    // One instance: nobody else to tell.
    void broadcast_disconnect(unsigned from, std::string user, broadcast_handler done) override;
    [[nodiscard]] bool ready() const noexcept override { return true; }
    [[nodiscard]] std::size_t history_bytes() const noexcept override;

private:
    // Applies `req` on its topic's owner worker. It takes what it keeps from `req` (the caller
    // answers from the result alone).
    publish_result publish_on_owner(unsigned owner, hub::publish_request& req);

    hub::hub& hub_;
    const config::settings& cfg_;
    std::vector<std::unique_ptr<history_store>> stores_;  // one per worker, owner-only
    std::vector<std::atomic<std::size_t>> bytes_;         // per worker, for metrics
};

}  // namespace herald::broker
