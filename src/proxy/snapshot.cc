#include "proxy/snapshot.h"

namespace switchyard::proxy {

std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const config::Config> config,
                                              std::string& error) {
  std::unique_ptr<rules::RuleSet> rules = rules::RuleSet::compile(*config, error);
  if (!rules) return nullptr;
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->config = std::move(config);
  snapshot->rules = std::move(rules);
  return snapshot;
}

std::shared_ptr<const Snapshot> attach_pool_states(const Snapshot& s, unsigned workers,
                                                   const Snapshot* previous) {
  auto next = std::make_shared<Snapshot>();
  next->config = s.config;
  next->rules = s.rules;
  for (const auto& [name, pool] : s.config->pools) {
    std::shared_ptr<upstream::PoolState> prev;
    if (previous) {
      for (const auto& st : previous->pool_states) {
        if (st->name() == name && st->workers() == workers) prev = st;
      }
    }
    if (prev && prev->same_servers(pool)) {
      next->pool_states.push_back(prev);
      continue;
    }
    auto fresh = std::make_shared<upstream::PoolState>(pool, workers);
    if (prev) fresh->inherit_health(*prev);
    next->pool_states.push_back(std::move(fresh));
  }
  return next;
}

}  // namespace switchyard::proxy
