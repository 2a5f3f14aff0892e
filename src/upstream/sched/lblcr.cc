// lblcr: locality-based least connection with replication (IPVS semantics). Like lblc, but a key
// maps to a set of servers, so one hot key can be served by several: the least loaded (wlc) member
// takes the request; when it is overloaded (see overloaded()) the pool's wlc choice joins the set
// and takes it. A set that has not changed for kShrinkMs loses its most loaded member, so sets
// shrink back once the rush is over.
//
// Sets are bitmasks of server indices, so only the first 64 servers can be members (the config
// loader caps pools at 64 servers, and PickInput::excluded has the same limit).
#include <bit>

#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

// IPVS's lblcr_expiration sysctl defaults to a day; six seconds follows load changes at the pace
// an L7 pool sees them and still keeps a replicated set through a short burst.
constexpr std::uint32_t kShrinkMs = 6000;

struct ServerSet {
  std::uint64_t members = 0;  // bit i: server i
  std::uint32_t lastmod = 0;  // now_ms() when members last changed
};

std::uint64_t bit(std::size_t i) {
  return i < 64 ? std::uint64_t{1} << i : 0;
}

// The member that `better` ranks first among those with `want(i)`, lowest index on ties; -1 if
// none.
template <typename Want, typename Better>
int best_member(std::span<const ServerView> servers, std::uint64_t members, Want want,
                Better better) {
  int best = -1;
  for (; members; members &= members - 1) {
    auto i = static_cast<std::size_t>(std::countr_zero(members));
    if (i >= servers.size() || !want(i)) continue;
    if (best < 0 || better(servers[i], servers[static_cast<std::size_t>(best)])) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

class LocalityReplicated final : public Scheduler {
 public:
  void rebuild(std::span<const ServerView> servers) override {
    std::vector<int> map = remap_by_id(ids_, servers);
    table_.update_all([&](ServerSet& set) {
      std::uint64_t moved = 0;
      for (std::uint64_t m = set.members; m; m &= m - 1) {
        auto i = static_cast<std::size_t>(std::countr_zero(m));
        if (i < map.size() && map[i] >= 0) moved |= bit(static_cast<std::size_t>(map[i]));
      }
      set.members = moved;
      return moved != 0;
    });
    if (next_ >= servers.size()) next_ = 0;
  }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    const std::uint64_t key = key_of(in);
    const std::uint32_t now = now_ms(in);
    ServerSet* set = table_.find(key, now);
    if (set) {
      int dest = best_member(
          servers, set->members, [&](std::size_t i) { return eligible(servers, i, in); },
          LessLoadPerWeight{});
      if (std::popcount(set->members) > 1 && now - set->lastmod > kShrinkMs)
        shrink(servers, *set, dest, now);
      if (dest >= 0 && !overloaded(servers, static_cast<std::size_t>(dest), in)) return dest;
    }
    int chosen = least(servers, in, next_, LessLoadPerWeight{});
    if (chosen < 0) return -1;
    next_ = static_cast<std::size_t>(chosen) + 1;
    if (!set) {
      set = &table_.insert(key, now);
      set->lastmod = now;
    }
    std::uint64_t b = bit(static_cast<std::size_t>(chosen));
    if (b && !(set->members & b)) {
      set->members |= b;
      set->lastmod = now;
    }
    return chosen;
  }

 private:
  // Drop one member other than `keep` (the one about to be used): one that cannot take requests
  // at all if there is such (IPVS never drops weight-0 members, so they linger), else the most
  // loaded by load/weight.
  static void shrink(std::span<const ServerView> servers, ServerSet& set, int keep,
                     std::uint32_t now) {
    std::uint64_t others = set.members & ~(keep >= 0 ? bit(static_cast<std::size_t>(keep)) : 0);
    int drop = -1;
    for (std::uint64_t m = others; m && drop < 0; m &= m - 1) {
      auto i = static_cast<std::size_t>(std::countr_zero(m));
      if (i >= servers.size() || !servers[i].available || servers[i].weight == 0) {
        drop = static_cast<int>(i);
      }
    }
    if (drop < 0) {
      drop = best_member(
          servers, others, [](std::size_t) { return true; },
          [](const ServerView& a, const ServerView& b) { return LessLoadPerWeight{}(b, a); });
    }
    if (drop < 0) return;
    set.members &= ~bit(static_cast<std::size_t>(drop));
    set.lastmod = now;
  }

  LocalityTable<ServerSet> table_;  // key -> servers
  std::vector<std::uint64_t> ids_;  // as of the last rebuild, to remap the table
  std::size_t next_ = 0;            // wlc tie rotation
};

}  // namespace

std::unique_ptr<Scheduler> make_lblcr(const SchedulerOptions&) {
  return std::make_unique<LocalityReplicated>();
}

}  // namespace switchyard::upstream::sched
