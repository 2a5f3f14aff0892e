// The 256-bucket table of dh and sh, and the scheduler around it (see schedulers.h).
#include <algorithm>
#include <vector>

#include "rules/hash.h"
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {

void BucketTable::build(std::span<const ServerView> servers) {
  bucket_.fill(-1);
  struct Share {
    std::size_t server;
    std::uint64_t weight;
    std::int64_t count;  // buckets
    std::int64_t spare;  // ideal share minus count, in units of 1/total buckets
  };
  std::vector<Share> shares;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < servers.size() && shares.size() < kSize; ++i) {
    if (servers[i].weight == 0) continue;
    shares.push_back({i, servers[i].weight, 0, 0});
    total += servers[i].weight;
  }
  if (shares.empty()) return;

  // Buckets in proportion to weight, at least one each. IPVS hands out `weight` consecutive
  // buckets per server until the 256 run out, so when the weights add up to more than 256 the
  // servers last in the list get none; apportioning keeps every server in and the ratios close.
  std::int64_t assigned = 0;
  for (Share& s : shares) {
    std::uint64_t ideal = kSize * s.weight;  // times 1/total
    s.count = std::max<std::int64_t>(1, static_cast<std::int64_t>(ideal / total));
    s.spare = static_cast<std::int64_t>(ideal) - s.count * static_cast<std::int64_t>(total);
    assigned += s.count;
  }
  const auto unit = static_cast<std::int64_t>(total);
  while (assigned < static_cast<std::int64_t>(kSize)) {  // largest remainder first
    Share* most = &shares[0];
    for (Share& s : shares) most = s.spare > most->spare ? &s : most;
    ++most->count;
    most->spare -= unit;
    ++assigned;
  }
  while (assigned > static_cast<std::int64_t>(kSize)) {  // only after "at least one" bumps
    Share* least = nullptr;
    for (Share& s : shares) {
      if (s.count > 1 && (!least || s.spare < least->spare)) least = &s;
    }
    --least->count;
    least->spare += unit;
    --assigned;
  }

  // Each server's buckets, then a fixed shuffle: the same table in every worker and process, and
  // the bucket after any bucket belongs to a server drawn at random by share, so dh's walk to the
  // following buckets spreads a down server's keys over the others instead of handing them all to
  // one neighbour (a regular interleave 0 1 2 3 0 1 2 3 would do exactly that).
  std::size_t b = 0;
  for (const Share& s : shares) {
    for (std::int64_t c = 0; c < s.count; ++c) bucket_[b++] = static_cast<std::int16_t>(s.server);
  }
  for (std::size_t i = kSize - 1; i > 0; --i) {  // Fisher-Yates
    std::swap(bucket_[i], bucket_[rules::mix64(i) % (i + 1)]);
  }
}

int BucketTable::walk(std::span<const ServerView> servers, const PickInput& in,
                      std::uint64_t key) const {
  for (std::size_t step = 1; step <= kSize; ++step) {
    int s = bucket_[(key + step) % kSize];
    if (s >= 0 && static_cast<std::size_t>(s) < servers.size() &&
        eligible(servers, static_cast<std::size_t>(s), in)) {
      return s;
    }
  }
  return -1;
}

namespace {

class BucketScheduler final : public Scheduler {
 public:
  explicit BucketScheduler(BucketFallback fallback) : fallback_(fallback) {}

  void rebuild(std::span<const ServerView> servers) override { table_.build(servers); }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    const std::uint64_t key = key_of(in);
    int s = table_.home(key);
    if (s < 0 || static_cast<std::size_t>(s) >= servers.size()) return -1;  // no server at all
    if (eligible(servers, static_cast<std::size_t>(s), in)) return s;
    return fallback_ ? fallback_(table_, servers, in, key) : -1;
  }

 private:
  BucketTable table_;
  BucketFallback fallback_;  // null: no fallback
};

}  // namespace

std::unique_ptr<Scheduler> make_bucket_scheduler(const SchedulerOptions& options,
                                                 BucketFallback fallback) {
  return std::make_unique<BucketScheduler>(options.fallback ? fallback : nullptr);
}

}  // namespace switchyard::upstream::sched
