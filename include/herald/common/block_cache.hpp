#pragma once
// Per-thread free lists of memory blocks, for objects a worker makes and frees many times per
// loop turn (messages, the hub's hand-offs, publish jobs): a pipelined batch overflows glibc's
// per-size cache (7 chunks) into its slower bins. A block is taken by the thread that makes an
// object and given back by the thread that frees it.
//
// The lists are trivially destructible, so they stay usable while the thread exits: a guard
// (constructed with them on first use) frees the kept blocks when the thread's destructors run
// and marks the lists closed, after which a block given back on that thread (by another
// thread_local's or a static's destructor) is declined, to go straight to operator delete, and
// none is handed out again. Off under AddressSanitizer, so that it sees every lifetime.
#include "herald/common/sanitizers.hpp"

#include <array>
#include <cstddef>
#include <new>
#include <type_traits>

namespace herald {

// `Tag` names one cache (each its own lists), `Classes` size classes of at most `Max` blocks
// each. The caller knows a block's size and class; blocks come from plain ::operator new.
template <class Tag, std::size_t Classes, std::size_t Max>
class block_cache {
public:
    static constexpr bool k_enabled = !k_address_sanitizer;

    // A kept block of class `cls`, or nullptr (none kept, closed, or disabled).
    [[nodiscard]] static void* take(std::size_t cls = 0) noexcept {
        if constexpr (!k_enabled) return nullptr;
        auto& l = lists();
        auto& count = l.count[cls];
        return count != 0 ? l.blocks[cls][--count] : nullptr;  // 0 once closed
    }
    // Keeps `p` for class `cls`; false when it was not kept (full, closed, or disabled) and the
    // caller frees it.
    [[nodiscard]] static bool give(void* p, std::size_t cls = 0) noexcept {
        if constexpr (!k_enabled) return false;
        auto& l = lists();
        auto& count = l.count[cls];
        if (l.closed || count == Max) return false;
        l.blocks[cls][count++] = p;
        return true;
    }
    // The calling thread's kept blocks of class `cls` (tests).
    [[nodiscard]] static std::size_t cached(std::size_t cls = 0) noexcept {
        return lists().count[cls];
    }

private:
    struct state {
        std::array<std::array<void*, Max>, Classes> blocks;
        std::array<std::size_t, Classes> count;
        bool closed;
    };
    struct guard {
        state& s;
        explicit guard(state& l) noexcept : s(l) {}
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;
        ~guard() {
            for (std::size_t c = 0; c < Classes; ++c) {
                for (std::size_t i = 0; i < s.count[c]; ++i) ::operator delete(s.blocks[c][i]);
                s.count[c] = 0;
            }
            s.closed = true;
        }
    };
    static state& lists() noexcept {
        static_assert(std::is_trivially_destructible_v<state>);
        thread_local constinit state s{};
        if (!s.closed) {
            thread_local guard g{s};  // constructed once per thread
        }
        return s;
    }
};

}  // namespace herald
