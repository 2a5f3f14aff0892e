#include "l4/ctl/runtime.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace switchyard::l4 {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr unsigned kCountTicks = 10;    // lc/wlc flow counts every 2 s
constexpr unsigned kRefreshTicks = 50;  // full re-sync every 10 s (neighbours, tunnel sources)

config::Pool pool_of(const config::L4Service& svc) {
  config::Pool pool;
  pool.name = "l4:" + svc.name;
  pool.mark = svc.mark;
  pool.health = svc.health;
  for (const config::L4Server& s : svc.servers) {
    config::Server server;
    server.address = s.address;
    server.weight = s.weight;
    pool.servers.push_back(std::move(server));
  }
  return pool;
}

}  // namespace

Runtime::Runtime(boost::asio::io_context& io) : io_(io), timer_(io) {}

Runtime::~Runtime() {
  timer_.cancel();
  director_.reset();
}

std::string Runtime::apply(std::shared_ptr<const config::Config> config) {
  const bool wanted = config->l4 && !config->l4->services.empty();
  if (!wanted) {
    if (director_) spdlog::info("l4: no l4 services configured any more; detaching");
    timer_.cancel();
    director_.reset();
    publish_steering();
    config_ = std::move(config);
    pools_.reset();
    states_.clear();
    return {};
  }
  // Health state per service survives a reload by name when the server list is unchanged, and
  // by address otherwise (as for pools; see proxy/snapshot.cc).
  auto pools = std::make_shared<config::Config>();
  std::vector<std::shared_ptr<upstream::PoolState>> states;
  counts_needed_ = false;
  for (const config::L4Service& svc : config->l4->services) {
    config::Pool pool = pool_of(svc);
    std::shared_ptr<upstream::PoolState> prev;
    for (const auto& st : states_) {
      if (st->name() == pool.name) prev = st;
    }
    if (prev && prev->same_servers(pool)) {
      states.push_back(prev);
    } else {
      auto fresh = std::make_shared<upstream::PoolState>(pool, 1);
      if (prev) fresh->inherit_health(*prev);
      states.push_back(std::move(fresh));
    }
    pools->pools.emplace(pool.name, std::move(pool));
    counts_needed_ = counts_needed_ || svc.scheduler == "lc" || svc.scheduler == "wlc";
  }
  config_ = std::move(config);
  pools_ = std::move(pools);
  states_ = std::move(states);
  last_ = availability();
  std::string error;
  if (!director_) {
    director_ = Director::start(*config_->l4, last_, error);
    if (!director_) return "l4: " + error;
    publish_steering();
    schedule_tick();
    return {};
  }
  const bool synced = director_->sync(*config_->l4, last_, error);
  publish_steering();
  if (!synced) return "l4: " + error;
  return {};
}

std::vector<upstream::HealthChecker::Target> Runtime::health_targets() const {
  std::vector<upstream::HealthChecker::Target> targets;
  if (!director_ || !pools_) return targets;
  std::size_t i = 0;
  for (const config::L4Service& svc : config_->l4->services) {
    const config::Pool& pool = pools_->pools.at("l4:" + svc.name);
    targets.push_back({pools_, &pool, states_[i++]});
  }
  return targets;
}

Availability Runtime::availability() const {
  Availability a;
  if (!config_ || !config_->l4) return a;
  for (std::size_t s = 0; s < config_->l4->services.size() && s < states_.size(); ++s) {
    std::vector<bool> row;
    for (std::size_t i = 0; i < states_[s]->size(); ++i) {
      // kUnchecked (no checks configured, or no verdict yet) serves, as for pools.
      row.push_back(states_[s]->health(i).state.load(std::memory_order_acquire) !=
                    upstream::Health::kDown);
    }
    a.push_back(std::move(row));
  }
  return a;
}

void Runtime::schedule_tick() {
  timer_.expires_after(kPollInterval);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !director_) return;
    tick();
    schedule_tick();
  });
}

void Runtime::tick() {
  ++ticks_;
  Availability now = availability();
  const bool changed = now != last_;
  const bool counts = counts_needed_ && ticks_ % kCountTicks == 0;
  if (changed || counts || ticks_ % kRefreshTicks == 0) {
    last_ = std::move(now);
    sync(counts);
  }
}

void Runtime::sync(bool with_counts) {
  std::string error;
  std::vector<std::vector<std::uint64_t>> counts;
  if (with_counts) counts = director_->active_flows(*config_->l4);
  if (!director_->sync(*config_->l4, last_, error, with_counts ? &counts : nullptr)) {
    spdlog::error("l4: {}", error);
  }
  publish_steering();
}

}  // namespace switchyard::l4
