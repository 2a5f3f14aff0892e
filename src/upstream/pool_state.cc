#include "upstream/pool_state.h"

namespace switchyard::upstream {

const char* health_name(Health h) {
  switch (h) {
    case Health::kUnchecked:
      return "unchecked";
    case Health::kUp:
      return "up";
    case Health::kDown:
      return "down";
  }
  return "?";
}

PoolState::PoolState(const config::Pool& pool, unsigned workers)
    : name_(pool.name),
      workers_(workers),
      health_(std::make_unique<ServerHealth[]>(pool.servers.size())),
      loads_(std::make_unique<LoadRow[]>(workers)) {
  for (const config::Server& s : pool.servers) addresses_.push_back(s.address.text);
  for (unsigned w = 0; w < workers; ++w) {
    loads_[w].active = std::make_unique<std::atomic<std::uint32_t>[]>(addresses_.size());
    for (std::size_t s = 0; s < addresses_.size(); ++s) {
      loads_[w].active[s].store(0, std::memory_order_relaxed);
    }
  }
}

bool PoolState::same_servers(const config::Pool& pool) const {
  if (pool.servers.size() != addresses_.size()) return false;
  for (std::size_t i = 0; i < addresses_.size(); ++i) {
    if (pool.servers[i].address.text != addresses_[i]) return false;
  }
  return true;
}

void PoolState::inherit_health(const PoolState& prev) {
  for (std::size_t i = 0; i < addresses_.size(); ++i) {
    for (std::size_t j = 0; j < prev.addresses_.size(); ++j) {
      if (prev.addresses_[j] != addresses_[i]) continue;
      const ServerHealth& from = prev.health_[j];
      health_[i].state.store(from.state.load(std::memory_order_relaxed), std::memory_order_relaxed);
      health_[i].passes.store(from.passes.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);
      health_[i].last_check_ms.store(from.last_check_ms.load(std::memory_order_relaxed),
                                     std::memory_order_relaxed);
      health_[i].last_passed.store(from.last_passed.load(std::memory_order_relaxed),
                                   std::memory_order_relaxed);
      health_[i].last_reason = from.last_reason;
    }
  }
}

void PoolState::publish_load(unsigned worker, std::size_t server, std::uint32_t active) {
  loads_[worker].active[server].store(active, std::memory_order_relaxed);
}

std::uint32_t PoolState::others_load(unsigned worker, std::size_t server) const {
  std::uint32_t sum = 0;
  for (unsigned w = 0; w < workers_; ++w) {
    if (w != worker) sum += loads_[w].active[server].load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace switchyard::upstream
