#pragma once
// A stream session's subscriptions. The first lives inside the session, so a connection and its
// first topic are one allocation (issue 15: most streams have one topic, and a list block and a
// block per subscription cost an idle connection about 50 B); further topics each get a block of
// their own, listed in a vector made with the second.
//
// Invariants: an element never moves while it is listed (the hub holds pointers to it); the
// inline slot is engaged exactly when its `owner` is set (emplace() sets it); listing order is
// the order of emplace() calls while nothing is erased (an SSE stream's ids rely on it: it never
// erases before clear()).
#include <cstddef>
#include <memory>
#include <vector>

namespace herald::net {

template <class T>
class sub_list {
public:
    sub_list() = default;
    sub_list(const sub_list&) = delete;
    sub_list& operator=(const sub_list&) = delete;

    [[nodiscard]] std::size_t size() const noexcept {
        return (first_.owner ? 1 : 0) + (rest_ ? rest_->size() : 0);
    }
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }

    // A new element owned by `owner` (not null), listed last.
    template <class Owner>
    T& emplace(Owner* owner) {
        // The inline slot is reused only while nothing else is listed, so that listing order
        // stays emplace order (see above).
        if (!first_.owner && (!rest_ || rest_->empty())) {
            first_.owner = owner;
            return first_;
        }
        if (!rest_) rest_ = std::make_unique<std::vector<std::unique_ptr<T>>>();
        auto& s = *rest_->emplace_back(std::make_unique<T>());
        s.owner = owner;
        return s;
    }

    // Destroys `s` (listed here); the others keep their order.
    void erase(T& s) {
        if (&s == &first_) {
            reset_first();
            return;
        }
        if (!rest_) return;
        for (auto it = rest_->begin(); it != rest_->end(); ++it) {
            if (it->get() != &s) continue;
            rest_->erase(it);
            if (rest_->empty()) rest_.reset();
            return;
        }
    }

    void clear() noexcept {
        reset_first();
        rest_.reset();
    }

    // Calls f(T&) for each element in listing order; f must not emplace or erase.
    template <class F>
    void for_each(F&& f) {
        if (first_.owner) f(first_);
        if (rest_)
            for (auto& s : *rest_) f(*s);
    }
    template <class F>
    void for_each(F&& f) const {
        if (first_.owner) f(first_);
        if (rest_)
            for (const auto& s : *rest_) f(static_cast<const T&>(*s));
    }
    // The first element for which pred(T&) holds, or null.
    template <class Pred>
    T* find_if(Pred&& pred) {
        if (first_.owner && pred(first_)) return &first_;
        if (rest_)
            for (auto& s : *rest_)
                if (pred(*s)) return s.get();
        return nullptr;
    }

private:
    void reset_first() noexcept {
        if (!first_.owner) return;
        // Destroyed and made anew in place: what it held goes, and the slot is free again.
        std::destroy_at(&first_);
        std::construct_at(&first_);
    }

    T first_;
    std::unique_ptr<std::vector<std::unique_ptr<T>>> rest_;
};

}  // namespace herald::net
