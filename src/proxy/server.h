// `switchyard run`: opens the listening sockets, starts one worker thread per core and runs the
// control plane (signals today; reload and the admin API later) on the calling thread.
#pragma once

#include <functional>
#include <memory>

#include "config/config.h"

namespace switchyard::proxy {

// Serves `config` until SIGINT/SIGTERM, then shuts down gracefully. `on_ready` (optional) runs
// on the calling thread once every worker accepts connections. Returns the process exit code.
int run_server(std::shared_ptr<const config::Config> config,
               const std::function<void()>& on_ready = {});

}  // namespace switchyard::proxy
