#pragma once
// A FIFO on a ring: taking from the front moves none of the other elements (a vector's erase at
// the front moves them all). An HTTP session's answer slots live in one (sessions.hpp): a
// pipelined batch of 32 requests answered in order erased one slot per answer and moved up to 31
// others each time, about 300 instructions per publish. Room is a power of two, grows by doubling
// and is kept (as a vector's capacity is), so a steady pipeline allocates nothing.
#include <cstddef>
#include <utility>
#include <vector>

namespace herald::net {

template <class T>
class fifo_ring {
public:
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    // i < size(): the i-th element from the front.
    T& operator[](std::size_t i) noexcept { return buf_[(head_ + i) & (buf_.size() - 1)]; }
    const T& operator[](std::size_t i) const noexcept {
        return buf_[(head_ + i) & (buf_.size() - 1)];
    }
    T& front() noexcept { return (*this)[0]; }
    T& back() noexcept { return (*this)[size_ - 1]; }
    void push_back(T v) {
        if (size_ == buf_.size()) grow();
        (*this)[size_] = std::move(v);
        ++size_;
    }
    // The front element is reset to T{} at once (what it held is released now, not when its
    // place is reused).
    void pop_front() noexcept {
        front() = T{};
        head_ = (head_ + 1) & (buf_.size() - 1);
        --size_;
    }
    void clear() noexcept {
        while (size_ != 0) pop_front();
        head_ = 0;
    }
    [[nodiscard]] std::size_t capacity() const noexcept { return buf_.size(); }

private:
    void grow() {
        std::vector<T> bigger(buf_.empty() ? 4 : buf_.size() * 2);
        for (std::size_t i = 0; i < size_; ++i) bigger[i] = std::move((*this)[i]);
        buf_.swap(bigger);
        head_ = 0;
    }
    std::vector<T> buf_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

}  // namespace herald::net
