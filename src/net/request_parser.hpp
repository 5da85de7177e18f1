#pragma once
// Herald's HTTP request parser: Beast's basic_parser (the grammar, header and body limits,
// chunked bodies, its errors) writing into a request_head instead of a beast::http::request, so
// that a request's fields take no allocation each. One parser per request, as Beast's.
#include "herald/net/http_request_head.hpp"

#include <boost/beast/http/basic_parser.hpp>

namespace herald::net {

class request_parser final : public boost::beast::http::basic_parser<true> {
public:
    request_parser() = default;
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
