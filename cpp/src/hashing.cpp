// BLAKE2b-64 (RFC 7693), unkeyed, digest length 8: a straightforward portable
// implementation (one compression per 128-byte block; tokens are short).
#include "livelearn/hashing.hpp"

#include <cstring>

namespace livelearn {
namespace {

constexpr std::uint64_t kIV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

constexpr int kSigma[12][16] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
                                {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
                                {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
                                {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
                                {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
                                {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
                                {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
                                {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
                                {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
                                {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

inline std::uint64_t rotr(std::uint64_t x, int n) noexcept { return (x >> n) | (x << (64 - n)); }

inline std::uint64_t load64(const unsigned char* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];  // little-endian on any host
  return v;
}

#define LIVELEARN_G(a, b, c, d, x, y) \
  do {                                \
    v[a] = v[a] + v[b] + (x);         \
    v[d] = rotr(v[d] ^ v[a], 32);     \
    v[c] = v[c] + v[d];               \
    v[b] = rotr(v[b] ^ v[c], 24);     \
    v[a] = v[a] + v[b] + (y);         \
    v[d] = rotr(v[d] ^ v[a], 16);     \
    v[c] = v[c] + v[d];               \
    v[b] = rotr(v[b] ^ v[c], 63);     \
  } while (0)

void compress(std::uint64_t h[8], const unsigned char block[128], std::uint64_t t,
              bool last) noexcept {
  std::uint64_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load64(block + 8 * i);
  std::uint64_t v[16];
  for (int i = 0; i < 8; ++i) {
    v[i] = h[i];
    v[i + 8] = kIV[i];
  }
  v[12] ^= t;  // the byte counter's low word; inputs here stay far below 2**64 bytes
  if (last) v[14] = ~v[14];
    // The 12 rounds written out, so every index is a constant and v[] lives in registers.
#define LIVELEARN_ROUND(r)                                         \
  do {                                                             \
    LIVELEARN_G(0, 4, 8, 12, m[kSigma[r][0]], m[kSigma[r][1]]);    \
    LIVELEARN_G(1, 5, 9, 13, m[kSigma[r][2]], m[kSigma[r][3]]);    \
    LIVELEARN_G(2, 6, 10, 14, m[kSigma[r][4]], m[kSigma[r][5]]);   \
    LIVELEARN_G(3, 7, 11, 15, m[kSigma[r][6]], m[kSigma[r][7]]);   \
    LIVELEARN_G(0, 5, 10, 15, m[kSigma[r][8]], m[kSigma[r][9]]);   \
    LIVELEARN_G(1, 6, 11, 12, m[kSigma[r][10]], m[kSigma[r][11]]); \
    LIVELEARN_G(2, 7, 8, 13, m[kSigma[r][12]], m[kSigma[r][13]]);  \
    LIVELEARN_G(3, 4, 9, 14, m[kSigma[r][14]], m[kSigma[r][15]]);  \
  } while (0)
  LIVELEARN_ROUND(0);
  LIVELEARN_ROUND(1);
  LIVELEARN_ROUND(2);
  LIVELEARN_ROUND(3);
  LIVELEARN_ROUND(4);
  LIVELEARN_ROUND(5);
  LIVELEARN_ROUND(6);
  LIVELEARN_ROUND(7);
  LIVELEARN_ROUND(8);
  LIVELEARN_ROUND(9);
  LIVELEARN_ROUND(10);
  LIVELEARN_ROUND(11);
#undef LIVELEARN_ROUND
  for (int i = 0; i < 8; ++i) h[i] ^= v[i] ^ v[i + 8];
}

#undef LIVELEARN_G

}  // namespace

std::uint64_t stable_hash64(const void* data, std::size_t n) noexcept {
  std::uint64_t h[8];
  std::memcpy(h, kIV, sizeof h);
  h[0] ^= 0x01010000ULL ^ 8ULL;  // fanout 1, depth 1, no key, digest length 8
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t t = 0;
  while (n > 128) {  // every full block but the last
    t += 128;
    compress(h, p, t, false);
    p += 128;
    n -= 128;
  }
  unsigned char block[128] = {};
  if (n) std::memcpy(block, p, n);
  t += n;
  compress(h, block, t, true);
  return h[0];  // the first 8 output bytes, little-endian
}

}  // namespace livelearn
