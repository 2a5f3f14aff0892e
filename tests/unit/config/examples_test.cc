#include <catch2/catch.hpp>
#include <filesystem>

#include "config/config_loader.h"

TEST_CASE("every example in config/ is valid", "[config]") {
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(SWITCHYARD_SOURCE_DIR) / "config")) {
    if (entry.path().extension() != ".yaml") continue;
    auto result = switchyard::config::load_file(entry.path().string());
    INFO(entry.path().string());
    for (const auto& d : result.diagnostics) INFO(d.to_string());
    CHECK(result.ok());
    ++checked;
  }
  CHECK(checked >= 2);
}
