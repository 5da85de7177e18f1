#include "herald/broker/broker.hpp"

#include "memory_broker.hpp"
#include "redis_broker.hpp"

namespace herald::broker {

std::unique_ptr<broker> make_broker(hub::hub& h, const config::settings& cfg,
                                    const std::vector<asio::io_context*>& contexts) {
    if (cfg.broker == "redis") return std::make_unique<redis_broker>(h, cfg, contexts);
    return std::make_unique<memory_broker>(h, cfg);
}

}  // namespace herald::broker
