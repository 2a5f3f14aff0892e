// Server selection for one pool, as seen by one worker.
//
// Each worker owns its own Balancer per pool (no sharing, no atomics): schedulers keep their
// position per worker, which over many workers still spreads load evenly. Passive health: a server
// that refused or timed out a connect is skipped by this worker for a short hold-down time.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "config/config.h"

namespace switchyard::upstream {

using Clock = std::chrono::steady_clock;

class Balancer {
 public:
  static constexpr std::chrono::milliseconds kHoldDown{2000};

  explicit Balancer(const config::Pool& pool);

  // Index of the server for the next request, never one in `tried` (bit i = server i) and,
  // while any alternative exists, never one held down. -1 when every server has been tried.
  int pick(std::uint64_t tried, Clock::time_point now);

  void mark_failed(int server, Clock::time_point now);
  void mark_ok(int server);

  std::size_t size() const { return servers_.size(); }

 private:
  struct State {
    std::int64_t weight = 1;
    std::int64_t current = 0;  // smooth weighted round robin (as in nginx): even interleaving
    Clock::time_point down_until{};
  };
  std::vector<State> servers_;
};

}  // namespace switchyard::upstream
