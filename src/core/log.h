// Process-wide diagnostic logging (stderr, via spdlog). Not for the access log, which has its own
// non-blocking path (proxy/access_log.h). Safe from any thread; never call it per request.
#pragma once

#include <spdlog/spdlog.h>

namespace switchyard::core {

// Sets up the default logger: stderr, "[time] [level] message". Call once, before threads start.
void init_logging(spdlog::level::level_enum level = spdlog::level::info);

}  // namespace switchyard::core
