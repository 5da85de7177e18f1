#pragma once
// Per-worker store of the streams (epoch, offsets, recent messages) of the topics a worker owns.
// Bounded per topic by count and TTL, and as a whole by bytes (the oldest message goes first).
// Touched only by its worker's thread.
#include "herald/broker/broker.hpp"
#include "herald/common/net.hpp"
#include "herald/config/config.hpp"
#include "herald/hub/hub.hpp"
#include "herald/hub/message.hpp"

#include <boost/container/deque.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace herald::broker {

// history_policy and policy_for are in broker.hpp (GET /history reads them too).

enum class recovery { ok, epoch_changed, gap_too_large, bad_offset };
[[nodiscard]] const char* to_string(recovery r) noexcept;

// The rules every broker follows, whoever holds the stream (a worker's ring, a Redis list).
// A stream holds offsets first..top, consecutive (first = top + 1 when it holds none).

// Offsets from..to (inclusive); empty when from > to.
struct offset_range {
    std::uint64_t from = 1;
    std::uint64_t to = 0;
    [[nodiscard]] bool empty() const noexcept { return from > to; }
    [[nodiscard]] std::uint64_t size() const noexcept { return empty() ? 0 : to - from + 1; }
};

// What GET /history answers: with `after`, the oldest `limit` held messages after it (a reader
// pages forward from its position); without, the newest `limit` held messages.
[[nodiscard]] offset_range history_window(std::uint64_t first, std::uint64_t top,
                                          std::optional<std::uint64_t> after,
                                          std::size_t limit) noexcept;

// Whether a reader at `pos` can be brought up to `top` with the held messages, at most
// `max_messages` of them; when ok it gets exactly pos.offset + 1 .. top.
[[nodiscard]] recovery check_recovery(std::string_view epoch, std::uint64_t first,
                                      std::uint64_t top, const hub::stream_pos& pos,
                                      std::size_t max_messages) noexcept;

// A stream's held messages, oldest first, consecutive offsets: one circular array of (message,
// footprint) grown by doubling, nothing allocated while empty. The footprint and the oldest offset
// are kept here so that evicting a message made long ago reads none of its (cold) cache lines:
// with 1,000 topics x 100 messages, most of a worker's history is out of the CPU's caches.
class history_ring {
public:
    struct entry {
        hub::message_ptr message;
        std::size_t footprint = 0;
    };

    class const_iterator {
    public:
        using value_type = hub::message_ptr;
        using difference_type = std::ptrdiff_t;
        const_iterator(const history_ring& r, std::size_t i) noexcept : ring_(&r), i_(i) {}
        const hub::message_ptr& operator*() const noexcept { return (*ring_)[i_]; }
        const hub::message_ptr* operator->() const noexcept { return &(*ring_)[i_]; }
        const_iterator& operator++() noexcept {
            ++i_;
            return *this;
        }
        bool operator==(const const_iterator& o) const noexcept { return i_ == o.i_; }

    private:
        const history_ring* ring_;
        std::size_t i_;
    };

    history_ring() = default;
    history_ring(const history_ring&) = delete;
    history_ring& operator=(const history_ring&) = delete;
    ~history_ring() {
        while (!empty()) (void)pop_front();
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    // The oldest held offset; meaningful only when !empty().
    [[nodiscard]] std::uint64_t first_offset() const noexcept { return first_; }
    [[nodiscard]] const hub::message_ptr& operator[](std::size_t i) const noexcept {
        return slot(i)->message;
    }
    [[nodiscard]] const hub::message_ptr& front() const noexcept { return (*this)[0]; }
    [[nodiscard]] const hub::message_ptr& back() const noexcept { return (*this)[size_ - 1]; }
    [[nodiscard]] const_iterator begin() const noexcept { return {*this, 0}; }
    [[nodiscard]] const_iterator end() const noexcept { return {*this, size_}; }

    // `offset` is the message's: the one after back()'s.
    void push_back(hub::message_ptr m, std::uint64_t offset, std::size_t footprint);
    // Moves the oldest entry out.
    entry pop_front() noexcept;
    // Frees the array of an empty ring (an idle topic holds no history memory).
    void release_if_empty() noexcept;
    // Asks for the cache lines that the next push_back() and pop_front() touch.
    void prefetch_ends() const noexcept;

private:
    // Raw storage: a slot is constructed by push_back() and destroyed by pop_front(), so that a
    // push writes its (cold) slot without first reading what a moved-from entry left there.
    struct slot_storage {
        alignas(entry) unsigned char bytes[sizeof(entry)];
    };
    [[nodiscard]] entry* slot(std::size_t i) const noexcept {
        return std::launder(reinterpret_cast<entry*>(slots_[(head_ + i) & (cap_ - 1)].bytes));
    }

    std::unique_ptr<slot_storage[]> slots_;
    std::size_t cap_ = 0;  // a power of two
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::uint64_t first_ = 0;
};

class history_store {
public:
    // Key -> offset, and the keys' arrival order (oldest first).
    struct idempotency_keys {
        std::unordered_map<std::string, std::uint64_t> offsets;
        boost::container::deque<std::pair<time_point, std::string>> order;
        // Forgets the keys `window` or more old; whether none is left.
        bool expire(time_point now, std::chrono::milliseconds window);
        void pop_oldest();
    };

    struct stream {
        std::string topic;
        std::string epoch;
        std::uint64_t top = 0;
        std::uint64_t id = 0;
        history_policy policy;
        // Allocates nothing until its first message (nor Boost's deque of keys until its first
        // key): a topic without history (history.size 0) or without idempotency keys costs no
        // ring or key list.
        history_ring ring;
        std::size_t bytes = 0;
        time_point last_activity;
        // Idempotency keys seen within the window; made by the topic's first key and freed when
        // its last one expires (a topic that never sees a key holds one pointer, not ~100 B).
        std::unique_ptr<idempotency_keys> keys;
        // The owner shard's route for this topic (null: no subscriber), as of the shard's
        // routes_generation() `route_gen` (0: not looked up yet). Kept by the memory broker so
        // that a publish looks its topic up in one table, this store's, not in two.
        hub::shard::route* route = nullptr;
        std::uint64_t route_gen = 0;
    };

    explicit history_store(std::size_t max_bytes, std::uint64_t seed);

    [[nodiscard]] stream* find(const std::string& topic);
    // Creates the stream, with a fresh epoch, when the topic has none.
    stream& open(const std::string& topic, const history_policy& policy, time_point now);

    void append(stream& s, hub::message_ptr m);
    // Asks for the cache lines that append() will touch in `s`'s ring, so that the misses
    // overlap the work done before it (making the message).
    void prefetch(const stream& s) const noexcept { s.ring.prefetch_ends(); }
    // Whether append() would hold a message of `s` (history.size and history.max_bytes above 0).
    [[nodiscard]] bool keeps(const stream& s) const noexcept {
        return s.policy.size != 0 && max_bytes_ != 0;
    }
    // What append() does for a stream that keeps nothing (!keeps(s)), without a message.
    void append_none(stream& s, time_point now);

    // Messages after `pos`, all or nothing (check_recovery). Fills `out` only when ok.
    [[nodiscard]] recovery since(const stream& s, const hub::stream_pos& pos,
                                 std::size_t max_messages,
                                 std::vector<hub::message_ptr>& out) const;
    // The oldest offset the stream holds (top + 1 when none), and the held messages of `r`.
    [[nodiscard]] static std::uint64_t first(const stream& s) noexcept;
    static void copy(const stream& s, offset_range r, std::vector<hub::message_ptr>& out);

    // Idempotency: the offset of an earlier publish with `key`, if within the window.
    [[nodiscard]] std::optional<std::uint64_t> seen_key(stream& s, const std::string& key,
                                                        time_point now,
                                                        std::chrono::milliseconds window);
    void remember_key(stream& s, std::string key, std::uint64_t offset, time_point now);

    // Drops expired messages, keys and idle streams that nobody is subscribed to.
    void expire(time_point now, std::chrono::milliseconds key_window,
                const std::function<bool(const std::string&)>& has_subscribers);

    [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] std::size_t streams() const noexcept { return streams_.size(); }
    [[nodiscard]] std::string new_epoch();

private:
    void evict_oldest();
    void pop_front(stream& s);
    // Releases an evicted message a few evictions later, its cache lines prefetched meanwhile:
    // freeing a message made long ago (its count, its strings, its payload's block) otherwise
    // stalls on several cache misses, the main cost of history in the publish-only benchmark.
    void retire(history_ring::entry e);
    static constexpr std::size_t k_retire_delay = 8;
    static constexpr std::size_t k_retire_max_bytes = 4096;
    void compact_fifo();

    std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    std::size_t live_messages_ = 0;
    std::uint64_t next_stream_id_ = 0;
    std::mt19937_64 rng_;
    // Open addressing (a publish's lookup reads one metadata group and one slot, not a bucket,
    // the node before and the node); the streams themselves are separate blocks and never move.
    boost::unordered_flat_map<std::string, std::unique_ptr<stream>> streams_;
    std::unordered_map<std::uint64_t, stream*> by_id_;
    // Every message appended, in arrival order, for eviction by total bytes; entries whose message
    // already left its ring are skipped and periodically compacted away.
    std::deque<std::pair<std::uint64_t, std::uint64_t>> fifo_;  // (stream id, offset)
    std::array<hub::message_ptr, k_retire_delay> retiring_;
    std::size_t retire_at_ = 0;
};

}  // namespace herald::broker
