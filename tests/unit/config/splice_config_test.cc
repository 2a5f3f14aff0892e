// The `splice:` block of the configuration.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/config_loader.h"

namespace {

using namespace switchyard::config;

constexpr std::string_view kRest =
    R"(listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: [127.0.0.1:9001]}}
)";

std::vector<std::string> errors_of(const std::string& head) {
  LoadResult r = load_string(head + std::string(kRest), "test.yaml");
  std::vector<std::string> out;
  for (const Diagnostic& d : r.diagnostics) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("splice: defaults", "[config][splice]") {
  LoadResult r = load_string(std::string(kRest), "test.yaml");
  REQUIRE(r.config);
  CHECK(r.config->splice.bodies);
  CHECK(r.config->splice.min_body == 64 * 1024);
  CHECK(r.config->splice.pipe_size == 1024 * 1024);
  CHECK(r.config->splice.notsent_lowat == 32 * 1024);
  CHECK(r.config->splice.tunnels == Splice::TunnelEngine::kSplice);
}

TEST_CASE("splice: every key", "[config][splice]") {
  LoadResult r = load_string(
      "splice: { bodies: false, min_body: 1MiB, pipe_size: 256KiB, tunnels: copy,\n"
      "          notsent_lowat: 0 }\n" +
          std::string(kRest),
      "test.yaml");
  REQUIRE(r.diagnostics.empty());
  CHECK_FALSE(r.config->splice.bodies);
  CHECK(r.config->splice.min_body == 1024 * 1024);
  CHECK(r.config->splice.pipe_size == 256 * 1024);
  CHECK(r.config->splice.notsent_lowat == 0);
  CHECK(r.config->splice.tunnels == Splice::TunnelEngine::kCopy);
}

TEST_CASE("splice: errors name file, line and column", "[config][splice]") {
  CHECK(errors_of("splice:\n  bodies: maybe\n") ==
        std::vector<std::string>{"test.yaml:2:11: expected true or false, got 'maybe'"});
  CHECK(errors_of("splice: { min_body: 1KiB }\n") ==
        std::vector<std::string>{
            "test.yaml:1:21: splice.min_body must be between 4KiB and 1024GiB, got 1KiB"});
  CHECK(errors_of("splice:\n  pipe_size: 1GiB\n") ==
        std::vector<std::string>{
            "test.yaml:2:14: splice.pipe_size must be between 4KiB and 64MiB, got 1GiB"});
  CHECK(errors_of("splice:\n  notsent_lowat: 128MiB\n") ==
        std::vector<std::string>{
            "test.yaml:2:18: splice.notsent_lowat must be between 0 and 64MiB, got 128MiB"});
  CHECK(errors_of("splice:\n  tunnels: sockmap\n") ==
        std::vector<std::string>{
            "test.yaml:2:12: unknown splice.tunnels engine 'sockmap'; expected splice, copy"});
  CHECK(errors_of("splice: { tunnels: [splice] }\n").size() == 1);
  std::vector<std::string> unknown = errors_of("splice: { bodys: true }\n");
  REQUIRE(unknown.size() == 1);
  CHECK(unknown[0].rfind("test.yaml:1:11: unknown key 'bodys' in splice", 0) == 0);
  CHECK(errors_of("splice: [1]\n").size() == 1);
}
