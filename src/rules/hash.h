// Hashes whose values must not change between builds or processes: sticky splits promise that a
// given header/cookie value keeps landing on the same pool across restarts and across workers,
// which std::hash does not guarantee.
#pragma once

#include <cstdint>
#include <string_view>

namespace switchyard::rules {

// The splitmix64 finaliser: spreads every input bit over the whole word, so `% n` of the result
// is close to uniform even for sequential inputs or for FNV's weak low bits.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a 64 followed by mix64.
inline std::uint64_t stable_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return mix64(h);
}

}  // namespace switchyard::rules
