// Stable 64-bit hashing of feature tokens: BLAKE2b (RFC 7693) with an 8-byte
// digest and no key, read as a little-endian integer. The same function as
// Python's hashlib.blake2b(data, digest_size=8) (livelearn.hashing): values
// are identical across processes, machines, Python versions and releases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace livelearn {

// The hash's name as recorded in encoder configs and checkpoints.
inline constexpr const char* kHashName = "blake2b-64";

// BLAKE2b-64 of `n` bytes at `data`, little-endian.
std::uint64_t stable_hash64(const void* data, std::size_t n) noexcept;
inline std::uint64_t stable_hash64(std::string_view s) noexcept {
  return stable_hash64(s.data(), s.size());
}

// The top 53 bits as a double in [-1, 1): (h >> 11) * 2**-53 * 2 - 1 (exact).
inline double unit_hash(std::uint64_t h) noexcept {
  return static_cast<double>(h >> 11) * 0x1p-53 * 2.0 - 1.0;
}

}  // namespace livelearn
