// The admin API's pure parts: token files and authentication, the failed-attempt limit, the
// Prometheus text writer, latency histograms and runtime overrides across reloads.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "core/counter.h"
#include "proxy/admin/auth.h"
#include "proxy/admin/metrics.h"
#include "proxy/admin/overrides.h"

using namespace switchyard;
using namespace switchyard::proxy::admin;

namespace {

std::string parse_error(std::string_view text) {
  std::vector<Token> tokens;
  return parse_tokens(text, "t.tokens", false, tokens);
}

std::shared_ptr<const config::Config> load(const std::string& servers) {
  auto r = config::load_string(
      "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
      "routes: {main: [{pool: app}]}\n"
      "pools:\n  app:\n    servers: " +
      servers + "\n");
  REQUIRE(r.ok());
  return r.config;
}

const config::Server* server(const config::Config& c, const std::string& address) {
  for (const config::Server& s : c.pools.at("app").servers) {
    if (s.address.text == address) return &s;
  }
  return nullptr;
}

config::Server new_server(const std::string& address, std::uint32_t weight = 1) {
  config::Server s;
  REQUIRE(config::parse_socket_address(address, s.address).empty());
  s.weight = weight;
  return s;
}

}  // namespace

TEST_CASE("token files: names, comments and blank lines", "[admin]") {
  std::vector<Token> tokens;
  CHECK(parse_tokens("# operators\nops:0123456789abcdef\n\n  ci-bot : abcdefghijklmnopq  \r\n",
                     "t.tokens", true, tokens) == "");
  REQUIRE(tokens.size() == 2);
  CHECK(tokens[0].name == "ops");
  CHECK(tokens[1].name == "ci-bot");
  CHECK(tokens[1].read_only);
  CHECK(tokens[0].digest == sha256("0123456789abcdef"));
}

TEST_CASE("token files: every problem has a line", "[admin]") {
  CHECK(parse_error("ops 0123456789abcdef\n") == "t.tokens:1: expected name:token");
  CHECK(parse_error("\nop s:0123456789abcdef\n") ==
        "t.tokens:2: token name must be 1 to 64 letters, digits, '.', '_' or '-'");
  CHECK(parse_error(":0123456789abcdef\n") ==
        "t.tokens:1: token name must be 1 to 64 letters, digits, '.', '_' or '-'");
  CHECK(parse_error("ops:short\n") ==
        "t.tokens:1: token of 'ops' must be 16 to 4096 characters long");
  CHECK(parse_error("ops:0123456789 abcdef\n") ==
        "t.tokens:1: token of 'ops' contains a space or control character");
  CHECK(parse_error("ops:0123456789abcdef\nops:abcdefghijklmnopq\n") ==
        "t.tokens:2: token name 'ops' is used twice");
  CHECK(parse_error("a:0123456789abcdef\nb:0123456789abcdef\n") ==
        "t.tokens:2: token of 'b' is the same as the token of 'a'");
  CHECK(parse_error("# nothing\n\n") == "t.tokens: no tokens (expected name:token lines)");
}

TEST_CASE("a token is recognised by its digest", "[admin]") {
  std::vector<Token> tokens;
  REQUIRE(parse_tokens("ops:0123456789abcdef\n", "a", false, tokens).empty());
  REQUIRE(parse_tokens("viewer:fedcba9876543210\n", "b", true, tokens).empty());
  TokenStore store;
  store.set(tokens);
  const Token* t = store.verify("0123456789abcdef");
  REQUIRE(t);
  CHECK(t->name == "ops");
  CHECK_FALSE(t->read_only);
  t = store.verify("fedcba9876543210");
  REQUIRE(t);
  CHECK(t->read_only);
  CHECK(store.verify("0123456789abcdeF") == nullptr);
  CHECK(store.verify("") == nullptr);
  CHECK(store.verify("0123456789abcdef0") == nullptr);
}

TEST_CASE("failed attempts are limited per client and recover over time", "[admin]") {
  using namespace std::chrono_literals;
  FailureLimiter limiter(3, 10s);
  auto t0 = FailureLimiter::Clock::now();
  unsigned retry = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(limiter.allowed("10.0.0.1", t0, retry));
    limiter.failed("10.0.0.1", t0);
  }
  CHECK_FALSE(limiter.allowed("10.0.0.1", t0, retry));
  CHECK(retry == 11);
  CHECK(limiter.allowed("10.0.0.2", t0, retry));  // others are not affected
  CHECK_FALSE(limiter.allowed("10.0.0.1", t0 + 9s, retry));
  CHECK(limiter.allowed("10.0.0.1", t0 + 10s, retry));  // one more try after one refill
  limiter.failed("10.0.0.1", t0 + 10s);
  CHECK_FALSE(limiter.allowed("10.0.0.1", t0 + 11s, retry));
}

TEST_CASE("metrics: families, labels and escaping", "[admin]") {
  MetricsWriter m;
  m.family("x_total", "counter", "Things.");
  m.sample("x_total", {{"pool", "a\"b\\c\nd"}, {"code", "2xx"}}, std::uint64_t{7});
  m.sample("x_total", {}, std::int64_t{-1});
  m.sample("x_seconds", {}, 0.25);
  CHECK(m.text() ==
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        "x_total{pool=\"a\\\"b\\\\c\\nd\",code=\"2xx\"} 7\n"
        "x_total -1\n"
        "x_seconds 0.25\n");
}

TEST_CASE("metrics: a histogram is cumulative with +Inf, _sum in seconds and _count", "[admin]") {
  core::LatencyHistogram h;
  h.observe_us(50);    // <= 100us
  h.observe_us(2000);  // <= 2.5ms
  h.observe_us(2000);
  h.observe_us(60000000);  // +Inf
  core::HistogramTotals t;
  t.add(h);
  MetricsWriter m;
  m.histogram("lat_seconds", {{"server", "s"}}, t);
  const std::string& text = m.text();
  CHECK(text.find("lat_seconds_bucket{server=\"s\",le=\"0.0001\"} 1\n") != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{server=\"s\",le=\"0.001\"} 1\n") != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{server=\"s\",le=\"0.0025\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{server=\"s\",le=\"10\"} 3\n") != std::string::npos);
  CHECK(text.find("lat_seconds_bucket{server=\"s\",le=\"+Inf\"} 4\n") != std::string::npos);
  CHECK(text.find("lat_seconds_sum{server=\"s\"} 60.00405\n") != std::string::npos);
  CHECK(text.find("lat_seconds_count{server=\"s\"} 4\n") != std::string::npos);
}

TEST_CASE("latency quantiles interpolate inside the bucket", "[admin]") {
  core::HistogramTotals t;
  CHECK(t.quantile_us(0.5) == 0);
  core::LatencyHistogram h;
  for (int i = 0; i < 100; ++i) h.observe_us(1500);  // bucket (1000, 2500]
  t.add(h);
  CHECK(t.quantile_us(0.5) == Approx(1750));
  CHECK(t.quantile_us(1.0) == Approx(2500));
}

TEST_CASE("overrides: a patch changes one server and nothing else", "[admin]") {
  auto file = load("[127.0.0.1:9001, {address: 127.0.0.1:9002, weight: 3}]");
  Overrides o;
  CHECK(o.patch(*file, "app", "127.0.0.1:9002", {std::nullopt, true, std::nullopt}).empty());
  auto served = o.apply(*file);
  CHECK(server(*served, "127.0.0.1:9002")->drain);
  CHECK(server(*served, "127.0.0.1:9002")->weight == 3);
  CHECK_FALSE(server(*served, "127.0.0.1:9001")->drain);
  // Back to the file's value: no override is left.
  CHECK(o.patch(*file, "app", "127.0.0.1:9002", {std::nullopt, false, std::nullopt}).empty());
  CHECK(o.empty());
  CHECK(o.patch(*file, "app", "127.0.0.1:9009", {5u, std::nullopt, std::nullopt}) ==
        "no server 127.0.0.1:9009 in pool app");
  CHECK(o.patch(*file, "nope", "127.0.0.1:9001", {5u, std::nullopt, std::nullopt}) ==
        "no pool nope");
  CHECK(o.patch(*file, "app", "127.0.0.1:9001", {300u, std::nullopt, std::nullopt}) ==
        "weight 300 is out of range 0..256");
  CHECK(o.empty());
}

TEST_CASE("overrides: add and remove servers, within the pool's rules", "[admin]") {
  auto file = load("[127.0.0.1:9001, 127.0.0.1:9002]");
  Overrides o;
  CHECK(o.add(*file, "app", new_server("127.0.0.1:9003", 2)).empty());
  CHECK(o.add(*file, "app", new_server("127.0.0.1:9003")) ==
        "pool app already has server 127.0.0.1:9003");
  CHECK(o.remove(*file, "app", "127.0.0.1:9001").empty());
  auto served = o.apply(*file);
  REQUIRE(served->pools.at("app").servers.size() == 2);
  CHECK(served->pools.at("app").servers[0].address.text == "127.0.0.1:9002");
  CHECK(served->pools.at("app").servers[1].address.text == "127.0.0.1:9003");
  CHECK(served->pools.at("app").servers[1].weight == 2);
  // A patch of an added server changes its definition.
  CHECK(o.patch(*file, "app", "127.0.0.1:9003", {std::nullopt, std::nullopt, true}).empty());
  CHECK(server(*o.apply(*file), "127.0.0.1:9003")->maintenance);
  CHECK(o.remove(*file, "app", "127.0.0.1:9002").empty());
  CHECK(o.remove(*file, "app", "127.0.0.1:9003") == "pool app would have no server left");
  CHECK(o.remove(*file, "app", "127.0.0.1:9001") == "no server 127.0.0.1:9001 in pool app");
  // Re-adding a removed file server brings it back with the settings given.
  CHECK(o.add(*file, "app", new_server("127.0.0.1:9001", 4)).empty());
  CHECK(server(*o.apply(*file), "127.0.0.1:9001")->weight == 4);
  CHECK(o.reset("app", "127.0.0.1:9001"));
  CHECK(server(*o.apply(*file), "127.0.0.1:9001")->weight == 1);
}

TEST_CASE("overrides across a reload: kept, overridden by the file, adopted, dropped", "[admin]") {
  auto old_file = load("[127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003]");
  Overrides o;
  REQUIRE(o.patch(*old_file, "app", "127.0.0.1:9001", {5u, true, std::nullopt}).empty());
  REQUIRE(o.patch(*old_file, "app", "127.0.0.1:9002", {std::nullopt, true, std::nullopt}).empty());
  REQUIRE(o.patch(*old_file, "app", "127.0.0.1:9003", {std::nullopt, std::nullopt, true}).empty());
  REQUIRE(o.add(*old_file, "app", new_server("127.0.0.1:9004")).empty());
  // The new file changes 9001's weight, agrees on 9002's drain, drops 9003, defines 9004.
  auto new_file = load(
      "[{address: 127.0.0.1:9001, weight: 2}, {address: 127.0.0.1:9002, drain: true}, "
      "127.0.0.1:9004]");
  std::vector<OverrideNote> notes = o.reconcile(*old_file, *new_file);
  auto has = [&](const std::string& srv, const std::string& setting, const std::string& outcome) {
    for (const OverrideNote& n : notes) {
      if (n.server == srv && n.setting == setting && n.outcome == outcome) return true;
    }
    return false;
  };
  CHECK(has("127.0.0.1:9001", "weight", "overridden"));
  CHECK(has("127.0.0.1:9002", "drain", "adopted"));
  CHECK(has("127.0.0.1:9003", "server", "dropped"));
  CHECK(has("127.0.0.1:9004", "added", "adopted"));
  CHECK(notes.size() == 4);
  auto served = o.apply(*new_file);
  CHECK(server(*served, "127.0.0.1:9001")->weight == 2);  // the file won
  CHECK(server(*served, "127.0.0.1:9001")->drain);        // unchanged in the file: kept
  CHECK(server(*served, "127.0.0.1:9002")->drain);
  CHECK(served->pools.at("app").servers.size() == 3);
}

TEST_CASE("overrides of a pool the new file lacks are dropped", "[admin]") {
  auto old_file = load("[127.0.0.1:9001, 127.0.0.1:9002]");
  Overrides o;
  REQUIRE(o.remove(*old_file, "app", "127.0.0.1:9002").empty());
  auto r = config::load_string(
      "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
      "routes: {main: [{pool: other}]}\npools: {other: {servers: [127.0.0.1:9001]}}\n");
  REQUIRE(r.ok());
  auto notes = o.reconcile(*old_file, *r.config);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].outcome == "dropped");
  CHECK(o.empty());
}
