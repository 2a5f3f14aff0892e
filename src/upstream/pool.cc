#include "upstream/pool.h"

namespace switchyard::upstream {

Balancer::Balancer(const config::Pool& pool) {
  servers_.resize(pool.servers.size());
  for (std::size_t i = 0; i < pool.servers.size(); ++i) {
    // LVS semantics: rr ignores weights except that 0 quiesces a server; wrr honours them.
    std::uint32_t w = pool.servers[i].weight;
    servers_[i].weight = pool.scheduler == "rr" && w > 0 ? 1 : w;
  }
}

int Balancer::pick(std::uint64_t tried, Clock::time_point now) {
  // Two passes: healthy servers first; if every untried one is held down, try them anyway (a
  // hold-down is a guess, a 503 without trying is a certainty).
  for (int pass = 0; pass < 2; ++pass) {
    std::int64_t total = 0;
    int best = -1;
    for (std::size_t i = 0; i < servers_.size() && i < 64; ++i) {
      State& s = servers_[i];
      if (s.weight == 0 || (tried >> i & 1)) continue;
      if (pass == 0 && s.down_until > now) continue;
      s.current += s.weight;
      total += s.weight;
      if (best < 0 || s.current > servers_[best].current) best = static_cast<int>(i);
    }
    if (best >= 0) {
      servers_[best].current -= total;
      return best;
    }
  }
  return -1;
}

void Balancer::mark_failed(int server, Clock::time_point now) {
  servers_[server].down_until = now + kHoldDown;
}

void Balancer::mark_ok(int server) {
  servers_[server].down_until = {};
}

}  // namespace switchyard::upstream
