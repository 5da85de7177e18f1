#pragma once
// Blocks for the hub's hand-offs between workers (hub::post), recycled per thread.
//
// A publish handed to its topic's owner and its answer handed back are one task each; with
// pipelined publishes a worker makes and frees dozens per loop turn, more than glibc's per-thread
// cache (7 blocks per size) keeps, so most went to the arena's slow paths (issue 15). A task is
// made on the sender's thread and freed on the receiver's: every block has one size, so that a
// worker's pool, filled by the tasks other workers sent it, serves the tasks it sends them.
#include <cstddef>

namespace herald::hub {

class task_pool {
public:
    // Every block's size; a larger task goes to operator new. A publish's hand-off to its
    // topic's owner (40 B) and its answer (112 B) fit; a subscription's (144 and 224 B) do not,
    // so that 10,000 clients subscribing at once fill no pool that stays held afterwards (a
    // pool of 512 B blocks added 26 B to each idle connection's share of RSS, bench idle_ws_10k).
    static constexpr std::size_t k_block = 128;
    // The most free blocks one thread keeps (k_block x k_max_free = 32 KiB at most per thread).
    static constexpr std::size_t k_max_free = 256;

    [[nodiscard]] static void* allocate(std::size_t n);
    static void deallocate(void* p, std::size_t n) noexcept;
    // The calling thread's free blocks (tests).
    [[nodiscard]] static std::size_t cached() noexcept;
    // Whether blocks are recycled at all (off under AddressSanitizer, so that it sees every
    // lifetime).
    [[nodiscard]] static bool recycling() noexcept;
};

}  // namespace herald::hub
