// sh: source hashing (IPVS semantics): like dh (the same 256-bucket table), keyed by default on
// the client address, so a client keeps its server without any per-client state.
// Fallback follows IPVS sh-fallback: rehash the key with an attempt number and look again, so a
// down server's clients spread over all the others in proportion to their buckets. IPVS gives up
// after 256 attempts; we walk the buckets after kRehashes misses, so that a request is never
// refused while some server could take it. Without fallback: -1 (503).
#include "rules/hash.h"
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

// Each attempt misses with probability (share of buckets whose server cannot take the request);
// 16 misses in a row is rare enough that the walk's bias does not matter.
constexpr std::uint64_t kRehashes = 16;

int rehash(const BucketTable& table, std::span<const ServerView> servers, const PickInput& in,
           std::uint64_t key) {
  for (std::uint64_t attempt = 1; attempt <= kRehashes; ++attempt) {
    int s = table.home(rules::mix64(key ^ (attempt * 0x9e3779b97f4a7c15ull)));
    if (static_cast<std::size_t>(s) < servers.size() &&
        eligible(servers, static_cast<std::size_t>(s), in)) {
      return s;
    }
  }
  return table.walk(servers, in, key);
}

}  // namespace

std::unique_ptr<Scheduler> make_sh(const SchedulerOptions& options) {
  return make_bucket_scheduler(options, rehash);
}

}  // namespace switchyard::upstream::sched
