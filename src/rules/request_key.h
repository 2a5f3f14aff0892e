// The parts of a request a pool's scheduler and persistence hash on: the client address (whole,
// with port, or masked), a header, a cookie, or the URL. Pure; any thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "config/config.h"
#include "rules/rule_set.h"

namespace switchyard::rules {

struct PoolKeys {
  std::uint64_t hash = 0;    // scheduler key (pool.hash, or `default_on` when kDefault)
  bool has_hash = false;     // false: the pool's scheduler hashes nothing
  std::uint64_t source = 0;  // client address under the persistence netmask (kSource)
  bool has_source = false;
  std::string_view cookie;  // value of the persistence cookie (kCookie), empty if absent
};

// Fills `out` for `pool`. `default_on` is the scheduler's default key (kDefault: none).
// Allocation-free once `scratch` has grown.
void pool_keys(const config::Pool& pool, config::HashKey::On default_on, const RequestView& req,
               MatchScratch& scratch, PoolKeys& out);

// The client address under a netmask, hashed (exposed for tests).
std::uint64_t masked_source_hash(const sockaddr* client, int v4_bits, int v6_bits);

}  // namespace switchyard::rules
