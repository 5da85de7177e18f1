// The YAML configuration: anything must end as settings or a config_error naming the key.
#include "herald/config/config.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 16 * 1024) return 0;
    try {
        (void)herald::config::parse_yaml(std::string(reinterpret_cast<const char*>(data), size));
    } catch (const herald::config::config_error&) {
    }
    return 0;
}
