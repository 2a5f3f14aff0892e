// The L4 schedulers, as the control plane sees them: each named scheduler (IPVS semantics) becomes
// a data-path pick method (l4_pick) plus the contents of the service's row, an array of real ids
// the XDP program indexes by a per-CPU cursor or by a hash (src/l4/abi/l4_abi.h).
//
// Why rows: every scheduler then costs the data path the same one array lookup; the expensive
// parts (weights, Maglev permutations, connection counts for lc/wlc) run in userspace when
// something changes, not per packet.
//
// Pure code: no BPF, no I/O, callable from any thread. Unit-tested in tests/bpf/ (with the data
// path) and by the Maglev distribution tests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::l4 {

enum class Scheduler { kRr, kWrr, kLc, kWlc, kSh, kDh, kMh };

// "rr", "wrr", "lc", "wlc", "sh", "dh", "mh" (the config loader's list); nullopt otherwise.
std::optional<Scheduler> scheduler_from_name(std::string_view name);

// The data-path pick method (enum l4_pick) for a scheduler. `hash_port`: sh/mh also hash the
// client's port.
std::uint8_t pick_for(Scheduler s, bool hash_port);

// A server that may take new flows (healthy, weight > 0); callers leave the others out.
struct RowServer {
  std::uint32_t real_id;
  std::uint32_t weight;  // 1..256
  std::string key;       // stable identity for hashing (the address text), not the id
};

// Row sizes (entries used of the row's L4_RING_SIZE).
constexpr std::size_t kShBuckets = 256;  // IPVS sh/dh table size

// The row for `servers` under `s`. Empty when `servers` is empty (the service then drops new
// flows). `active` (lc/wlc only): current flow count of each server, same order; without it lc/wlc
// behave like rr/wrr.
std::vector<std::uint32_t> build_row(Scheduler s, const std::vector<RowServer>& servers,
                                     const std::vector<std::uint64_t>* active = nullptr);

// IPVS's interleaved weighted round robin: one full cycle (sum of weights / gcd entries, scaled
// down to at most `max_size`). Equal weights give plain round robin.
std::vector<std::uint32_t> wrr_row(const std::vector<RowServer>& servers, std::size_t max_size);

// Maglev lookup table of `size` entries (a prime), weights as extra turns per round: each
// server's share is proportional to its weight, and removing one server moves only about its own
// share of the entries.
std::vector<std::uint32_t> maglev_row(const std::vector<RowServer>& servers, std::size_t size);

// IPVS sh/dh bucket table: servers in order, each taking `weight` consecutive buckets, repeated.
std::vector<std::uint32_t> bucket_row(const std::vector<RowServer>& servers, std::size_t buckets);

}  // namespace switchyard::l4
