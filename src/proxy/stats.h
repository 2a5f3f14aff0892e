// Request statistics by listener, route, pool and server, kept per worker and summed on scrape.
//
// Ownership and threads:
// - StatsRegistry is created and extended by the control plane only (bind(), on every snapshot it
//   publishes); its objects are never freed while the registry lives, and every Snapshot holds
//   the registry (through SnapshotStats), so a worker's pointers stay valid while it runs.
// - Each object has one slot per worker (PerWorker<T>, each slot on cache lines of its own):
//   worker w writes only slot w (core::Counter's single-writer rule); the control plane reads
//   every slot without locks. Nothing a request touches is written by another thread.
// - Objects are keyed by name (listener name, route table + position, pool name, pool + server
//   address), so counts survive reloads and admin changes that keep the name: Prometheus sees
//   monotonic counters. Objects of names no longer configured stay (a later config may bring the
//   name back) but are not exported: label cardinality follows the configuration.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/counter.h"

namespace switchyard::proxy {

// Status classes 1xx..5xx; index = status / 100 - 1.
constexpr std::size_t kStatusClasses = 5;
inline int status_class(int status) {
  return status >= 100 && status < 600 ? status / 100 - 1 : -1;
}

struct alignas(64) ListenerCounters {
  core::Counter requests[kStatusClasses];  // responses sent, by class
  core::Counter accepted;                  // connections accepted
  core::Gauge active;                      // connections open now
  core::Counter bytes_in;                  // request bytes received (heads and bodies)
  core::Counter bytes_out;                 // response bytes sent
};

struct alignas(64) RouteCounters {
  core::Counter hits;  // requests this route decided (counted when answered)
};

struct alignas(64) PoolCounters {
  core::Counter requests[kStatusClasses];  // requests routed to the pool, by answer class
  core::Counter retries;                   // further attempts on another server
};

struct alignas(64) ServerCounters {
  core::Counter responses[kStatusClasses];  // responses this server produced
  core::Counter connect_failures;           // refused, unreachable or connect timeout
  core::Counter resets;                     // lost before a complete response, response timeout
  core::LatencyHistogram connect;           // TCP connect time
  core::LatencyHistogram response;          // request head sent -> response head received
};

template <typename T>
class PerWorker {
 public:
  explicit PerWorker(unsigned workers) : n_(workers), slots_(new T[workers]) {}
  T& at(unsigned worker) { return slots_[worker]; }
  const T& at(unsigned worker) const { return slots_[worker]; }
  unsigned size() const { return n_; }

  // Sum of `field` over every worker's slot (readers).
  template <typename F>
  std::uint64_t sum(F field) const {
    std::uint64_t total = 0;
    for (unsigned w = 0; w < n_; ++w) total += field(slots_[w]);
    return total;
  }

 private:
  unsigned n_;
  std::unique_ptr<T[]> slots_;
};

using ListenerStats = PerWorker<ListenerCounters>;
using RouteStats = PerWorker<RouteCounters>;
using PoolStats = PerWorker<PoolCounters>;
using ServerStats = PerWorker<ServerCounters>;

class StatsRegistry;

// The objects one snapshot's requests write, by the snapshot's own indexes.
struct SnapshotStats {
  std::shared_ptr<StatsRegistry> registry;         // keeps every object alive
  std::vector<ListenerStats*> listeners;           // config.listeners order
  std::vector<RouteStats*> routes;                 // by config::Route::index
  std::vector<PoolStats*> pools;                   // config.pools (map) order
  std::vector<std::vector<ServerStats*>> servers;  // [pool][server]
};

class StatsRegistry : public std::enable_shared_from_this<StatsRegistry> {
 public:
  explicit StatsRegistry(unsigned workers) : workers_(workers) {}
  unsigned workers() const { return workers_; }

  // Control-plane thread: the objects for everything `config` names, created on first use.
  std::shared_ptr<const SnapshotStats> bind(const config::Config& config);

  // Control-plane thread: lookups for the exporters; null when the name was never bound.
  const ListenerStats* listener(const std::string& name) const;
  const RouteStats* route(const std::string& table, std::size_t position) const;
  const PoolStats* pool(const std::string& name) const;
  const ServerStats* server(const std::string& pool, const std::string& address) const;

 private:
  template <typename T>
  static T* get(std::map<std::string, std::unique_ptr<T>>& m, const std::string& key,
                unsigned workers);

  unsigned workers_;
  std::map<std::string, std::unique_ptr<ListenerStats>> listeners_;
  std::map<std::string, std::unique_ptr<RouteStats>> routes_;  // "table\0position"
  std::map<std::string, std::unique_ptr<PoolStats>> pools_;
  std::map<std::string, std::unique_ptr<ServerStats>> servers_;  // "pool\0address"
};

// `previous`'s registry when it has `workers` slots, else a new one; bound to `config`.
std::shared_ptr<const SnapshotStats> bind_stats(const config::Config& config, unsigned workers,
                                                const SnapshotStats* previous);

}  // namespace switchyard::proxy
