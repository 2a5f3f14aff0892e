// dh: destination hashing (IPVS semantics): the key (by default the URL) picks one of 256 buckets,
// each naming a server (BucketTable), so a key always goes to the same server while the server
// list and weights stay the same: a static partition of the keys, e.g. of a cache's objects.
// IPVS dh has no fallback (an unavailable server's keys are dropped). Ours, when enabled, sends
// the request to the server of the first following bucket that may take it; the table is
// shuffled, so a down server's keys spread over the others. Without fallback: -1 (503).
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

int next_buckets(const BucketTable& table, std::span<const ServerView> servers, const PickInput& in,
                 std::uint64_t key) {
  return table.walk(servers, in, key);
}

}  // namespace

std::unique_ptr<Scheduler> make_dh(const SchedulerOptions& options) {
  return make_bucket_scheduler(options, next_buckets);
}

}  // namespace switchyard::upstream::sched
