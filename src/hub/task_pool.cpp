#include "herald/hub/task_pool.hpp"

#include "herald/common/block_cache.hpp"

#include <new>

namespace herald::hub {

namespace {
using cache = block_cache<task_pool, 1, task_pool::k_max_free>;
}  // namespace

void* task_pool::allocate(std::size_t n) {
    if (n <= k_block) {
        if (void* p = cache::take()) return p;
        return ::operator new(k_block);
    }
    return ::operator new(n);
}

void task_pool::deallocate(void* p, std::size_t n) noexcept {
    if (n <= k_block && cache::give(p)) return;
    ::operator delete(p);
}

std::size_t task_pool::cached() noexcept {
    return cache::cached();
}

bool task_pool::recycling() noexcept {
    return cache::k_enabled;
}

}  // namespace herald::hub
