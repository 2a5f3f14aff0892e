// rr: round robin (IPVS semantics): servers in turn, weights ignored except that 0 quiesces.
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

class RoundRobin final : public Scheduler {
 public:
  void rebuild(std::span<const ServerView> servers) override {
    if (next_ >= servers.size()) next_ = 0;
  }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    std::size_t n = servers.size();
    for (std::size_t step = 0; step < n; ++step) {
      std::size_t i = (next_ + step) % n;
      if (eligible(servers, i, in)) {
        next_ = (i + 1) % n;
        return static_cast<int>(i);
      }
    }
    return -1;
  }

 private:
  std::size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_rr(const SchedulerOptions&) {
  return std::make_unique<RoundRobin>();
}

}  // namespace switchyard::upstream::sched
