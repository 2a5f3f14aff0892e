// mh: Maglev hashing (Eisenbud et al., NSDI 2016, as in IPVS ip_vs_mh and Katran): a lookup table
// of kSlots entries, each naming a server, filled by letting the servers take turns claiming
// their next preferred slot (each server's preference order is a permutation of the slots derived
// from its id). Every server ends up with an almost equal share of slots (in proportion to its
// weight), and adding or removing one server moves only about 1/N of the keys, and mostly keys
// of that server. Because the permutations come from ServerView::id alone, every worker and
// every process builds the same table, the L4 path included.
//
// The table covers the servers with weight > 0. Availability is deliberately left out: a server
// that goes down keeps its slots, its keys go elsewhere only while it is down (fallback) and come
// back when it recovers, and nobody else's keys move.
#include <algorithm>
#include <numeric>
#include <vector>

#include "rules/hash.h"
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

// Prime (each permutation must visit every slot) and much larger than the server count, which
// is what keeps shares within about 1% of each other (the paper uses 65537 too).
constexpr std::uint32_t kSlots = 65537;
// Slots hold a server index in one byte to keep the table at 64 KiB per pool and worker; the
// config loader caps pools at 64 servers, and servers past 254 would simply get no slots.
constexpr std::uint8_t kNoServer = 0xff;
// A server claims weight/gcd slots per round (as in IPVS), scaled down so that the largest claims
// at most this many: a round of 64 servers then stays well below kSlots and late servers in the
// order are not starved, at the cost of weight ratios past 256:1 being rounded.
constexpr std::uint64_t kMaxTurns = 256;
// Fallback: further table lookups with the key rehashed before scanning the servers.
constexpr std::uint64_t kRehashes = 16;

class Maglev final : public Scheduler {
 public:
  explicit Maglev(bool fallback) : fallback_(fallback) {}

  void rebuild(std::span<const ServerView> servers) override {
    struct Member {
      std::uint64_t id;
      std::uint8_t index;
      std::uint32_t next;  // slot of the next preference to try
      std::uint32_t skip;
      std::uint64_t turns;
    };
    std::vector<Member> members;
    std::uint64_t g = 0;
    for (std::size_t i = 0; i < servers.size() && i < kNoServer; ++i) {
      const ServerView& s = servers[i];
      if (s.weight == 0) continue;
      // Two independent hashes of the id: the offset (first preference) and the skip (stride
      // through the slots; in [1, kSlots-1], so with kSlots prime it visits every slot).
      auto offset = static_cast<std::uint32_t>(rules::mix64(s.id ^ 0x6d61676c65763031ull) % kSlots);
      auto skip =
          static_cast<std::uint32_t>(rules::mix64(s.id ^ 0x6d61676c65763032ull) % (kSlots - 1) + 1);
      members.push_back({s.id, static_cast<std::uint8_t>(i), offset, skip, s.weight});
      g = std::gcd(g, std::uint64_t{s.weight});
    }
    table_.clear();
    if (members.empty()) return;

    // Fill in id order, not list order: the table then depends only on the servers' ids and
    // weights, so every process agrees on it and reordering the config moves no keys.
    std::sort(members.begin(), members.end(), [](const Member& a, const Member& b) {
      return a.id != b.id ? a.id < b.id : a.index < b.index;
    });
    std::uint64_t most = 0;
    for (Member& m : members) most = std::max(most, m.turns /= g);
    if (most > kMaxTurns) {
      for (Member& m : members) m.turns = std::max<std::uint64_t>(1, m.turns * kMaxTurns / most);
    }

    std::vector<std::uint8_t> table(kSlots, kNoServer);
    std::uint32_t filled = 0;
    while (filled < kSlots) {
      for (Member& m : members) {
        for (std::uint64_t t = 0; t < m.turns && filled < kSlots; ++t) {
          while (table[m.next] != kNoServer) {
            m.next += m.skip;
            if (m.next >= kSlots) m.next -= kSlots;
          }
          table[m.next] = m.index;
          ++filled;
        }
      }
    }
    table_.swap(table);
  }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    if (table_.empty()) return -1;  // no server has weight > 0
    const std::uint64_t key = key_of(in);
    std::size_t s = table_[key % kSlots];
    if (s < servers.size() && eligible(servers, s, in)) return static_cast<int>(s);
    if (!fallback_) return -1;
    // Rehashing spreads the down server's keys over the others by their slot shares (like IPVS
    // mh-fallback, which rehashes with an offset), and keeps each key's fallback stable.
    for (std::uint64_t attempt = 1; attempt <= kRehashes; ++attempt) {
      s = table_[rules::mix64(key ^ (attempt * 0x9e3779b97f4a7c15ull)) % kSlots];
      if (s < servers.size() && eligible(servers, s, in)) return static_cast<int>(s);
    }
    // Only when nearly every slot's server is out: any eligible server, still key-stable.
    const std::size_t n = servers.size();
    for (std::size_t step = 0, i = key % std::max<std::size_t>(n, 1); step < n; ++step) {
      if (eligible(servers, i, in)) return static_cast<int>(i);
      if (++i == n) i = 0;
    }
    return -1;
  }

 private:
  std::vector<std::uint8_t> table_;  // slot -> server index; empty: no server has weight > 0
  bool fallback_;
};

}  // namespace

std::unique_ptr<Scheduler> make_mh(const SchedulerOptions& options) {
  return std::make_unique<Maglev>(options.fallback);
}

}  // namespace switchyard::upstream::sched
