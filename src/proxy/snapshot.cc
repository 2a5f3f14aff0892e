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

std::shared_ptr<const Snapshot> prepare_snapshot(const Snapshot& s, unsigned workers,
                                                 const Snapshot* previous,
                                                 const std::shared_ptr<tls::TicketKeys>& keys,
                                                 std::string& error) {
  auto next = std::make_shared<Snapshot>();
  next->config = s.config;
  next->rules = s.rules;
  next->stats = bind_stats(*s.config, workers, previous ? previous->stats.get() : nullptr);
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
  for (const auto& [name, pool] : s.config->pools) {
    std::shared_ptr<const tls::ClientContext> ctx;
    if (pool.tls) {
      ctx = tls::ClientContext::build(*pool.tls, error);
      if (!ctx) {
        error = "pool " + name + ": " + error;
        return nullptr;
      }
    }
    next->pool_tls.push_back(std::move(ctx));
  }
  for (const config::Listener& l : s.config->listeners) {
    std::shared_ptr<const tls::ServerContext> ctx;
    if (l.tls) {
      ctx = tls::ServerContext::build(*l.tls, keys, error);
      if (!ctx) {
        error = "listener " + l.name + ": " + error;
        return nullptr;
      }
    }
    next->listener_tls.push_back(std::move(ctx));
  }
  return next;
}

}  // namespace switchyard::proxy
