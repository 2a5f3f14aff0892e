// Server selection for one pool, as seen by one worker: the scheduler plus everything around it
// that decides whether a server may take a request at all.
//
// Each worker owns its own Balancer per pool (worker thread only; no locks, no shared writes per
// request). What crosses workers lives in PoolState: active-check health (read on sync()), each
// worker's in-flight counts (published on sync(), for the least-connection family) and the
// source-persistence table.
//
// A server may take a new request when it is not draining, its weight is above 0, active checks do
// not say it is down, passive checks have not ejected it, and this worker's share of its
// max_connections is not used up. Backup servers are used only while no other server is up.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "upstream/pool_state.h"
#include "upstream/scheduler.h"

namespace switchyard::upstream {

// What one request brings to the choice.
struct PickRequest {
  std::uint64_t key = 0;  // scheduler hash key (see PickInput)
  bool has_key = false;
  std::uint64_t source_key = 0;  // client address after the persistence netmask (kSource)
  bool has_source_key = false;
  int cookie_server = -1;   // server named by the persistence cookie (kCookie), -1 = none
  std::uint64_t tried = 0;  // bit i: server i already tried for this request
};

// How an attempt on a server ended, for passive health.
enum class Outcome {
  kSuccess,         // a response other than a counted 5xx
  kConnectFailure,  // refused, unreachable or timed out
  kReset,           // connection lost before a complete response
  k5xx,             // a 5xx response (counted when outlier.count_5xx)
};

class Balancer {
 public:
  // `worker` indexes this worker's load row in `state` (state->workers() rows).
  Balancer(const config::Pool& pool, std::shared_ptr<PoolState> state, unsigned worker);

  // A reload kept this pool's servers (same addresses, same order, same scheduler and hashing):
  // take the new settings (weights, drain, max_connections, backup, persistence, outlier) while
  // keeping in-flight counts, scheduler position and passive-health state.
  void rebind(const config::Pool& pool);
  // Whether rebind() can take `pool` (otherwise build a new Balancer).
  bool can_rebind(const config::Pool& pool, const PoolState& state) const;

  struct Pick {
    int server = -1;      // -1: no server for this request now
    bool full = false;    // -1 only because every usable server is at max_connections: may queue
    bool sticky = false;  // chosen by persistence
  };
  Pick pick(const PickRequest& r, Clock::time_point now);

  // A request was sent to / finished with `server` (in-flight accounting; pair them exactly).
  void started(int server);
  void finished(int server);
  // Passive health: the result of one attempt.
  void report(int server, Outcome outcome, Clock::time_point now);

  // Worker tick: publishes this worker's in-flight counts, reads the other workers' and the
  // active-check results, readmits ejected servers whose time is up or that passed a check.
  void sync(Clock::time_point now);

  // Persistence cookie: the value naming `server`, and the server a value names (-1: none).
  std::string_view cookie_value(int server) const { return servers_[idx(server)].cookie; }
  int server_for_cookie(std::string_view value) const;

  // Draining or in maintenance: no new requests, and its idle connections are not kept.
  bool draining(int server) const {
    return cfg_->servers[idx(server)].drain || cfg_->servers[idx(server)].maintenance;
  }
  std::uint32_t active(int server) const { return servers_[idx(server)].view.active; }
  const config::Pool& config() const { return *cfg_; }
  PoolState& state() { return *state_; }
  std::size_t size() const { return servers_.size(); }
  // For logs and tests: is the server usable for new requests now (ignoring max_connections)?
  bool up(int server, Clock::time_point now) const;

 private:
  struct Server {
    ServerView view;               // what the scheduler sees
    std::string cookie;            // persistence cookie value (hex of the address hash)
    std::uint32_t max_active = 0;  // this worker's share of max_connections; 0 = unlimited
    Health health = Health::kUnchecked;
    // Passive health.
    std::uint32_t failures = 0;   // consecutive
    std::uint32_t ejections = 0;  // times ejected since last fully healthy
    Clock::time_point ejected_until{};
    std::uint64_t passes_at_ejection = 0;
    std::uint64_t passes = 0;  // active-check passes as of the last sync
  };
  static std::size_t idx(int server) { return static_cast<std::size_t>(server); }
  void apply_settings(const config::Pool& pool);
  bool usable(const Server& s, Clock::time_point now) const;
  bool full(const Server& s) const { return s.max_active && s.view.active >= s.max_active; }
  bool takes(const Server& s, std::size_t i, std::uint64_t tried, Clock::time_point now) const;
  int run_scheduler(const PickRequest& r, Clock::time_point now, bool backups, bool& blocked);

  const config::Pool* cfg_;
  std::shared_ptr<PoolState> state_;
  unsigned worker_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<Server> servers_;
  std::vector<ServerView> views_;  // passed to the scheduler; `available` set per pick
  bool has_backup_ = false;
  bool rebuilt_ = false;
  std::uint32_t persist_timeout_s_ = 0;
};

}  // namespace switchyard::upstream
