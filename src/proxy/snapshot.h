// One immutable configuration snapshot: the validated Config and its compiled routes. Built by
// the control plane, shared read-only by every worker; requests hold the snapshot they started
// on until they finish, so a reload never changes a request half-way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "rules/rule_set.h"
#include "upstream/pool_state.h"

namespace switchyard::proxy {

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const rules::RuleSet> rules;
  // State shared by workers and the control plane, one per config->pools entry (map order).
  // Filled by attach_pool_states before the snapshot reaches any worker.
  std::vector<std::shared_ptr<upstream::PoolState>> pool_states;
};

// Compiles `config` into a snapshot; null and `error` set if the rules fail to compile.
std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const config::Config> config,
                                              std::string& error);

// A copy of `s` with pool states for `workers` workers: a pool whose server addresses are
// unchanged from `previous` keeps its state (health, persistence, published loads); any other gets
// a new one that inherits health by address. Control-plane thread.
std::shared_ptr<const Snapshot> attach_pool_states(const Snapshot& s, unsigned workers,
                                                   const Snapshot* previous);

}  // namespace switchyard::proxy
