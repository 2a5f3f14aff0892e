#include "proxy/stats.h"

namespace switchyard::proxy {
namespace {

std::string route_key(const std::string& table, std::size_t position) {
  std::string key = table;
  key.push_back('\0');
  key += std::to_string(position);
  return key;
}

std::string server_key(const std::string& pool, const std::string& address) {
  std::string key = pool;
  key.push_back('\0');
  key += address;
  return key;
}

template <typename T>
const T* find(const std::map<std::string, std::unique_ptr<T>>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : it->second.get();
}

}  // namespace

template <typename T>
T* StatsRegistry::get(std::map<std::string, std::unique_ptr<T>>& m, const std::string& key,
                      unsigned workers) {
  auto& slot = m[key];
  if (!slot) slot = std::make_unique<T>(workers);
  return slot.get();
}

std::shared_ptr<const SnapshotStats> StatsRegistry::bind(const config::Config& config) {
  auto s = std::make_shared<SnapshotStats>();
  s->registry = shared_from_this();
  for (const config::Listener& l : config.listeners) {
    s->listeners.push_back(get(listeners_, l.name, workers_));
  }
  std::size_t routes = 0;
  for (const auto& [name, table] : config.routes) {
    for (const config::Route& r : table.routes) {
      routes = std::max<std::size_t>(routes, std::size_t{r.index} + 1);
    }
  }
  s->routes.assign(routes, nullptr);
  for (const auto& [name, table] : config.routes) {
    for (std::size_t i = 0; i < table.routes.size(); ++i) {
      s->routes[table.routes[i].index] = get(routes_, route_key(name, i), workers_);
    }
  }
  for (const auto& [name, pool] : config.pools) {
    s->pools.push_back(get(pools_, name, workers_));
    std::vector<ServerStats*> servers;
    for (const config::Server& server : pool.servers) {
      servers.push_back(get(servers_, server_key(name, server.address.text), workers_));
    }
    s->servers.push_back(std::move(servers));
  }
  return s;
}

const ListenerStats* StatsRegistry::listener(const std::string& name) const {
  return find(listeners_, name);
}

const RouteStats* StatsRegistry::route(const std::string& table, std::size_t position) const {
  return find(routes_, route_key(table, position));
}

const PoolStats* StatsRegistry::pool(const std::string& name) const {
  return find(pools_, name);
}

const ServerStats* StatsRegistry::server(const std::string& pool,
                                         const std::string& address) const {
  return find(servers_, server_key(pool, address));
}

std::shared_ptr<const SnapshotStats> bind_stats(const config::Config& config, unsigned workers,
                                                const SnapshotStats* previous) {
  std::shared_ptr<StatsRegistry> registry;
  if (previous && previous->registry && previous->registry->workers() == workers) {
    registry = previous->registry;
  } else {
    registry = std::make_shared<StatsRegistry>(workers);
  }
  return registry->bind(config);
}

}  // namespace switchyard::proxy
