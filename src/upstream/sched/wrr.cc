// wrr: weighted round robin. IPVS picks servers in proportion to their weights; we interleave
// them smoothly (nginx's algorithm: each pick adds every weight to its server's credit and takes
// the largest), so 5:1:1 gives a a b a c a a rather than a burst of five.
#include <vector>

#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

class WeightedRoundRobin final : public Scheduler {
 public:
  void rebuild(std::span<const ServerView> servers) override { credit_.assign(servers.size(), 0); }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    std::int64_t total = 0;
    int best = -1;
    for (std::size_t i = 0; i < servers.size(); ++i) {
      if (!eligible(servers, i, in)) continue;
      credit_[i] += servers[i].weight;
      total += servers[i].weight;
      if (best < 0 || credit_[i] > credit_[static_cast<std::size_t>(best)]) {
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) credit_[static_cast<std::size_t>(best)] -= total;
    return best;
  }

 private:
  std::vector<std::int64_t> credit_;
};

}  // namespace

std::unique_ptr<Scheduler> make_wrr(const SchedulerOptions&) {
  return std::make_unique<WeightedRoundRobin>();
}

}  // namespace switchyard::upstream::sched
