// Internal to src/upstream: the factory of each scheduler (one per file in sched/) and helpers
// they share. scheduler.cc lists them.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "upstream/scheduler.h"

namespace switchyard::upstream::sched {

// May server i take this request? Available, weight > 0, not already tried.
inline bool eligible(std::span<const ServerView> servers, std::size_t i, const PickInput& in) {
  const ServerView& s = servers[i];
  return s.available && s.weight > 0 && !(i < 64 && (in.excluded >> i & 1));
}

// The key a hash scheduler looks up: the request's, or 0 when the pool gave none (every such
// request then shares one bucket, which is what "no key" means for a hash discipline).
inline std::uint64_t key_of(const PickInput& in) {
  return in.has_key ? in.key : 0;
}

// PickInput::now in milliseconds, truncated to 32 bits. The locality tables store times this way
// to keep entries small; differences are taken modulo 2^32, so a time wraps after 49 days. A
// wrapped entry only looks younger than it is, and since every entry is re-checked against the
// servers' state before use, the worst case is one stale locality hint.
inline std::uint32_t now_ms(const PickInput& in) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(in.now.time_since_epoch());
  return static_cast<std::uint32_t>(ms.count());
}

// Orders for the least-connection family. load() has no inactive connections to weigh, so where
// IPVS uses overhead = active*256 + inactive we use in-flight requests. Ratios are compared
// cross-multiplied in 64 bits (no division; weights are > 0 for eligible servers).
struct FewerInFlight {  // lc
  bool operator()(const ServerView& a, const ServerView& b) const { return a.load() < b.load(); }
};
struct LessLoadPerWeight {  // wlc: load/weight
  bool operator()(const ServerView& a, const ServerView& b) const {
    return std::uint64_t{a.load()} * b.weight < std::uint64_t{b.load()} * a.weight;
  }
};
struct ShorterExpectedDelay {  // sed: (load+1)/weight, so idle heavy servers beat idle light ones
  bool operator()(const ServerView& a, const ServerView& b) const {
    return (std::uint64_t{a.load()} + 1) * b.weight < (std::uint64_t{b.load()} + 1) * a.weight;
  }
};

// The eligible server that `better` ranks first, -1 if none. The scan starts at `start` and
// wraps, and only a strictly better server displaces the current best, so among equals the first
// at or after `start` wins: callers rotate `start` to make equal servers share (IPVS always takes
// the first in list order, which piles an idle pool's trickle onto server 0).
template <typename Better>
int least(std::span<const ServerView> servers, const PickInput& in, std::size_t start,
          Better better) {
  const std::size_t n = servers.size();
  if (start >= n) start = 0;
  int best = -1;
  std::size_t i = start;
  for (std::size_t step = 0; step < n; ++step) {
    if (eligible(servers, i, in) &&
        (best < 0 || better(servers[i], servers[static_cast<std::size_t>(best)]))) {
      best = static_cast<int>(i);
    }
    if (++i == n) i = 0;
  }
  return best;
}

// lc, wlc, sed and nq differ only in their order: one scheduler class, one order per file.
template <typename Better>
class LeastScheduler final : public Scheduler {
 public:
  void rebuild(std::span<const ServerView> servers) override {
    if (next_ >= servers.size()) next_ = 0;
  }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    int best = least(servers, in, next_, Better{});
    if (best >= 0) next_ = static_cast<std::size_t>(best) + 1;  // least() wraps it
    return best;
  }

 private:
  std::size_t next_ = 0;
};

// IPVS is_overloaded() for lblc/lblcr: `s` has more in flight than its weight while some other
// eligible server is below half of its own. (IPVS looks at every destination; a server that may
// not take this request is no reason to move a key, so we look at eligible ones only.)
bool overloaded(std::span<const ServerView> servers, std::size_t s, const PickInput& in);

// lblc and lblcr: key -> Value, the "which server(s) served this key" memory. Bounded and
// allocated once (IPVS caps its table at 16384 entries too): kWays-way set-associative, so a
// lookup reads one set and a new key evicts the least recently used entry of its set when the set
// is full. Entries idle longer than kIdleMs count as absent (IPVS expires idle entries after six
// minutes when its table is full; we do it always, lazily, at lookup).
template <typename Value>
class LocalityTable {
 public:
  static constexpr std::size_t kWays = 4;
  static constexpr std::size_t kSets = 4096;
  static constexpr std::uint32_t kIdleMs = 6 * 60 * 1000;

  LocalityTable() : entries_(std::make_unique<Entry[]>(kWays * kSets)) {}

  // The live entry for `key`, marked used at `now`; null if there is none.
  Value* find(std::uint64_t key, std::uint32_t now) {
    Entry* set = set_of(key);
    for (std::size_t w = 0; w < kWays; ++w) {
      Entry& e = set[w];
      if (e.used && e.key == key && now - e.last_use <= kIdleMs) {
        e.last_use = now;
        return &e.value;
      }
    }
    return nullptr;
  }

  // A fresh entry for `key` (value-initialised), replacing any old one for it, else a free or
  // expired slot, else the set's least recently used entry.
  Value& insert(std::uint64_t key, std::uint32_t now) {
    Entry* set = set_of(key);
    Entry* victim = nullptr;
    for (std::size_t w = 0; w < kWays && !victim; ++w) {
      if (set[w].used && set[w].key == key) victim = &set[w];
    }
    for (std::size_t w = 0; w < kWays && !victim; ++w) {
      if (!set[w].used) victim = &set[w];
    }
    if (!victim) {  // expired entries are the oldest, so they go first
      victim = &set[0];
      for (std::size_t w = 1; w < kWays; ++w) {
        if (now - set[w].last_use > now - victim->last_use) victim = &set[w];
      }
    }
    *victim = Entry{key, now, true, Value{}};
    return victim->value;
  }

  // rebuild(): `keep(value)` rewrites a value for the new server list; false drops the entry.
  template <typename Keep>
  void update_all(Keep keep) {
    for (std::size_t i = 0; i < kWays * kSets; ++i) {
      Entry& e = entries_[i];
      if (e.used && !keep(e.value)) e.used = false;
    }
  }

 private:
  struct Entry {
    std::uint64_t key = 0;
    std::uint32_t last_use = 0;  // now_ms()
    bool used = false;
    Value value{};
  };

  Entry* set_of(std::uint64_t key) {
    // Fibonacci hashing: the top bits of key * 2^64/phi, good even for unmixed keys.
    std::size_t set = static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> 52) % kSets;
    return &entries_[set * kWays];
  }

  std::unique_ptr<Entry[]> entries_;
};

// rebuild() of a locality scheduler: old index -> new index by ServerView::id (-1 where the
// server is gone), since the tables store indices and a reload may reorder, add or remove
// servers. `ids` holds the ids of the previous list and is updated to the new one.
std::vector<int> remap_by_id(std::vector<std::uint64_t>& ids, std::span<const ServerView> servers);

// dh and sh: IPVS's static table of 256 buckets, each naming a server. Built from the servers
// with weight > 0, each getting buckets in proportion to its weight; availability is checked at
// pick time, so a server that goes down keeps its buckets and gets its keys back when it returns.
class BucketTable {
 public:
  static constexpr std::size_t kSize = 256;

  // From rebuild(); O(kSize * servers).
  void build(std::span<const ServerView> servers);
  // The server of the key's home bucket; -1 if no server has weight > 0.
  int home(std::uint64_t key) const { return bucket_[key % kSize]; }
  // The first eligible server in the buckets after the key's home bucket (wrapping); -1 if none.
  int walk(std::span<const ServerView> servers, const PickInput& in, std::uint64_t key) const;

 private:
  std::array<std::int16_t, kSize> bucket_{};
};

// dh and sh differ only in where a key goes when its own server may not take the request.
// Returns a server or -1.
using BucketFallback = int (*)(const BucketTable& table, std::span<const ServerView> servers,
                               const PickInput& in, std::uint64_t key);
// The scheduler around a BucketTable: the key's home server if eligible, else `fallback`'s
// choice when options.fallback, else -1.
std::unique_ptr<Scheduler> make_bucket_scheduler(const SchedulerOptions& options,
                                                 BucketFallback fallback);

std::unique_ptr<Scheduler> make_rr(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_wrr(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_lc(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_wlc(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_sed(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_nq(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_lblc(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_lblcr(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_dh(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_sh(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_mh(const SchedulerOptions& options);
std::unique_ptr<Scheduler> make_p2c(const SchedulerOptions& options);

}  // namespace switchyard::upstream::sched
