// wlc: weighted least connection (IPVS semantics): the eligible server with the least
// load()/weight. IPVS weighs (active*256 + inactive)/weight; an L7 proxy has no TIME_WAIT-like
// inactive connections worth counting, only requests in flight, so load() alone is the overhead.
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {

std::unique_ptr<Scheduler> make_wlc(const SchedulerOptions&) {
  return std::make_unique<LeastScheduler<LessLoadPerWeight>>();
}

}  // namespace switchyard::upstream::sched
