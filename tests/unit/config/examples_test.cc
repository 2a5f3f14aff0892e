#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

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

TEST_CASE("config/farm.yaml shows the pool features it describes", "[config]") {
  using namespace switchyard::config;
  auto result = load_file(std::string(SWITCHYARD_SOURCE_DIR) + "/config/farm.yaml");
  for (const auto& d : result.diagnostics) INFO(d.to_string());
  REQUIRE(result.ok());
  const Pool& app = result.config->pools.at("app");
  CHECK(app.scheduler == "wlc");
  REQUIRE(app.health.has_value());
  CHECK(app.health->kind == HealthCheck::Kind::kHttp);
  CHECK(app.persistence.kind == Persistence::Kind::kSource);
  CHECK(app.retries == 2);
  CHECK(std::any_of(app.servers.begin(), app.servers.end(),
                    [](const Server& s) { return s.backup; }));
  const Route& route = result.config->routes.at("main").routes.at(0);
  REQUIRE(route.fallback_respond.has_value());
  CHECK(route.fallback_respond->status == 503);
}
