#include "request_parser.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace herald::net {

namespace {
constexpr char lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// RFC 7230's tchar, the characters of a method and a field name (Beast's is_token_char).
constexpr std::array<bool, 256> make_tchar() {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
    for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
    return t;
}
constexpr std::array<bool, 256> k_tchar = make_tchar();

// A target's byte: anything but a CTL, SP or DEL (Beast's is_pathchar).
constexpr bool is_target_byte(unsigned char c) noexcept {
    return c > 0x20 && c != 0x7f;
}

// A field value's byte: anything but a CTL other than HT, and DEL (Beast's parse_token_to_eol).
constexpr bool is_value_byte(unsigned char c) noexcept {
    return (c >= 0x20 || c == '\t') && c != 0x7f;
}

// The first byte at or after `i` (before `end`) below `low` or DEL, passing eight plain bytes at
// a time: whether a word holds a byte below `low` (at most 0x80) or a DEL is exact (the
// classic has-less / has-zero bit tricks); only where a word holds one do the byte loops
// judge each byte. A value's HT stops the words too, and the byte loop takes it.
inline std::size_t skip_plain(const unsigned char* b, std::size_t i, std::size_t end,
                              std::uint64_t low) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    while (end - i >= 8) {
        std::uint64_t w;
        std::memcpy(&w, b + i, 8);
        const std::uint64_t del = w ^ (ones * 0x7f);
        if ((((w - ones * low) & ~w) | ((del - ones) & ~del)) & highs) break;
        i += 8;
    }
    return i;
}

// Eight token characters at `p` (one branch for the eight lookups).
inline bool all_tchar8(const unsigned char* p) noexcept {
    unsigned all = 1;
    for (int j = 0; j < 8; ++j) all &= static_cast<unsigned>(k_tchar[p[j]]);
    return all != 0;
}

constexpr bool is_ows(unsigned char c) noexcept {
    return c == ' ' || c == '\t';
}

// A Content-Length of plain digits; more than 19 (past what 64 bits hold) or anything else
// (a list, a sign, nothing) is left to Beast.
bool plain_length(std::string_view v, std::uint64_t& out) noexcept {
    if (v.empty() || v.size() > 19) return false;
    std::uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = n;
    return true;
}

bool one_token(std::string_view v) noexcept {
    return !v.empty() && std::all_of(v.begin(), v.end(),
                                     [](char c) { return k_tchar[static_cast<unsigned char>(c)]; });
}
}  // namespace

bool request_head::same_name(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i] && lower(a[i]) != lower(b[i])) return false;
    return true;
}

const request_head::field* request_head::find(std::string_view name) const noexcept {
    for (const auto& e : fields_)
        if (same_name(slice(e.name), name)) return &e;  // same_name compares lengths first
    return nullptr;
}

std::string_view request_head::header(std::string_view name) const noexcept {
    const field* f = find(name);
    return f ? slice(f->value) : std::string_view{};
}

bool request_head::keep_alive() const {
    // The first Connection field only, as Beast's message::keep_alive() reads it.
    const auto at = first_[static_cast<std::size_t>(known::connection)];
    namespace http = boost::beast::http;
    http::token_list tokens{at ? slice(fields_[at - 1].value) : std::string_view{}};
    if (version_ < 11) return at && tokens.exists("keep-alive");
    return !at || !tokens.exists("close");
}

namespace {
// Whether `name` (token characters only: both parsers accept no other in a name) is `lower`
// (lower-case letters and '-') in any case. For a token character c, c | 0x20 is a lower-case
// letter only when c is that letter in either case, and '-' only when c is '-' (the other, CR,
// is no token character), so eight bytes compare at once.
bool token_is(std::string_view name, std::string_view lower) noexcept {
    const std::size_t n = lower.size();
    if (name.size() != n) return false;
    if (n < 8) {
        for (std::size_t i = 0; i < n; ++i)
            if ((name[i] | 0x20) != lower[i]) return false;
        return true;
    }
    const auto word_at = [](std::string_view s, std::size_t i) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        return w;
    };
    constexpr std::uint64_t case_bits = 0x2020202020202020ull;
    for (std::size_t i = 0;; i += 8) {
        const std::size_t at = std::min(i, n - 8);  // the last word overlaps the one before
        if ((word_at(name, at) | case_bits) != word_at(lower, at)) return false;
        if (at == n - 8) return true;
    }
}

// What a field's name means to the parsers: a known field of request_head, and whether it is
// one of those Beast's do_field() interprets.
enum class special : std::uint8_t { none, content_length, transfer_encoding, connection };
struct name_class {
    request_head::known known = request_head::known::count_;
    special what = special::none;
};

name_class classify(std::string_view name) noexcept {
    using k = request_head::known;
    switch (name.size()) {
        case 6:
            if (token_is(name, "origin")) return {k::origin};
            if (token_is(name, "cookie")) return {k::cookie};
            break;
        case 10:
            if (token_is(name, "connection")) return {k::connection, special::connection};
            break;
        case 11:
            if (token_is(name, "traceparent")) return {k::traceparent};
            break;
        case 12:
            if (token_is(name, "content-type")) return {k::content_type};
            break;
        case 13:
            if (token_is(name, "authorization")) return {k::authorization};
            if (token_is(name, "x-herald-csrf")) return {k::x_herald_csrf};
            break;
        case 14:
            if (token_is(name, "content-length")) return {k::count_, special::content_length};
            break;
        case 15:
            if (token_is(name, "x-forwarded-for")) return {k::x_forwarded_for};
            if (token_is(name, "idempotency-key")) return {k::idempotency_key};
            break;
        case 16:
            if (token_is(name, "proxy-connection")) return {k::count_, special::connection};
            break;
        case 17:
            if (token_is(name, "transfer-encoding")) return {k::count_, special::transfer_encoding};
            break;
        default: break;
    }
    return {};
}
}  // namespace

void request_head::add_field(span name, span value, known k) {
    fields_.push_back({name, value});
    if (k == known::count_) return;
    auto& first = first_[static_cast<std::size_t>(k)];
    // Field counts fit: each field takes at least two bytes of a head of at most 1 MiB.
    if (first == 0) first = static_cast<std::uint32_t>(fields_.size());
}

request_head::span request_head::append(std::string_view s) {
    // Offsets fit: a head is within http.max_header_bytes (at most 1 MiB).
    span r{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(s.size())};
    text_.insert(text_.end(), s.begin(), s.end());
    return r;
}

std::size_t request_parser::parse_whole(std::string_view in, std::uint32_t header_limit,
                                        std::uint64_t body_limit, request_head& out) {
    // Every check declines (returns 0) rather than judges: an error, its kind and the bytes
    // taken are Beast's to decide. `i` never passes `end`, and the head ends before it.
    const auto* const b = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t end = std::min<std::size_t>(in.size(), header_limit);
    std::size_t i = 0;
    while (i < end && k_tchar[b[i]]) ++i;
    if (i == 0 || i == end || b[i] != ' ') return 0;
    const std::size_t method_len = i;
    const std::size_t target_at = ++i;
    i = skip_plain(b, i, end, 0x21);
    while (i < end && is_target_byte(b[i])) ++i;
    if (i == target_at || i == end || b[i] != ' ') return 0;
    const std::size_t target_len = i - target_at;
    ++i;
    if (end - i < 10 || std::memcmp(b + i, "HTTP/1.", 7) != 0) return 0;
    const unsigned char minor = b[i + 7];
    if ((minor != '0' && minor != '1') || b[i + 8] != '\r' || b[i + 9] != '\n') return 0;
    i += 10;

    bool has_length = false;
    std::uint64_t length = 0;
    for (;;) {
        if (end - i < 2) return 0;
        if (b[i] == '\r') {
            if (b[i + 1] != '\n') return 0;
            i += 2;
            break;
        }
        const std::size_t name_at = i;
        while (end - i >= 8 && all_tchar8(b + i)) i += 8;
        while (i < end && k_tchar[b[i]]) ++i;
        if (i == name_at || i == end || b[i] != ':') return 0;
        const std::string_view name(in.data() + name_at, i - name_at);
        ++i;
        while (i < end && is_ows(b[i])) ++i;
        const std::size_t value_at = i;
        i = skip_plain(b, i, end, 0x20);
        while (i < end && is_value_byte(b[i])) ++i;
        // CRLF. A next line continuing this one (obs-fold) starts with SP or HT, which no name
        // starts with: it is declined there.
        if (end - i < 2 || b[i] != '\r' || b[i + 1] != '\n') return 0;
        std::size_t value_end = i;
        while (value_end > value_at && is_ows(b[value_end - 1])) --value_end;
        i += 2;
        const std::string_view value(in.data() + value_at, value_end - value_at);
        // The fields Beast's do_field() interprets, recognised as Beast's string_to_field()
        // does (case-insensitively); a length judged differently would smuggle a request.
        const name_class c = classify(name);
        switch (c.what) {
            case special::content_length:
                if (has_length || !plain_length(value, length)) return 0;
                has_length = true;
                break;
            case special::transfer_encoding: return 0;
            case special::connection:
                if (!one_token(value)) return 0;
                break;
            case special::none: break;
        }
        out.add_field(
            {static_cast<std::uint32_t>(name_at), static_cast<std::uint32_t>(name.size())},
            {static_cast<std::uint32_t>(value_at), static_cast<std::uint32_t>(value.size())},
            c.known);
    }
    const std::size_t head_len = i;
    if (has_length && (length > body_limit || in.size() - head_len < length)) return 0;

    // The head's bytes as they came (offsets above index them; a head is within header_limit,
    // so they fit 32 bits), then the body.
    out.text_.assign(in.data(), in.data() + head_len);
    out.method_at_ = {0, static_cast<std::uint32_t>(method_len)};
    out.target_at_ = {static_cast<std::uint32_t>(target_at),
                      static_cast<std::uint32_t>(target_len)};
    out.method_ = boost::beast::http::string_to_verb(in.substr(0, method_len));
    out.version_ = minor == '1' ? 11 : 10;
    if (length > 0) out.body_.assign(in.data() + head_len, static_cast<std::size_t>(length));
    return head_len + static_cast<std::size_t>(length);
}

void request_parser::on_request_impl(boost::beast::http::verb method, string_view method_str,
                                     string_view target, int version, error_code& ec) {
    m_.method_ = method;
    m_.method_at_ = m_.append(std::string_view(method_str.data(), method_str.size()));
    m_.target_at_ = m_.append(std::string_view(target.data(), target.size()));
    m_.version_ = static_cast<unsigned>(version);
    ec = {};
}

void request_parser::on_response_impl(int, string_view, int, error_code& ec) {
    ec = {};  // never called: this parser reads requests
}

void request_parser::on_field_impl(boost::beast::http::field, string_view name, string_view value,
                                   error_code& ec) {
    const auto n = m_.append(std::string_view(name.data(), name.size()));
    const auto v = m_.append(std::string_view(value.data(), value.size()));
    m_.add_field(n, v, classify(std::string_view(name.data(), name.size())).known);
    ec = {};
}

void request_parser::on_header_impl(error_code& ec) {
    ec = {};
}

void request_parser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                       error_code& ec) {
    // basic_parser has checked the length against body_limit() already.
    if (content_length) {
        if (*content_length > m_.body_.max_size()) {
            ec = boost::beast::http::error::buffer_overflow;
            return;
        }
        m_.body_.reserve(static_cast<std::size_t>(*content_length));
    }
    ec = {};
}

std::size_t request_parser::on_body_impl(string_view body, error_code& ec) {
    m_.body_.append(body.data(), body.size());
    ec = {};
    return body.size();
}

void request_parser::on_chunk_header_impl(std::uint64_t, string_view, error_code& ec) {
    ec = {};
}

std::size_t request_parser::on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) {
    return on_body_impl(body, ec);
}

void request_parser::on_finish_impl(error_code& ec) {
    ec = {};
}

}  // namespace herald::net
