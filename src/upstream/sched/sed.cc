// sed: shortest expected delay (IPVS semantics): the eligible server with the least
// (load()+1)/weight, i.e. the delay a new request would see if every server worked through its
// queue at a rate proportional to its weight. Unlike wlc it sends the first requests of an idle
// pool to the heaviest server rather than to whichever comes first.
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {

std::unique_ptr<Scheduler> make_sed(const SchedulerOptions&) {
  return std::make_unique<LeastScheduler<ShorterExpectedDelay>>();
}

}  // namespace switchyard::upstream::sched
