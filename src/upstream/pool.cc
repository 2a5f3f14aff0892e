#include "upstream/pool.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "rules/hash.h"

namespace switchyard::upstream {

Balancer::Balancer(const config::Pool& pool, std::shared_ptr<PoolState> state, unsigned worker)
    : cfg_(&pool),
      state_(std::move(state)),
      worker_(worker),
      scheduler_(make_scheduler(pool.scheduler, SchedulerOptions{pool.fallback})) {
  if (!scheduler_) scheduler_ = make_scheduler("rr", {});  // the loader rejects unknown names
  servers_.resize(pool.servers.size());
  views_.resize(pool.servers.size());
  for (std::size_t i = 0; i < pool.servers.size(); ++i) {
    Server& s = servers_[i];
    s.view.id = rules::stable_hash(pool.servers[i].address.text);
    s.cookie = fmt::format("{:016x}", s.view.id);
    s.health = state_->health(i).state.load(std::memory_order_relaxed);
    s.passes = state_->health(i).passes.load(std::memory_order_relaxed);
  }
  apply_settings(pool);
}

bool Balancer::can_rebind(const config::Pool& pool, const PoolState& state) const {
  return &state == state_.get() && pool.scheduler == cfg_->scheduler &&
         pool.fallback == cfg_->fallback && pool.hash.on == cfg_->hash.on &&
         pool.hash.name == cfg_->hash.name;
}

void Balancer::rebind(const config::Pool& pool) {
  apply_settings(pool);
}

void Balancer::apply_settings(const config::Pool& pool) {
  cfg_ = &pool;
  unsigned workers = std::max(1u, state_->workers());
  bool weights_changed = false;
  has_backup_ = false;
  for (std::size_t i = 0; i < pool.servers.size(); ++i) {
    const config::Server& cs = pool.servers[i];
    Server& s = servers_[i];
    // LVS semantics: rr ignores weights except that 0 quiesces a server.
    std::uint32_t weight = pool.scheduler == "rr" && cs.weight > 0 ? 1 : cs.weight;
    weights_changed = weights_changed || weight != s.view.weight;
    s.view.weight = weight;
    // max_connections is enforced per worker, as an equal share, so that no counter shared
    // between workers is written per request; with SO_REUSEPORT spreading clients evenly the
    // total stays close to the limit, and never above it.
    s.max_active = cs.max_connections ? std::max(1u, cs.max_connections / workers) : 0;
    has_backup_ = has_backup_ || cs.backup;
  }
  persist_timeout_s_ = 0;
  if (pool.persistence.kind == config::Persistence::Kind::kSource) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(pool.persistence.timeout);
    persist_timeout_s_ = static_cast<std::uint32_t>(std::max<std::int64_t>(1, secs.count()));
  }
  if (weights_changed || !rebuilt_) {
    for (std::size_t i = 0; i < servers_.size(); ++i) views_[i] = servers_[i].view;
    scheduler_->rebuild(views_);
    rebuilt_ = true;
  }
}

bool Balancer::usable(const Server& s, Clock::time_point now) const {
  std::size_t i = static_cast<std::size_t>(&s - servers_.data());
  if (cfg_->servers[i].drain || cfg_->servers[i].maintenance || s.view.weight == 0 ||
      s.health == Health::kDown) {
    return false;
  }
  // Ejected by passive health, unless an active check has passed since.
  return !(now < s.ejected_until && s.passes == s.passes_at_ejection);
}

bool Balancer::up(int server, Clock::time_point now) const {
  return usable(servers_[idx(server)], now);
}

bool Balancer::takes(const Server& s, std::size_t i, std::uint64_t tried,
                     Clock::time_point now) const {
  return !(i < 64 && (tried >> i & 1)) && usable(s, now) && !full(s);
}

int Balancer::run_scheduler(const PickRequest& r, Clock::time_point now, bool backups,
                            bool& blocked) {
  bool any = false;
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    const Server& s = servers_[i];
    bool candidate =
        cfg_->servers[i].backup == backups && usable(s, now) && !(i < 64 && (r.tried >> i & 1));
    views_[i].active = s.view.active;
    views_[i].others = s.view.others;
    views_[i].available = candidate && !full(s);
    any = any || views_[i].available;
    blocked = blocked || (candidate && full(s));
  }
  if (!any) return -1;
  PickInput in;
  in.key = r.key;
  in.has_key = r.has_key;
  in.excluded = r.tried;
  in.now = now;
  return scheduler_->pick(views_, in);
}

Balancer::Pick Balancer::pick(const PickRequest& r, Clock::time_point now) {
  Pick p;
  // Persistence first: a client goes back to its server while that server takes requests.
  if (r.cookie_server >= 0 && idx(r.cookie_server) < servers_.size() &&
      takes(servers_[idx(r.cookie_server)], idx(r.cookie_server), r.tried, now)) {
    p.server = r.cookie_server;
    p.sticky = true;
    return p;
  }
  std::uint32_t now_s = 0;
  if (r.has_source_key && persist_timeout_s_) {
    now_s = steady_seconds(now);
    int s = state_->persistence().lookup(r.source_key, now_s, persist_timeout_s_);
    if (s >= 0 && idx(s) < servers_.size() && takes(servers_[idx(s)], idx(s), r.tried, now)) {
      p.server = s;
      p.sticky = true;
      return p;
    }
  }

  bool blocked = false;
  p.server = run_scheduler(r, now, /*backups=*/false, blocked);
  if (p.server < 0 && !blocked && has_backup_) {
    // Backups serve only while no primary is usable (tried or not).
    bool primary_up = false;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      primary_up = primary_up || (!cfg_->servers[i].backup && usable(servers_[i], now));
    }
    if (!primary_up) p.server = run_scheduler(r, now, /*backups=*/true, blocked);
  }
  if (p.server < 0) {
    p.full = blocked;
    return p;
  }
  if (r.has_source_key && persist_timeout_s_) {
    int stored = state_->persistence().remember(r.source_key, p.server, now_s, persist_timeout_s_);
    // Another worker placed this client first: follow it if that server can take the request.
    if (stored != p.server && idx(stored) < servers_.size() &&
        takes(servers_[idx(stored)], idx(stored), r.tried, now)) {
      p.server = stored;
    }
  }
  return p;
}

void Balancer::started(int server) {
  ++servers_[idx(server)].view.active;
}

void Balancer::finished(int server) {
  std::uint32_t& a = servers_[idx(server)].view.active;
  if (a > 0) --a;
}

void Balancer::report(int server, Outcome outcome, Clock::time_point now) {
  Server& s = servers_[idx(server)];
  const config::OutlierDetection& od = cfg_->outlier;
  if (outcome == Outcome::kSuccess || (outcome == Outcome::k5xx && !od.count_5xx)) {
    s.failures = 0;
    // A server healthy for a while after its last ejection starts again from the base time.
    if (s.ejections && now >= s.ejected_until + od.base_ejection) s.ejections = 0;
    return;
  }
  if (od.consecutive_failures == 0) return;
  if (++s.failures < od.consecutive_failures) return;
  s.failures = 0;
  auto duration = od.base_ejection * (1ll << std::min<std::uint32_t>(s.ejections, 16));
  if (duration > od.max_ejection) duration = od.max_ejection;
  ++s.ejections;
  s.ejected_until = now + duration;
  s.passes_at_ejection = s.passes;
  const char* what = outcome == Outcome::kConnectFailure ? "connect failures"
                     : outcome == Outcome::kReset        ? "failures (last: reset)"
                                                         : "failures (last: 5xx)";
  spdlog::warn("server {}/{} ejected for {} ms: {} consecutive {} (worker {})", cfg_->name,
               cfg_->servers[idx(server)].address.text, duration.count(), od.consecutive_failures,
               what, worker_);
}

void Balancer::sync(Clock::time_point) {
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    state_->publish_load(worker_, i, s.view.active);
    s.view.others = state_->others_load(worker_, i);
    s.health = state_->health(i).state.load(std::memory_order_acquire);
    s.passes = state_->health(i).passes.load(std::memory_order_relaxed);
  }
}

int Balancer::server_for_cookie(std::string_view value) const {
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].cookie == value) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace switchyard::upstream
