// How the admin API and /metrics name a server's state. Control-plane thread.
#pragma once

#include "config/config.h"
#include "upstream/pool_state.h"

namespace switchyard::proxy::admin {

// "maint" (taken out for maintenance), "drain" (finishing, no new requests), "down" (active
// health checks fail), else "up" (checks pass, or no checks configured/completed yet).
inline const char* server_state(const config::Server& s, upstream::Health health) {
  if (s.maintenance) return "maint";
  if (s.drain) return "drain";
  if (health == upstream::Health::kDown) return "down";
  return "up";
}

inline constexpr const char* kServerStates[] = {"up", "down", "drain", "maint"};

}  // namespace switchyard::proxy::admin
