// One immutable configuration snapshot: the validated Config and its compiled routes. Built by
// the control plane, shared read-only by every worker; requests hold the snapshot they started
// on until they finish, so a reload never changes a request half-way.
#pragma once

#include <memory>

#include "config/config.h"
#include "rules/rule_set.h"

namespace switchyard::proxy {

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const rules::RuleSet> rules;
};

// Compiles `config` into a snapshot; null and `error` set if the rules fail to compile.
std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const config::Config> config,
                                              std::string& error);

}  // namespace switchyard::proxy
