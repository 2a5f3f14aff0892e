// State of one pool shared by the control plane and every worker: server health from active
// checks, each worker's published load, and the source-persistence table.
//
// Threads: the health checker (control plane) is the only writer of ServerHealth; worker w is
// the only writer of its own load row; the persistence table is written by any worker with
// single-word compare-and-swap. Nothing here takes a lock, and a worker's request path writes no
// shared cache line except on a persistence miss. Readers tolerate values up to one tick old.
//
// Lifetime: owned through shared_ptr by the snapshots that use it. A reload keeps the same
// PoolState when the pool's server addresses are unchanged, so health and persistence survive it;
// otherwise a new one inherits health by address (see PoolState::inherit_health).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "upstream/persistence_table.h"

namespace switchyard::upstream {

enum class Health : std::uint8_t {
  kUnchecked,  // no check result yet (or no checks configured): treated as up
  kUp,
  kDown,
};

const char* health_name(Health h);

// One server's active-check state. Written only by the health checker.
struct alignas(64) ServerHealth {
  std::atomic<Health> state{Health::kUnchecked};
  // Checks passed so far. A worker that ejected a server (passive health) readmits it early once
  // this moves past the value it saw at ejection time.
  std::atomic<std::uint64_t> passes{0};
  // When the last check finished, for the admin API: unix time in ms (0 = never).
  std::atomic<std::int64_t> last_check_ms{0};
  // Whether that check passed, and why it failed if it did not. last_reason is written by the
  // health checker and read by the admin API, both on the control-plane thread only.
  std::atomic<bool> last_passed{false};
  std::string last_reason;
};

class PoolState {
 public:
  PoolState(const config::Pool& pool, unsigned workers);
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;

  const std::string& name() const { return name_; }
  std::size_t size() const { return addresses_.size(); }
  unsigned workers() const { return workers_; }
  const std::string& address(std::size_t server) const { return addresses_[server]; }
  // True when `pool` has exactly these server addresses in this order (weights may differ): the
  // reload keeps this state.
  bool same_servers(const config::Pool& pool) const;
  // Copies health of servers with the same address from `prev` (a reload that changed the pool).
  void inherit_health(const PoolState& prev);

  ServerHealth& health(std::size_t server) { return health_[server]; }
  const ServerHealth& health(std::size_t server) const { return health_[server]; }

  // Worker `worker` publishes its in-flight count for `server` (relaxed; its own cache line).
  void publish_load(unsigned worker, std::size_t server, std::uint32_t active);
  // Sum of the other workers' last published counts for `server`.
  std::uint32_t others_load(unsigned worker, std::size_t server) const;
  // Sum of every worker's last published count for `server` (admin API, metrics).
  std::uint32_t total_load(std::size_t server) const { return others_load(workers_, server); }

  PersistenceTable& persistence() { return persistence_; }

 private:
  struct alignas(64) LoadRow {
    std::unique_ptr<std::atomic<std::uint32_t>[]> active;
  };
  std::string name_;
  std::vector<std::string> addresses_;
  unsigned workers_;
  std::unique_ptr<ServerHealth[]> health_;
  std::unique_ptr<LoadRow[]> loads_;  // [worker]
  PersistenceTable persistence_;
};

}  // namespace switchyard::upstream
