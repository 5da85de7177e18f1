// Differential: herald's request parser (request_head) against Beast's request_parser on the
// same bytes, fed in pieces of a size the input's first byte chooses; any difference in error,
// method, target, version, keep-alive, fields or body aborts.
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
    // 64 KiB per field that Beast's own field container can hold).
    const herald::test::parse_limits limits{2048, 4096};
    if (!(herald::test::with_beast(in, step, limits) ==
          herald::test::with_herald(in, step, limits)))
        std::abort();
    return 0;
}
