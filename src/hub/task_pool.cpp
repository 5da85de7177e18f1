#include "herald/hub/task_pool.hpp"

#include "herald/common/sanitizers.hpp"

#include <array>
#include <new>
#include <type_traits>

namespace herald::hub {

namespace {

constexpr bool k_recycle = !k_address_sanitizer;

struct free_list {
    std::array<void*, task_pool::k_max_free> blocks;
    std::size_t count;
    bool closed;  // the thread is ending: blocks freed from now on go back to the heap
};

// Frees the thread's blocks when it ends (a worker's, or the main thread's: tasks dropped at
// shutdown are freed by whoever destroys the hub).
struct free_list_guard {
    free_list& list;
    explicit free_list_guard(free_list& l) noexcept : list(l) {}
    free_list_guard(const free_list_guard&) = delete;
    free_list_guard& operator=(const free_list_guard&) = delete;
    ~free_list_guard() {
        for (std::size_t i = 0; i < list.count; ++i) ::operator delete(list.blocks[i]);
        list.count = 0;
        list.closed = true;
    }
};

free_list& cache() {
    static_assert(std::is_trivially_destructible_v<free_list>);
    thread_local constinit free_list c{};
    if (!c.closed) {
        thread_local free_list_guard guard{c};  // constructed once per thread
    }
    return c;
}

}  // namespace

void* task_pool::allocate(std::size_t n) {
    if (k_recycle && n <= k_block) {
        auto& c = cache();
        if (c.count != 0) return c.blocks[--c.count];  // 0 once closed
        return ::operator new(k_block);
    }
    return ::operator new(n);
}

void task_pool::deallocate(void* p, std::size_t n) noexcept {
    if (k_recycle && n <= k_block) {
        auto& c = cache();
        if (!c.closed && c.count < k_max_free) {
            c.blocks[c.count++] = p;
            return;
        }
    }
    ::operator delete(p);
}

std::size_t task_pool::cached() noexcept {
    return cache().count;
}

bool task_pool::recycling() noexcept {
    return k_recycle;
}

}  // namespace herald::hub
