#pragma once
// A short text in 16 bytes, where a std::string takes 32 (issue 15: what every idle connection
// holds: its subscription's epoch, an SSE topic's sent epoch, a stream's client address). Up to
// 15 characters stay inline (herald's epochs have 8, an IPv4 address at most 15); a longer text
// goes to the heap, so any text is kept whole.
#include <cstdint>
#include <cstring>
#include <string_view>

namespace herald {

class short_text {
public:
    short_text() noexcept = default;
    explicit short_text(std::string_view s) { assign(s); }
    short_text(const short_text& o) { assign(o.view()); }
    short_text& operator=(const short_text& o) {
        assign(o.view());
        return *this;
    }
    short_text& operator=(std::string_view s) {
        assign(s);
        return *this;
    }
    ~short_text() { free_heap(); }

    [[nodiscard]] std::string_view view() const noexcept {
        if (!on_heap()) return {b_, static_cast<std::size_t>(tag())};
        const char* p = nullptr;
        std::uint32_t n = 0;
        std::memcpy(&p, b_, sizeof p);
        std::memcpy(&n, b_ + sizeof p, sizeof n);
        return {p, n};
    }
    // NOLINTNEXTLINE(google-explicit-constructor): reads as the text it holds
    operator std::string_view() const noexcept { return view(); }
    [[nodiscard]] bool empty() const noexcept { return view().empty(); }

private:
    static constexpr std::size_t k_inline = 15;       // b_[15] holds the inline length...
    static constexpr unsigned char k_on_heap = 0xFF;  // ...or this: pointer and length in b_
    [[nodiscard]] unsigned char tag() const noexcept {
        return static_cast<unsigned char>(b_[k_inline]);
    }
    [[nodiscard]] bool on_heap() const noexcept { return tag() == k_on_heap; }
    void free_heap() noexcept {
        if (!on_heap()) return;
        char* p = nullptr;
        std::memcpy(&p, b_, sizeof p);
        delete[] p;
        b_[k_inline] = 0;
    }
    // `s` may be this object's own text: it is copied before the old storage goes.
    void assign(std::string_view s) {
        if (s.size() <= k_inline) {
            char tmp[k_inline];
            std::memcpy(tmp, s.data(), s.size());
            free_heap();
            std::memcpy(b_, tmp, s.size());
            b_[k_inline] = static_cast<char>(s.size());
            return;
        }
        char* p = new char[s.size()];
        std::memcpy(p, s.data(), s.size());
        const auto n = static_cast<std::uint32_t>(s.size());
        free_heap();
        std::memcpy(b_, &p, sizeof p);
        std::memcpy(b_ + sizeof p, &n, sizeof n);
        b_[k_inline] = static_cast<char>(k_on_heap);
    }

    char b_[16] = {};
};

}  // namespace herald
