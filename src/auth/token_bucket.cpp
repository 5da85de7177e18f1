#include "herald/auth/token_bucket.hpp"

#include <algorithm>
#include <cmath>

namespace herald::auth {
namespace {

constexpr auto k_max_wait = std::chrono::hours(24);
// Keys are addresses or key ids; a longer one is cut so one entry stays small.
constexpr std::size_t k_max_key_bytes = 256;

std::string_view clip(std::string_view k) noexcept {
    return k.size() > k_max_key_bytes ? k.substr(0, k_max_key_bytes) : k;
}

double seconds_between(rate_clock::time_point a, rate_clock::time_point b) noexcept {
    return std::chrono::duration<double>(b - a).count();
}

}  // namespace

token_bucket::token_bucket(double rate, double burst, rate_clock::time_point now) noexcept
    : rate_(std::isfinite(rate) && rate > 0 ? rate : 0),
      burst_(std::isfinite(burst) && burst >= 1 ? burst : 1),
      tokens_(burst_),
      last_(now) {}

void token_bucket::refill(rate_clock::time_point now) noexcept {
    if (now <= last_) return;  // never let a clock going back mint or remove tokens
    tokens_ = std::min(burst_, tokens_ + rate_ * seconds_between(last_, now));
    last_ = now;
}

double token_bucket::tokens(rate_clock::time_point now) const noexcept {
    if (now <= last_) return tokens_;
    return std::min(burst_, tokens_ + rate_ * seconds_between(last_, now));
}

bool token_bucket::full(rate_clock::time_point now) const noexcept {
    return tokens(now) >= burst_;
}

bool token_bucket::try_take(rate_clock::time_point now, double n) noexcept {
    refill(now);
    // The epsilon absorbs rounding in rate * elapsed so an exact refill is not missed by 1e-16.
    if (tokens_ + 1e-9 < n) return false;
    tokens_ = std::max(0.0, tokens_ - n);
    return true;
}

rate_clock::duration token_bucket::retry_after(rate_clock::time_point now,
                                               double n) const noexcept {
    const double deficit = n - tokens(now);
    if (deficit <= 1e-9) return rate_clock::duration::zero();
    if (rate_ <= 0 || n > burst_) return k_max_wait;
    const double secs = deficit / rate_;
    if (secs >= std::chrono::duration<double>(k_max_wait).count()) return k_max_wait;
    return std::chrono::ceil<rate_clock::duration>(std::chrono::duration<double>(secs));
}

std::int64_t retry_after_seconds(rate_clock::duration d) noexcept {
    auto s = std::chrono::ceil<std::chrono::seconds>(d).count();
    return std::max<std::int64_t>(1, s);
}

rate_limiter::rate_limiter(options o) noexcept : opts_(o) {
    opts_.max_entries = std::max<std::size_t>(1, opts_.max_entries);
}

bool rate_limiter::try_take(std::string_view key, rate_clock::time_point now, double n) {
    key = clip(key);
    if (auto it = index_.find(key); it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->bucket.try_take(now, n);
    }
    if (index_.size() >= opts_.max_entries) {
        index_.erase(lru_.back().key);
        lru_.pop_back();
        ++evictions_;
    }
    lru_.push_front(entry{std::string(key), token_bucket(opts_.rate, opts_.burst, now)});
    try {
        index_.emplace(lru_.front().key, lru_.begin());
    } catch (...) {
        lru_.pop_front();
        throw;
    }
    return lru_.front().bucket.try_take(now, n);
}

rate_clock::duration rate_limiter::retry_after(std::string_view key,
                                               rate_clock::time_point now) const {
    auto it = index_.find(clip(key));
    if (it == index_.end()) return rate_clock::duration::zero();
    return it->second->bucket.retry_after(now);
}

std::size_t rate_limiter::sweep(rate_clock::time_point now, std::size_t max_scan) {
    std::size_t dropped = 0;
    auto it = lru_.end();
    for (std::size_t scanned = 0; scanned < max_scan && it != lru_.begin(); ++scanned) {
        --it;
        if (it->bucket.full(now)) {
            index_.erase(it->key);
            it = lru_.erase(it);
            ++dropped;
        }
    }
    return dropped;
}

bool shared_rate_limiter::try_take(std::string_view key, rate_clock::time_point now, double n) {
    std::lock_guard lock(mutex_);
    return limiter_.try_take(key, now, n);
}

rate_clock::duration shared_rate_limiter::retry_after(std::string_view key,
                                                      rate_clock::time_point now) const {
    std::lock_guard lock(mutex_);
    return limiter_.retry_after(key, now);
}

std::size_t shared_rate_limiter::sweep(rate_clock::time_point now, std::size_t max_scan) {
    std::lock_guard lock(mutex_);
    return limiter_.sweep(now, max_scan);
}

std::size_t shared_rate_limiter::size() const {
    std::lock_guard lock(mutex_);
    return limiter_.size();
}

bool connection_counter::try_acquire(std::string_view key) {
    key = clip(key);
    std::lock_guard lock(mutex_);
    auto it = counts_.find(key);
    if (it == counts_.end()) {
        if (max_ == 0) return false;
        counts_.emplace(std::string(key), 1);
        return true;
    }
    if (it->second >= max_) return false;
    ++it->second;
    return true;
}

void connection_counter::release(std::string_view key) {
    key = clip(key);
    std::lock_guard lock(mutex_);
    auto it = counts_.find(key);
    if (it == counts_.end()) return;
    if (--it->second == 0) counts_.erase(it);
}

void connection_counter::set_max(std::size_t max_per_key) noexcept {
    std::lock_guard lock(mutex_);
    max_ = max_per_key;
}

std::size_t connection_counter::count(std::string_view key) const {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(clip(key));
    return it == counts_.end() ? 0 : it->second;
}

std::size_t connection_counter::keys() const {
    std::lock_guard lock(mutex_);
    return counts_.size();
}

}  // namespace herald::auth
