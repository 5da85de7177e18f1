// The one translation unit that compiles Asio and Beast (BOOST_*_SEPARATE_COMPILATION); Asio's
// SSL streams are used by `herald probe` (https://, wss://) only.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
