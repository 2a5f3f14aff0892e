// Compile options of the concrete RuleSet, for tests and benchmarks that want to force the index
// on or off. Production code calls RuleSet::compile. Internal to src/rules.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "rules/rule_set.h"

namespace switchyard::rules {

struct CompileOptions {
  // Tables with at least this many routes get a RouteIndex; shorter ones are scanned in order,
  // which for a handful of routes is cheaper than hashing the host. 1 forces the index for every
  // table, SIZE_MAX disables it.
  std::size_t min_indexed_routes = 8;
};

std::unique_ptr<RuleSet> compile_rule_set(const config::Config& config,
                                          const CompileOptions& options, std::string& error);

}  // namespace switchyard::rules
