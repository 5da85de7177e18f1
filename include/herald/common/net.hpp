#pragma once
// Namespace aliases used across herald; the one place that names Asio and Beast namespaces.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>

namespace herald {
namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
// A socket as the listener accepts it (a session then takes its descriptor out of Asio: see
// src/net/fd_reactor.hpp). Bound to the io_context's own executor type rather than
// any_io_executor: the socket is 40 B smaller, and so is every operation pending on it.
using stream_socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using clock = std::chrono::steady_clock;
using time_point = clock::time_point;
using std::chrono::milliseconds;
}  // namespace herald
