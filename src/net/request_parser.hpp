#pragma once
// Herald's HTTP request parser: Beast's basic_parser (the grammar, header and body limits,
// chunked bodies, its errors) writing into a request_head instead of a beast::http::request, so
// that a request's fields take no allocation each. One parser per request, as Beast's.
//
// In front of it, parse_whole(): one pass over a request that is already whole in the input and
// in the common, plain subset of the grammar (below); anything else (an unfinished head or body,
// chunked, a folded line, a bare CR or LF, a repeated or listed Content-Length, a head past the
// limit...) it declines without reading further, and the Beast-based parser parses the same bytes
// from the start. Everything parse_whole() accepts, Beast accepts too, with the same method,
// target, version, fields, body and length taken (tests/unit/net/request_parser_test.cpp and the
// fuzz target fuzz_http_parser check it against Beast): declining is always safe.
#include "herald/net/http_request_head.hpp"

#include <boost/beast/http/basic_parser.hpp>

namespace herald::net {

class request_parser final : public boost::beast::http::basic_parser<true> {
public:
    request_parser() = default;

    // The first request of `in` when it is whole there and within the subset: fills `out` (a
    // freshly constructed head) and returns the bytes it takes (head and body); 0 to decline,
    // leaving `out` to be discarded. The subset: METHOD SP target SP HTTP/1.0 or HTTP/1.1 CRLF,
    // then lines `name: value` CRLF (a name of token characters; a value of visible characters,
    // SP, HT or obs-text, trimmed of SP and HT) up to an empty line, the whole head within
    // `header_limit` bytes; no Transfer-Encoding; a Content-Length, if any, once and as plain
    // digits, at most `body_limit`; a Connection or Proxy-Connection value one token.
    [[nodiscard]] static std::size_t parse_whole(std::string_view in, std::uint32_t header_limit,
                                                 std::uint64_t body_limit, request_head& out);
    // The parsed request; call once is_done().
    [[nodiscard]] request_head release() noexcept { return std::move(m_); }

private:
    using error_code = boost::beast::error_code;
    using string_view = boost::beast::string_view;
    void on_request_impl(boost::beast::http::verb method, string_view method_str,
                         string_view target, int version, error_code& ec) override;
    void on_response_impl(int, string_view, int, error_code& ec) override;
    void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                       error_code& ec) override;
    void on_header_impl(error_code& ec) override;
    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                           error_code& ec) override;
    std::size_t on_body_impl(string_view body, error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
    std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
    void on_finish_impl(error_code& ec) override;

    request_head m_;
};

}  // namespace herald::net
