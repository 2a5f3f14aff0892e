// p2c: power of two choices (Mitzenmacher; Envoy/Finagle "least request"): two distinct eligible
// servers drawn at random, the one with the lower load()/weight wins. Nearly as good as a full
// least-load scan at spreading load, with no herd on the single least-loaded server when the
// load view is stale (here: other workers' counts are up to one tick old) and O(1) per pick.
#include <chrono>

#include "rules/hash.h"
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

class PowerOfTwoChoices final : public Scheduler {
 public:
  // Seeded per object (address and clock) so that workers do not draw the same pairs in step.
  PowerOfTwoChoices()
      : state_(rules::mix64(reinterpret_cast<std::uintptr_t>(this) ^
                            static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()))) {}

  void rebuild(std::span<const ServerView>) override {}

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    const std::size_t n = servers.size();
    if (n >= 2) {
      // Fast path: a distinct pair from all servers; taken whenever both may take the request,
      // which keeps the pair uniform over the eligible ones.
      std::uint64_t r = next();
      std::size_t a = below(r, n);
      std::size_t b = below(r >> 32, n - 1);
      if (b >= a) ++b;
      if (eligible(servers, a, in) && eligible(servers, b, in)) return better(servers, a, b);
    }
    // Some servers are out: draw the pair by rank among the eligible ones.
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i) count += eligible(servers, i, in);
    if (count == 0) return -1;
    std::uint64_t r = next();
    std::size_t ra = below(r, count);
    std::size_t rb = count > 1 ? below(r >> 32, count - 1) : ra;
    if (count > 1 && rb >= ra) ++rb;
    int a = -1, b = -1;
    for (std::size_t i = 0, rank = 0; i < n; ++i) {
      if (!eligible(servers, i, in)) continue;
      if (rank == ra) a = static_cast<int>(i);
      if (rank == rb) b = static_cast<int>(i);
      ++rank;
    }
    return better(servers, static_cast<std::size_t>(a), static_cast<std::size_t>(b));
  }

 private:
  // load/weight, cross-multiplied; ties to `a`, which is random anyway.
  static int better(std::span<const ServerView> servers, std::size_t a, std::size_t b) {
    return static_cast<int>(LessLoadPerWeight{}(servers[b], servers[a]) ? b : a);
  }

  // [0, n) from the low 32 bits of r (Lemire's multiply-shift: no division).
  static std::size_t below(std::uint64_t r, std::size_t n) {
    return static_cast<std::size_t>(((r & 0xffffffffull) * n) >> 32);
  }

  // splitmix64: one add and the mix64 finaliser per draw, plenty for load balancing.
  std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    return rules::mix64(state_);
  }

  std::uint64_t state_;
};

}  // namespace

std::unique_ptr<Scheduler> make_p2c(const SchedulerOptions&) {
  return std::make_unique<PowerOfTwoChoices>();
}

}  // namespace switchyard::upstream::sched
