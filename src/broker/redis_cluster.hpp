#pragma once
// Redis Cluster, the parts that need no connection: the key-to-slot hash, the slot map read from
// CLUSTER SLOTS, and the MOVED / ASK redirections. Pure functions, tested without a server.
#include "redis_asio.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisReply;

namespace herald::broker::redis {

inline constexpr std::size_t k_slots = 16384;

// CRC16-CCITT (XModem), the cluster's key hash: crc16("123456789") == 0x31C3.
[[nodiscard]] std::uint16_t crc16(std::string_view data) noexcept;
// The slot of a key: of its hash tag (the bytes between the first '{' and the next '}') when
// that is not empty, else of the whole key.
[[nodiscard]] std::uint16_t key_slot(std::string_view key) noexcept;

// One master and the slot ranges it serves, from CLUSTER SLOTS. `nodes` holds the node ids of
// the master and its replicas: after a failover the promoted replica serves the same ranges, so
// the group is recognised by any id it shares with the one before.
struct cluster_master {
    redis_endpoint endpoint;
    std::string id;
    std::vector<std::string> nodes;  // master first
    std::vector<redis_endpoint> replicas;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges;  // inclusive
};
// nullopt when malformed. Ranges of one master are merged into one entry.
[[nodiscard]] std::optional<std::vector<cluster_master>> parse_cluster_slots(const redisReply* r);

// "-MOVED 3999 127.0.0.1:6381" / "-ASK 3999 127.0.0.1:6381".
struct redirect {
    bool ask = false;
    std::uint16_t slot = 0;
    redis_endpoint to;
};
[[nodiscard]] std::optional<redirect> parse_redirect(const redisReply* r);

}  // namespace herald::broker::redis
