// The scheduler interface: which server of a pool gets the next request.
//
// One Scheduler object per pool per worker (worker thread only, no sharing, no atomics): each
// keeps its own position, tables and random state. Every scheduler is one file in sched/ and is
// registered in the explicit table of scheduler.cc (no static initialisers).
//
// The Balancer (pool.h) owns everything that is not the scheduling discipline itself: health,
// draining, max_connections, backup servers, persistence and retries. It hands the scheduler a
// view of the servers in which `available` already says whether a server may take a new request.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "config/config.h"

namespace switchyard::upstream {

using Clock = std::chrono::steady_clock;

// One server as a scheduler sees it at pick time.
struct ServerView {
  std::uint64_t id = 0;      // stable hash of the server's address: the same in every worker
                             // and process, so hash tables built from it agree everywhere
  std::uint32_t weight = 1;  // configured (or runtime) weight; 0 = quiesced, never picked
  bool available = true;     // may take a new request now: healthy, not ejected, not draining,
                             // below max_connections
  // Requests in flight to this server. `active` is this worker's exact count; `others` is the
  // sum of the other workers' counts as they last published them (at most one worker tick, 50 ms,
  // old). Least-connection schedulers use load(): exact for our own traffic, a cheap estimate for
  // the rest, and no shared cache line written per request.
  std::uint32_t active = 0;
  std::uint32_t others = 0;
  std::uint32_t load() const { return active + others; }
};

struct PickInput {
  std::uint64_t key = 0;       // hash of the request's key (hash schedulers); see has_key
  bool has_key = false;        // false: the scheduler uses a key of its own choosing (e.g. 0)
  std::uint64_t excluded = 0;  // bit i set: server i was already tried for this request
  Clock::time_point now{};
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // The server list, ids or weights changed (and before the first pick). Availability and load
  // changes do not call this: they arrive with every pick. May allocate.
  virtual void rebuild(std::span<const ServerView> servers) = 0;

  // The index of the server for this request: available, weight > 0 and not excluded; -1 when no
  // server qualifies (or, for hash schedulers without fallback, when the key's server does not).
  // Must not allocate.
  virtual int pick(std::span<const ServerView> servers, const PickInput& in) = 0;
};

struct SchedulerOptions {
  bool fallback = true;  // hash schedulers: walk on to another server when the key's is unavailable
};

struct SchedulerInfo {
  std::string_view name;
  std::string_view summary;         // one line, for docs and `check` messages
  config::HashKey::On default_key;  // kDefault: the scheduler hashes nothing
};

// Every scheduler this build has, in documentation order.
std::span<const SchedulerInfo> schedulers();
// Null if `name` is not one of schedulers().
const SchedulerInfo* find_scheduler(std::string_view name);
// A new scheduler; null if `name` is unknown.
std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const SchedulerOptions& options);

}  // namespace switchyard::upstream
