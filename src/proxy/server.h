// `switchyard run`: opens the listening sockets, starts one worker thread per core and runs the
// control plane (signals today; reload and the admin API later) on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/snapshot.h"

namespace switchyard::proxy {

// Serves `snapshot` until SIGINT/SIGTERM, then shuts down gracefully. SIGHUP re-reads
// `config_path` (empty: reload unavailable) and switches to it only if it is entirely valid.
// `on_ready` (optional) runs on the calling thread once every worker accepts connections, with
// the port the first listener is bound to.
// Returns the process exit code.
int run_server(std::shared_ptr<const Snapshot> snapshot, const std::string& config_path,
               const std::function<void(std::uint16_t)>& on_ready = {});

}  // namespace switchyard::proxy
