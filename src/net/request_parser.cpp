#include "request_parser.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <limits>

namespace herald::net {

namespace {
constexpr char lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
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
    const field* f = find("Connection");
    namespace http = boost::beast::http;
    http::token_list tokens{f ? slice(f->value) : std::string_view{}};
    if (version_ < 11) return f && tokens.exists("keep-alive");
    return !f || !tokens.exists("close");
}

request_head::span request_head::append(std::string_view s) {
    // Offsets fit: a head is within http.max_header_bytes (at most 1 MiB).
    span r{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(s.size())};
    text_.insert(text_.end(), s.begin(), s.end());
    return r;
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
    m_.fields_.push_back({n, v});
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
