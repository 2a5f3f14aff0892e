// Active health checks: periodic TCP connects or HTTP requests against every server of the pools
// that configure `health`, turned into the ServerHealth state that workers read.
//
// Threads: everything here runs on the control-plane thread, the single thread that runs the
// io_context given to the constructor. The checker never blocks it: connects, requests, reads and
// deadlines are all asynchronous. Workers never call into the checker; they only read the
// ServerHealth atomics of PoolState (relaxed/acquire loads), of which the checker is the ONLY
// writer. Completion handlers touch no state shared with other threads apart from those atomics,
// so no locks are taken; this relies on the io_context being run by one thread only.
//
// Schedule (per server): the first check of a fresh server starts after a uniformly random delay
// in [0, min(interval, 100 ms)], so a new server gets a verdict quickly (until then it is
// kUnchecked, which means "serving") while a large farm is still not connected to in one burst.
// Each later check starts interval * (1 + u) after the previous one STARTED, u uniform in
// [-jitter_percent, +jitter_percent] %, which keeps drifting phases apart; a check that outlasts
// its interval is followed by the next one at once (never two checks of a server at a time).
// `timeout` bounds one check as a whole: connect, request and response.
//
// Verdicts: the first result of a server whose state is kUnchecked sets it at once (pass -> kUp,
// fail -> kDown). After that a kUp server goes kDown after `fall` consecutive failures and a kDown
// server comes back after `rise` consecutive passes. A PoolState created by a reload may inherit
// kUp/kDown by address (PoolState::inherit_health); that inherited state is honoured, so an
// inherited kDown server needs `rise` passes. Every change is logged (warn for DOWN, info for UP).
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "config/config.h"
#include "upstream/pool_state.h"

namespace switchyard::upstream {

class HealthChecker {
 public:
  // `io` must outlive the checker, and also any of its handlers still queued when the checker is
  // destroyed (they hold their own state alive and return at once; run or destroy the io_context
  // afterwards, either is fine). Nothing starts until update().
  explicit HealthChecker(boost::asio::io_context& io);
  // Stops every check (same as stop()). Control-plane thread.
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  struct Target {
    std::shared_ptr<const config::Config> owner;  // keeps *pool alive during update()
    const config::Pool* pool;
    std::shared_ptr<PoolState> state;  // same server order as pool->servers
  };

  // Control-plane thread. Check exactly these pools from now on. The checker copies what it needs
  // from *pool (settings, addresses) and keeps `state` alive while it checks its servers; it does
  // not keep `owner`.
  //
  // - A pool without `health` is not checked, and its servers are set back to kUnchecked
  //   (serving): a state left over from earlier checks could otherwise never change again.
  // - A server whose (PoolState object, index), address and HealthCheck settings are unchanged
  //   keeps its running schedule and rise/fall counters; any other server starts fresh (with the
  //   state its ServerHealth already holds, see above).
  // - Checks of servers no longer listed stop at once, including one in flight; their
  //   ServerHealth is not written again.
  // - The same PoolState listed twice is checked once (the first listing wins), so every
  //   ServerHealth keeps a single writer. Servers beyond state->size() are ignored (logged).
  void update(std::vector<Target> targets);

  // Control-plane thread. Stops every check, as update({}) does. update() may start again later.
  void stop();

  // Number of checks completed so far (all servers; passed or failed, not the ones cancelled by
  // update/stop). Any thread.
  std::uint64_t checks_completed() const;

 private:
  struct Shared;       // what completion handlers need beyond their own server (see .cc)
  struct ServerCheck;  // one server's schedule, counters and in-flight check
  using Key = std::pair<const PoolState*, std::size_t>;

  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  std::map<Key, std::shared_ptr<ServerCheck>> checks_;
};

}  // namespace switchyard::upstream
