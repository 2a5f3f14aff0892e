// One immutable configuration snapshot: the validated Config and its compiled routes. Built by
// the control plane, shared read-only by every worker; requests hold the snapshot they started
// on until they finish, so a reload never changes a request half-way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/stats.h"
#include "proxy/tls/client_context.h"
#include "proxy/tls/server_context.h"
#include "rules/rule_set.h"
#include "upstream/pool_state.h"

namespace switchyard::proxy {

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const rules::RuleSet> rules;
  // State shared by workers and the control plane, one per config->pools entry (map order).
  // Filled by attach_pool_states before the snapshot reaches any worker.
  std::vector<std::shared_ptr<upstream::PoolState>> pool_states;
  // TLS contexts, one per config->listeners entry (null for plain listeners). Filled by
  // prepare_snapshot.
  std::vector<std::shared_ptr<const tls::ServerContext>> listener_tls;
  // TLS client contexts, one per config->pools entry (null for plain pools).
  std::vector<std::shared_ptr<const tls::ClientContext>> pool_tls;
  // Statistics objects by this snapshot's indexes; the registry carries over from `previous`.
  // Filled by prepare_snapshot.
  std::shared_ptr<const SnapshotStats> stats;
};

// Compiles `config` into a snapshot; null and `error` set if the rules fail to compile.
std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const config::Config> config,
                                              std::string& error);

// A copy of `s` ready for workers: pool states for `workers` workers (a pool whose server
// addresses are unchanged from `previous` keeps its state: health, persistence, published loads;
// any other gets a new one that inherits health by address) and TLS contexts for its listeners
// (certificate files are read now). Null and `error` set if a TLS context cannot be built.
// Control-plane thread.
std::shared_ptr<const Snapshot> prepare_snapshot(const Snapshot& s, unsigned workers,
                                                 const Snapshot* previous,
                                                 const std::shared_ptr<tls::TicketKeys>& keys,
                                                 std::string& error);

}  // namespace switchyard::proxy
