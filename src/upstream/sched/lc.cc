// lc: least connection (IPVS semantics): the eligible server with the fewest requests in flight,
// weights ignored except that 0 quiesces. load() is this worker's exact count plus the other
// workers' last published counts, so a server busy elsewhere is not piled on from here.
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {

std::unique_ptr<Scheduler> make_lc(const SchedulerOptions&) {
  return std::make_unique<LeastScheduler<FewerInFlight>>();
}

}  // namespace switchyard::upstream::sched
