#pragma once
// Rate limits: one token bucket, and a bounded table of buckets keyed by a string (a client
// address, an API key id).
//
// Not thread-safe: keep one per worker (or per connection), touched only on its owning core.
// shared_rate_limiter below is the locked variant for the rare cross-worker case (a limit on new
// connections per address, where SO_REUSEPORT spreads one address over every worker); it is
// taken once per accepted connection, never on the per-message path.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace herald::auth {

using rate_clock = std::chrono::steady_clock;

class token_bucket {
public:
    // `rate` tokens per second refill up to `burst`; the bucket starts full. rate <= 0 means no
    // refill; burst is at least 1.
    token_bucket(double rate, double burst, rate_clock::time_point now) noexcept;

    // Takes `n` tokens if there are that many; otherwise takes nothing.
    [[nodiscard]] bool try_take(rate_clock::time_point now, double n = 1) noexcept;
    // How long until `n` tokens are there (zero if they are now); at most one day.
    [[nodiscard]] rate_clock::duration retry_after(rate_clock::time_point now,
                                                   double n = 1) const noexcept;
    [[nodiscard]] double tokens(rate_clock::time_point now) const noexcept;
    // True when the bucket has refilled to burst: it is then the same as a new one.
    [[nodiscard]] bool full(rate_clock::time_point now) const noexcept;

    [[nodiscard]] double rate() const noexcept { return rate_; }
    [[nodiscard]] double burst() const noexcept { return burst_; }

private:
    void refill(rate_clock::time_point now) noexcept;

    double rate_;
    double burst_;
    double tokens_;
    rate_clock::time_point last_;
};

// Whole seconds for a `Retry-After` header: the duration rounded up, at least 1.
[[nodiscard]] std::int64_t retry_after_seconds(rate_clock::duration d) noexcept;

// Buckets per key, at most `max_entries` of them. A new key past the cap evicts the least
// recently used one; an evicted key simply starts again with a full bucket, so the cap bounds
// memory without ever blocking a key. sweep() drops buckets that have refilled (idle keys).
class rate_limiter {
public:
    struct options {
        double rate = 10;   // tokens per second
        double burst = 20;  // bucket size
        std::size_t max_entries = 100'000;
    };

    explicit rate_limiter(options o) noexcept;

    [[nodiscard]] bool try_take(std::string_view key, rate_clock::time_point now, double n = 1);
    // Zero for a key that is not limited right now (including unknown keys).
    [[nodiscard]] rate_clock::duration retry_after(std::string_view key,
                                                   rate_clock::time_point now) const;
    // Drops up to `max_scan` least recently used entries that are full again; returns how many.
    std::size_t sweep(rate_clock::time_point now, std::size_t max_scan = 1024);

    [[nodiscard]] std::size_t size() const noexcept { return index_.size(); }
    [[nodiscard]] std::uint64_t evictions() const noexcept { return evictions_; }
    [[nodiscard]] const options& config() const noexcept { return opts_; }

private:
    struct entry {
        std::string key;
        token_bucket bucket;
    };
    struct hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using lru_list = std::list<entry>;  // front: most recently used

    options opts_;
    lru_list lru_;
    std::unordered_map<std::string, lru_list::iterator, hash, std::equal_to<>> index_;
    std::uint64_t evictions_ = 0;
};

// rate_limiter behind a mutex, for limits shared by all workers (see the top of this file).
class shared_rate_limiter {
public:
    explicit shared_rate_limiter(rate_limiter::options o) noexcept : limiter_(o) {}
    [[nodiscard]] bool try_take(std::string_view key, rate_clock::time_point now, double n = 1);
    [[nodiscard]] rate_clock::duration retry_after(std::string_view key,
                                                   rate_clock::time_point now) const;
    std::size_t sweep(rate_clock::time_point now, std::size_t max_scan = 1024);
    [[nodiscard]] std::size_t size() const;

private:
    mutable std::mutex mutex_;
    rate_limiter limiter_;
};

// Concurrent connections per key (per address), shared by all workers: try_acquire() when a
// connection is accepted, release() exactly once when it closes. An entry lives only while its
// count is positive, so the table never holds more entries than there are open connections.
// Locked; taken twice per connection, never per message.
class connection_counter {
public:
    explicit connection_counter(std::size_t max_per_key) noexcept : max_(max_per_key) {}
    [[nodiscard]] bool try_acquire(std::string_view key);
    void release(std::string_view key);
    // A reload changed the limit: streams held keep their slots, new ones see `max_per_key`.
    void set_max(std::size_t max_per_key) noexcept;
    [[nodiscard]] std::size_t count(std::string_view key) const;
    [[nodiscard]] std::size_t keys() const;

private:
    struct hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::size_t max_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::size_t, hash, std::equal_to<>> counts_;
};

}  // namespace herald::auth
