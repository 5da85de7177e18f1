#pragma once
// A parsed HTTP request as the handlers read it: method, target, version, the header fields in
// arrival order and the body. The target and every field live in one string (names and values
// back to back, indexed by offsets), held inline up to 192 bytes (a publish's head), so such a
// request allocates its body alone instead of once per field; lookups compare lengths first,
// then ASCII case-insensitively.
#include <boost/beast/http/verb.hpp>
#include <boost/container/small_vector.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::net {

class request_head {
public:
    // The fields a request's handling reads on every request (the router, a publish): their
    // first lines are indexed as the head is parsed, so that each lookup is one load instead of
    // a scan of every field.
    enum class known : std::uint8_t {
        connection,
        origin,
        authorization,
        cookie,
        x_herald_csrf,
        x_forwarded_for,
        content_type,
        idempotency_key,
        traceparent,
        count_
    };

    [[nodiscard]] boost::beast::http::verb method() const noexcept { return method_; }
    // The method as sent (also for verbs Beast does not know).
    [[nodiscard]] std::string_view method_string() const noexcept { return slice(method_at_); }
    [[nodiscard]] std::string_view target() const noexcept { return slice(target_at_); }
    // 10 for HTTP/1.0, 11 for HTTP/1.1.
    [[nodiscard]] unsigned version() const noexcept { return version_; }
    // As Beast's message::keep_alive(): the first Connection field's tokens decide ("close" on
    // HTTP/1.1, "keep-alive" on HTTP/1.0).
    [[nodiscard]] bool keep_alive() const;

    // The value of the first field called `name` (ASCII case-insensitive); empty when absent.
    [[nodiscard]] std::string_view header(std::string_view name) const noexcept;
    [[nodiscard]] std::string_view header(known k) const noexcept {
        const auto at = first_[static_cast<std::size_t>(k)];
        return at ? slice(fields_[at - 1].value) : std::string_view{};
    }
    // Calls f(value) for every field called `name`, in arrival order.
    template <class F>
    void each(std::string_view name, F&& f) const {
        each_from(0, name, f);
    }
    template <class F>
    void each(known k, std::string_view name, F&& f) const {
        if (const auto at = first_[static_cast<std::size_t>(k)]) each_from(at - 1, name, f);
    }
    [[nodiscard]] std::size_t field_count() const noexcept { return fields_.size(); }
    [[nodiscard]] std::string_view field_name(std::size_t i) const {
        return slice(fields_[i].name);
    }
    [[nodiscard]] std::string_view field_value(std::size_t i) const {
        return slice(fields_[i].value);
    }

    [[nodiscard]] std::string& body() noexcept { return body_; }
    [[nodiscard]] const std::string& body() const noexcept { return body_; }

    // ASCII case-insensitive equality of two names of the same length.
    [[nodiscard]] static bool same_name(std::string_view a, std::string_view b) noexcept;

private:
    friend class request_parser;
    struct span {
        std::uint32_t at = 0;
        std::uint32_t len = 0;
    };
    struct field {
        span name;
        span value;
    };
    [[nodiscard]] std::string_view slice(span s) const noexcept {
        return std::string_view(text_.data() + s.at, s.len);
    }
    template <class F>
    void each_from(std::size_t i, std::string_view name, F& f) const {
        for (; i < fields_.size(); ++i)
            if (same_name(slice(fields_[i].name), name)) f(slice(fields_[i].value));
    }
    span append(std::string_view s);
    // Appends a field (its name and value in text_, or to be there once the head is copied),
    // indexing it under `k` unless that is count_.
    void add_field(span name, span value, known k);
    // The first field called `name`, or null.
    [[nodiscard]] const field* find(std::string_view name) const noexcept;

    // The method, the target, then each field's name and value; a larger head (a browser's,
    // with cookies) spills to the heap.
    boost::container::small_vector<char, 192> text_;
    // Eight fields inline: a publish carries three or four (Host, Content-Type, Content-Length,
    // Authorization); a browser's request more, then they spill to the heap.
    boost::container::small_vector<field, 8> fields_;
    // Per known name, 1 + the index of its first field, 0 when absent.
    std::array<std::uint32_t, static_cast<std::size_t>(known::count_)> first_{};
    std::string body_;
    span method_at_;
    span target_at_;
    boost::beast::http::verb method_ = boost::beast::http::verb::unknown;
    unsigned version_ = 11;
};

}  // namespace herald::net
