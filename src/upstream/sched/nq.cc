// nq: never queue (IPVS semantics): an idle eligible server (load() == 0) if there is one, since a
// request sent there waits behind nothing whatever the weights; otherwise sed. Idle servers are
// all equal here, so they take turns (IPVS takes the first in list order).
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

struct IdleFirstThenSed {
  bool operator()(const ServerView& a, const ServerView& b) const {
    bool a_idle = a.load() == 0;
    bool b_idle = b.load() == 0;
    if (a_idle || b_idle) return a_idle && !b_idle;
    return ShorterExpectedDelay{}(a, b);
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_nq(const SchedulerOptions&) {
  return std::make_unique<LeastScheduler<IdleFirstThenSed>>();
}

}  // namespace switchyard::upstream::sched
