#pragma once
// A move-only callable with room inline for a larger target than std::function's (issue 15: a
// publish's completion captures the responder, its start time and trace id, about 100 bytes;
// libstdc++'s std::function keeps 16 bytes inline and allocates for the rest, once per publish).
// A target that fits `Inline` bytes and moves without throwing lives inside the object; any other
// goes to the heap, so every callable is accepted. Move-only: a target need not be copyable, and
// a completion is never run twice by accident of a copy. Destroying one that was never called
// destroys its target (and frees its block): what it captured is released either way.
#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace herald {

template <class Sig, std::size_t Inline>
class unique_function;

template <class R, class... Args, std::size_t Inline>
class unique_function<R(Args...), Inline> {
    static_assert(Inline >= sizeof(void*), "room for at least the heap target's pointer");

public:
    unique_function() noexcept = default;
    unique_function(std::nullptr_t) noexcept {}  // NOLINT: as std::function's

    template <class F, class D = std::decay_t<F>>
    requires(!std::is_same_v<D, unique_function> && std::is_invocable_r_v<R, D&, Args...>)
        unique_function(F&& f) {  // NOLINT: implicit, as std::function's
        if constexpr (stored_inline<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            ops_ = &inline_ops<D>;
        } else {
            ::new (static_cast<void*>(buf_)) D*(new D(std::forward<F>(f)));
            ops_ = &heap_ops<D>;
        }
    }

    unique_function(unique_function&& o) noexcept { take(o); }
    unique_function& operator=(unique_function&& o) noexcept {
        if (this != &o) {
            reset();
            take(o);
        }
        return *this;
    }
    unique_function& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }
    unique_function(const unique_function&) = delete;
    unique_function& operator=(const unique_function&) = delete;
    ~unique_function() { reset(); }

    [[nodiscard]] explicit operator bool() const noexcept { return ops_ != nullptr; }

    // Requires a target (as std::function's, minus the exception).
    R operator()(Args... args) { return ops_->invoke(buf_, std::forward<Args>(args)...); }

    // Whether a callable of type F is kept inside the object (no allocation).
    template <class F>
    static constexpr bool stored_inline =
        sizeof(F) <= Inline &&
        alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

private:
    struct ops {
        R (*invoke)(void* self, Args&&... args);
        // Moves the target from `from` into the raw storage `to` and ends it at `from`.
        void (*relocate)(void* from, void* to) noexcept;
        void (*destroy)(void* self) noexcept;
    };

    template <class D>
    static D& inline_target(void* p) noexcept {
        return *std::launder(static_cast<D*>(p));
    }
    template <class D>
    static D*& heap_target(void* p) noexcept {
        return *std::launder(static_cast<D**>(p));
    }

    template <class D>
    static constexpr ops inline_ops{[](void* self, Args&&... args) -> R {
                                        return std::invoke(inline_target<D>(self),
                                                           std::forward<Args>(args)...);
                                    },
                                    [](void* from, void* to) noexcept {
                                        D& f = inline_target<D>(from);
                                        ::new (to) D(std::move(f));
                                        f.~D();
                                    },
                                    [](void* self) noexcept { inline_target<D>(self).~D(); }};

    template <class D>
    static constexpr ops heap_ops{
        [](void* self, Args&&... args) -> R {
            return std::invoke(*heap_target<D>(self), std::forward<Args>(args)...);
        },
        [](void* from, void* to) noexcept { ::new (to) D*(heap_target<D>(from)); },
        [](void* self) noexcept { delete heap_target<D>(self); }};

    void take(unique_function& o) noexcept {
        if (o.ops_ == nullptr) return;
        o.ops_->relocate(o.buf_, buf_);
        ops_ = std::exchange(o.ops_, nullptr);
    }
    void reset() noexcept {
        if (auto* o = std::exchange(ops_, nullptr)) o->destroy(buf_);
    }

    alignas(std::max_align_t) unsigned char buf_[Inline];
    const ops* ops_ = nullptr;
};

}  // namespace herald
