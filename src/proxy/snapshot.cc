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

}  // namespace switchyard::proxy
