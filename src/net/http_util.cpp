#include "herald/net/http_util.hpp"

#include "herald/wire/envelope.hpp"

#include "herald/common/text.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace herald::net {

std::optional<std::string> url::get(std::string_view key) const {
    for (const auto& [k, v] : query)
        if (k == key) return v;
    return std::nullopt;
}

std::vector<std::string> url::all(std::string_view key) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : query)
        if (k == key) out.push_back(v);
    return out;
}

namespace {
int hex(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
    // Most paths and parameters have nothing to decode: one scan, one copy.
    if (std::none_of(s.begin(), s.end(), [plus_is_space](char c) {
            return c == '%' || c == '\0' || (c == '+' && plus_is_space);
        }))
        return std::string(s);
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            int h = hex(s[i + 1]), l = hex(s[i + 2]);
            if (h < 0 || l < 0) return std::nullopt;
            c = static_cast<char>(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0') return std::nullopt;
        out += c;
    }
    return out;
}

std::optional<url> parse_target(std::string_view target) {
    if (target.empty() || target.front() != '/') return std::nullopt;
    url u;
    auto q = target.find('?');
    auto path = percent_decode(target.substr(0, q), false);
    if (!path) return std::nullopt;
    u.path = std::move(*path);
    if (q == std::string_view::npos) return u;
    auto rest = target.substr(q + 1);
    auto hash = rest.find('#');
    if (hash != std::string_view::npos) rest = rest.substr(0, hash);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        auto part = rest.substr(0, amp);
        if (!part.empty()) {
            auto eq = part.find('=');
            auto k = percent_decode(part.substr(0, eq), true);
            auto v = percent_decode(
                eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1), true);
            if (!k || !v) return std::nullopt;
            u.query.emplace_back(std::move(*k), std::move(*v));
        }
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
    return u;
}

const char* status_text(int status) noexcept {
    switch (status) {
        case 101: return "Switching Protocols";
        case 200: return "OK";
        case 204: return "No Content";
        case 303: return "See Other";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 426: return "Upgrade Required";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
    }
    return "Unknown";
}

namespace {
// A response's parts, in order; the status and length digits live here.
class response_parts {
public:
    response_parts(int status, std::string_view content_type, std::string_view body,
                   bool keep_alive, std::string_view extra_headers) {
        const auto status_end = std::to_chars(status_digits_, status_digits_ + 8, status).ptr;
        const auto length_end = std::to_chars(length_digits_, length_digits_ + 24, body.size()).ptr;
        const std::string_view connection =
            keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
        // Answers are not cached, unless the handler says otherwise (GET /client/herald.js).
        const std::string_view no_store =
            extra_headers.find("Cache-Control:") == std::string_view::npos
                ? "Cache-Control: no-store\r\n"
                : "";
        parts_ = {"HTTP/1.1 ",
                  {status_digits_, static_cast<std::size_t>(status_end - status_digits_)},
                  " ",
                  status_text(status),
                  "\r\nServer: herald\r\nContent-Type: ",
                  content_type,
                  "\r\nContent-Length: ",
                  {length_digits_, static_cast<std::size_t>(length_end - length_digits_)},
                  connection,
                  no_store,
                  extra_headers,
                  "\r\n",
                  body};
        for (auto p : parts_) size_ += p.size();
    }
    response_parts(const response_parts&) = delete;
    response_parts& operator=(const response_parts&) = delete;
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    // Writes size() bytes at `out`.
    void write(char* out) const noexcept {
        for (auto p : parts_) {
            if (p.empty()) continue;  // an empty part's data() may be null: no memcpy from it
            std::memcpy(out, p.data(), p.size());
            out += p.size();
        }
    }

private:
    char status_digits_[8];
    char length_digits_[24];
    std::array<std::string_view, 13> parts_;
    std::size_t size_ = 0;
};
}  // namespace

std::string make_response(int status, std::string_view content_type, std::string_view body,
                          bool keep_alive, std::string_view extra_headers) {
    // Sized once and filled by copies of known lengths (an answer is built per request).
    const response_parts parts(status, content_type, body, keep_alive, extra_headers);
    std::string r;
    r.resize(parts.size());
    parts.write(r.data());
    return r;
}

shared_response make_shared_response(int status, std::string_view content_type,
                                     std::string_view body, bool keep_alive,
                                     std::string_view extra_headers) {
    const response_parts parts(status, content_type, body, keep_alive, extra_headers);
    shared_response r{std::make_shared_for_overwrite<char[]>(parts.size()), parts.size()};
    parts.write(r.bytes.get());
    return r;
}

std::string make_error(int status, std::string_view code, std::string_view message, bool keep_alive,
                       std::string_view extra_headers) {
    return make_response(status, "application/json", wire::error_body(code, message), keep_alive,
                         extra_headers);
}

error_spec error_for(metrics::reject r) noexcept {
    using metrics::reject;
    int status = 400;
    switch (r) {
        case reject::not_found: status = 404; break;
        case reject::method_not_allowed: status = 405; break;
        case reject::payload_too_large: status = 413; break;
        case reject::unsupported_media_type: status = 415; break;
        case reject::headers_too_large: status = 431; break;
        case reject::header_timeout: status = 408; break;
        case reject::over_capacity:
        case reject::draining:
        case reject::unavailable: status = 503; break;
        case reject::unknown: status = 504; break;
        case reject::forbidden:
        case reject::disconnected: status = 403; break;
        case reject::unauthorized: status = 401; break;
        case reject::rate_limited:
        case reject::quota_exceeded: status = 429; break;
        case reject::bad_config: status = 409; break;
        default: break;
    }
    return {status, metrics::to_string(r), r};
}

}  // namespace herald::net
