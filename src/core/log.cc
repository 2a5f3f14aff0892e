#include "core/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace switchyard::core {

void init_logging(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_logger_mt("switchyard");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace switchyard::core
