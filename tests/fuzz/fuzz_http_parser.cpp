// Differential: herald's request parsing against Beast's request_parser on the same bytes; any
// difference in error, method, target, version, keep-alive, fields, body or bytes taken aborts.
// Two ways: the Beast-based request_parser fed in pieces of a size the input's first byte
// chooses, and the session's way on the whole input (request_parser::parse_whole(), declining
// to the Beast-based parser), which reaches parse_whole()'s accepting paths.
#include "request_parser_diff.hpp"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    // Pieces of 2..16 bytes. One byte at a time trips a BOOST_ASSERT inside Beast's basic_parser
    // (`n >= 5` in parse_chunk_header, after a last chunk with a trailer), which both parsers
    // share; Release builds compile it out and both then give the same error.
    const std::size_t step = data[0] % 15 + 2;
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    // A small header limit, so that the limit's error is reached often (and stays below the
    // 64 KiB per field that Beast's own field container can hold); the first byte's high bit
    // picks a smaller body limit too.
    const herald::test::parse_limits limits{2048, (data[0] & 0x80) ? 16u : 4096u};
    if (!(herald::test::with_beast(in, step, limits) ==
          herald::test::with_herald(in, step, limits)))
        std::abort();
    if (!(herald::test::with_beast(in, in.size() + 1, limits) ==
          herald::test::with_session(in, in.size(), limits)))
        std::abort();
    return 0;
}
