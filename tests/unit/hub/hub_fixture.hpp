#pragma once
// The hub and the memory broker without sockets: k_workers io_contexts, all run on the test
// thread by polling each in turn (a shard needs only single-threaded access per context).
#include "broker/memory_broker.hpp"
#include "herald/config/config.hpp"
#include "herald/hub/hub.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <vector>

namespace herald::test {

class hub_fixture : public ::testing::Test {
protected:
    static constexpr unsigned k_workers = 3;

    // Builds the hub and the broker from `cfg` (a test adjusts cfg first).
    void start() {
        std::vector<asio::io_context*> ptrs;
        for (auto& c : ctx) ptrs.push_back(&c);
        h = std::make_unique<hub::hub>(ptrs);
        b = std::make_unique<broker::memory_broker>(*h, cfg);
        h->set_broker(*b);
    }

    // Polls every context until none has anything left to run (bounded: a loop that never goes
    // idle fails the test).
    void run() {
        for (int round = 0; round < 100'000; ++round) {
            std::size_t n = 0;
            for (auto& c : ctx) {
                c.restart();
                n += c.poll();
            }
            if (n == 0) return;
        }
        FAIL() << "contexts never went idle";
    }

    // In this order so that the broker goes first and the settings it reads last; a derived
    // fixture's members (subscribers) go before all of them.
    config::settings cfg;
    std::array<asio::io_context, k_workers> ctx;
    std::unique_ptr<hub::hub> h;
    std::unique_ptr<broker::memory_broker> b;
};

}  // namespace herald::test
