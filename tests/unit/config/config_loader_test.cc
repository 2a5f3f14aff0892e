#include "config/config_loader.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "upstream/scheduler.h"

namespace {

using namespace switchyard::config;
using namespace std::chrono_literals;
using Errors = std::vector<std::string>;

// Raw-string YAML literals start with a newline so the text can begin flush-left on its own line;
// dropping it makes line N of the literal line N in the messages.
std::string_view strip_first_newline(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return yaml;
}

LoadResult load(std::string_view yaml) {
  return load_string(strip_first_newline(yaml), "test.yaml");
}

Errors errors_of(std::string_view yaml) {
  const LoadResult result = load(yaml);
  Errors out;
  for (const Diagnostic& d : result.diagnostics) out.push_back(d.to_string());
  CHECK((result.config == nullptr) == !result.diagnostics.empty());
  return out;
}

// A valid rest-of-file for tests about one top-level section: lines 1..N of the test's own text
// come first, so its line numbers are unaffected.
constexpr std::string_view kMinimal =
    R"(listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: [127.0.0.1:9001]}}
)";

std::string with_minimal(std::string_view head) {
  return std::string(strip_first_newline(head)) + std::string(kMinimal);
}

std::shared_ptr<const Config> load_ok(std::string_view yaml) {
  const LoadResult result = load(yaml);
  Errors errors;
  for (const Diagnostic& d : result.diagnostics) errors.push_back(d.to_string());
  REQUIRE(errors == Errors{});
  REQUIRE(result.config != nullptr);
  return result.config;
}

int port_of(const SocketAddress& a) {
  if (a.family() == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

std::string ip_of(const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf,
              sizeof buf);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof buf);
  }
  return buf;
}

// The schedulers this build registers, as the loader lists them.
std::string scheduler_names() {
  std::string names;
  for (const switchyard::upstream::SchedulerInfo& info : switchyard::upstream::schedulers()) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

// The message for `hash` or `fallback` in a pool whose scheduler does not hash.
std::string only_with_hashing(const std::string& key, const std::string& scheduler) {
  std::string hashing;
  for (const switchyard::upstream::SchedulerInfo& info : switchyard::upstream::schedulers()) {
    if (info.default_key == HashKey::On::kDefault) continue;
    if (!hashing.empty()) hashing += ", ";
    hashing += info.name;
  }
  if (hashing.empty()) {
    return key + " is only allowed with a hashing scheduler, and this build has none";
  }
  return key + " is only allowed with a hashing scheduler (" + hashing + "); '" + scheduler +
         "' does not hash";
}

// The example from the task brief, verbatim.
constexpr std::string_view kBriefExample = R"(
workers: 2                      # integer >= 0; 0 = one per CPU
access_log: { enabled: true, format: json, path: "-" }   # format json|common; path "-" = stdout
limits: { max_header_bytes: 16KiB, max_header_count: 100, max_body_bytes: 1GiB, max_connections: 10000 }
timeouts: { client_header: 10s, client_idle: 60s, client_body: 60s, upstream_connect: 3s, upstream_response: 60s, upstream_idle: 30s, shutdown: 30s }
forwarding: { x_forwarded_for: true, x_forwarded_proto: true, via: true }
listeners:
  - name: web
    bind: 127.0.0.1:8080        # IPv4 "a.b.c.d:port" or IPv6 "[::1]:port"; port 0..65535 (0 allowed = kernel picks)
    routes: main                # must name a table under routes:
routes:
  main:                         # ordered list; first match wins
    - pool: app                 # must name a pool under pools:
    - respond: { status: 404, body: "no route\n", headers: { content-type: text/plain } }
pools:
  app:
    scheduler: rr               # only "rr" and "wrr" accepted for now
    max_idle_per_server: 64
    servers:
      - { address: 127.0.0.1:9001, weight: 1 }
      - 127.0.0.1:9002          # shorthand: a plain string is an address with weight 1
admin: { bind: 127.0.0.1:9090, token_file: admin.token }
)";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Happy paths

TEST_CASE("the full example loads with every value as written", "[config]") {
  // The brief's example, except that the 404 route lives in its own table: after `pool: app`
  // (which matches every request) it would be unreachable; see the next test.
  auto config = load_ok(R"(
workers: 2
access_log: { enabled: true, format: json, path: "-" }
limits: { max_header_bytes: 16KiB, max_header_count: 100, max_body_bytes: 1GiB, max_connections: 10000 }
timeouts: { client_header: 10s, client_idle: 60s, client_body: 60s, upstream_connect: 3s, upstream_response: 60s, upstream_idle: 30s, shutdown: 30s }
forwarding: { x_forwarded_for: true, x_forwarded_proto: true, via: true }
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes: main
  - name: sorry
    bind: "[::1]:0"
    routes: fallback
routes:
  main:
    - pool: app
  fallback:
    - respond: { status: 404, body: "no route\n", headers: { content-type: text/plain } }
pools:
  app:
    scheduler: rr
    max_idle_per_server: 64
    servers:
      - { address: 127.0.0.1:9001, weight: 1 }
      - 127.0.0.1:9002
admin: { bind: 127.0.0.1:9090, token_file: admin.token }
)");
  const Config& c = *config;
  CHECK(c.source_path == "test.yaml");
  CHECK(c.workers == 2);
  CHECK(c.access_log.enabled);
  CHECK(c.access_log.format == AccessLog::Format::kJson);
  CHECK(c.access_log.path == "-");
  CHECK(c.limits.max_header_bytes == 16 * 1024);
  CHECK(c.limits.max_header_count == 100);
  CHECK(c.limits.max_body_bytes == 1ull << 30);
  CHECK(c.limits.max_connections == 10000);
  CHECK(c.timeouts.client_header == 10s);
  CHECK(c.timeouts.client_idle == 60s);
  CHECK(c.timeouts.client_body == 60s);
  CHECK(c.timeouts.upstream_connect == 3s);
  CHECK(c.timeouts.upstream_response == 60s);
  CHECK(c.timeouts.upstream_idle == 30s);
  CHECK(c.timeouts.shutdown == 30s);
  CHECK(c.forwarding.x_forwarded_for);
  CHECK(c.forwarding.x_forwarded_proto);
  CHECK(c.forwarding.via);

  REQUIRE(c.listeners.size() == 2);
  CHECK(c.listeners[0].name == "web");
  CHECK(c.listeners[0].bind.text == "127.0.0.1:8080");
  CHECK(c.listeners[0].bind.family() == AF_INET);
  CHECK(ip_of(c.listeners[0].bind) == "127.0.0.1");
  CHECK(port_of(c.listeners[0].bind) == 8080);
  CHECK(c.listeners[0].routes == "main");
  CHECK(c.listeners[1].name == "sorry");
  CHECK(c.listeners[1].bind.text == "[::1]:0");
  CHECK(c.listeners[1].bind.family() == AF_INET6);
  CHECK(port_of(c.listeners[1].bind) == 0);
  CHECK(c.listeners[1].routes == "fallback");

  REQUIRE(c.routes.size() == 2);
  const RouteTable& main = c.routes.at("main");
  CHECK(main.name == "main");
  REQUIRE(main.routes.size() == 1);
  CHECK(main.routes[0].pool == "app");
  CHECK_FALSE(main.routes[0].respond.has_value());
  CHECK(main.routes[0].mark.line == 15);
  CHECK(main.routes[0].mark.column == 7);
  const RouteTable& fallback = c.routes.at("fallback");
  REQUIRE(fallback.routes.size() == 1);
  const Route& sorry = fallback.routes[0];
  CHECK(sorry.mark.line == 17);
  CHECK(sorry.mark.column == 7);
  CHECK_FALSE(sorry.pool.has_value());
  REQUIRE(sorry.respond.has_value());
  CHECK(sorry.respond->status == 404);
  CHECK(sorry.respond->body == "no route\n");
  REQUIRE(sorry.respond->headers.size() == 1);
  CHECK(sorry.respond->headers[0].name == "content-type");
  CHECK(sorry.respond->headers[0].value == "text/plain");

  REQUIRE(c.pools.size() == 1);
  const Pool& app = c.pools.at("app");
  CHECK(app.name == "app");
  CHECK(app.scheduler == "rr");
  CHECK(app.max_idle_per_server == 64);
  REQUIRE(app.servers.size() == 2);
  CHECK(app.servers[0].address.text == "127.0.0.1:9001");
  CHECK(port_of(app.servers[0].address) == 9001);
  CHECK(app.servers[0].weight == 1);
  CHECK(app.servers[1].address.text == "127.0.0.1:9002");
  CHECK(port_of(app.servers[1].address) == 9002);
  CHECK(app.servers[1].weight == 1);

  REQUIRE(c.admin.has_value());
  CHECK(c.admin->bind.text == "127.0.0.1:9090");
  CHECK(port_of(c.admin->bind) == 9090);
  CHECK(c.admin->token_file == "admin.token");
}

TEST_CASE("the brief's example is rejected because its 404 route is unreachable", "[config]") {
  CHECK(errors_of(kBriefExample) ==
        Errors{"test.yaml:13:7: unreachable route: the route at line 12 matches every request"});
}

TEST_CASE("values other than the defaults are read into every field", "[config]") {
  auto config = load_ok(R"(
workers: 7
access_log: { enabled: false, format: common, path: /var/log/switchyard/access.log }
limits: { max_header_bytes: 8K, max_header_count: 50, max_body_bytes: 0, max_connections: 20 }
timeouts:
  client_header: 1500ms
  client_idle: 2m
  client_body: 1h
  upstream_connect: 45s
  upstream_response: 90s
  upstream_idle: 5s
  shutdown: 1m
forwarding: { x_forwarded_for: false, x_forwarded_proto: false, via: false }
listeners: [{name: web, bind: "0.0.0.0:80", routes: main}]
routes:
  main:
    - respond:
        status: 503
        headers: { Retry-After: "120", X-Reason: maintenance }
        body: down for maintenance
pools:
  app:
    scheduler: wrr
    max_idle_per_server: 0
    servers: [{address: "[2001:db8::1]:80", weight: 0}, {address: 10.0.0.2:80, weight: 256}]
)");
  const Config& c = *config;
  CHECK(c.workers == 7);
  CHECK_FALSE(c.access_log.enabled);
  CHECK(c.access_log.format == AccessLog::Format::kCommon);
  CHECK(c.access_log.path == "/var/log/switchyard/access.log");
  CHECK(c.limits.max_header_bytes == 8192);
  CHECK(c.limits.max_header_count == 50);
  CHECK(c.limits.max_body_bytes == 0);
  CHECK(c.limits.max_connections == 20);
  CHECK(c.timeouts.client_header == 1500ms);
  CHECK(c.timeouts.client_idle == 2min);
  CHECK(c.timeouts.client_body == 1h);
  CHECK(c.timeouts.upstream_connect == 45s);
  CHECK(c.timeouts.upstream_response == 90s);
  CHECK(c.timeouts.upstream_idle == 5s);
  CHECK(c.timeouts.shutdown == 1min);
  CHECK_FALSE(c.forwarding.x_forwarded_for);
  CHECK_FALSE(c.forwarding.x_forwarded_proto);
  CHECK_FALSE(c.forwarding.via);
  CHECK(ip_of(c.listeners.at(0).bind) == "0.0.0.0");
  const Respond& r = c.routes.at("main").routes.at(0).respond.value();
  CHECK(r.status == 503);
  REQUIRE(r.headers.size() == 2);
  CHECK(r.headers[0].name == "Retry-After");  // case and order as written
  CHECK(r.headers[0].value == "120");
  CHECK(r.headers[1].name == "X-Reason");
  CHECK(r.headers[1].value == "maintenance");
  CHECK(r.body == "down for maintenance");
  const Pool& app = c.pools.at("app");  // unused pools are fine
  CHECK(app.scheduler == "wrr");
  CHECK(app.max_idle_per_server == 0);
  REQUIRE(app.servers.size() == 2);
  CHECK(app.servers[0].address.family() == AF_INET6);
  CHECK(ip_of(app.servers[0].address) == "2001:db8::1");
  CHECK(app.servers[0].weight == 0);
  CHECK(app.servers[1].weight == 256);
}

TEST_CASE("absent sections keep their defaults", "[config]") {
  auto config = load_ok(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [respond: {}]}
)");
  const Config& c = *config;
  const Config defaults;
  CHECK(c.workers == 0);
  CHECK(c.access_log.enabled == defaults.access_log.enabled);
  CHECK(c.access_log.format == defaults.access_log.format);
  CHECK(c.access_log.path == defaults.access_log.path);
  CHECK(c.limits.max_header_bytes == defaults.limits.max_header_bytes);
  CHECK(c.limits.max_header_count == defaults.limits.max_header_count);
  CHECK(c.limits.max_body_bytes == defaults.limits.max_body_bytes);
  CHECK(c.limits.max_connections == defaults.limits.max_connections);
  CHECK(c.timeouts.client_header == defaults.timeouts.client_header);
  CHECK(c.timeouts.client_idle == defaults.timeouts.client_idle);
  CHECK(c.timeouts.client_body == defaults.timeouts.client_body);
  CHECK(c.timeouts.upstream_connect == defaults.timeouts.upstream_connect);
  CHECK(c.timeouts.upstream_response == defaults.timeouts.upstream_response);
  CHECK(c.timeouts.upstream_idle == defaults.timeouts.upstream_idle);
  CHECK(c.timeouts.shutdown == defaults.timeouts.shutdown);
  CHECK(c.forwarding.x_forwarded_for);
  CHECK(c.forwarding.x_forwarded_proto);
  CHECK(c.forwarding.via);
  CHECK(c.pools.empty());
  CHECK_FALSE(c.admin.has_value());
  const Respond& r = c.routes.at("main").routes.at(0).respond.value();
  CHECK(r.status == 200);
  CHECK(r.headers.empty());
  CHECK(r.body.empty());
}

TEST_CASE("partial sections keep defaults for keys not given", "[config]") {
  auto config = load_ok(with_minimal(R"(
timeouts: { client_header: 5s }
limits: { max_connections: 5 }
access_log: { path: /tmp/a.log }
)"));
  CHECK(config->timeouts.client_header == 5s);
  CHECK(config->timeouts.client_idle == 60s);
  CHECK(config->limits.max_connections == 5);
  CHECK(config->limits.max_header_count == 100);
  CHECK(config->access_log.path == "/tmp/a.log");
  CHECK(config->access_log.enabled);
  CHECK(config->access_log.format == AccessLog::Format::kJson);
  REQUIRE(config->pools.at("app").servers.size() == 1);
  CHECK(config->pools.at("app").scheduler == "rr");
  CHECK(config->pools.at("app").max_idle_per_server == 64);
}

// ---------------------------------------------------------------------------------------------
// Syntax and document structure

TEST_CASE("a YAML syntax error is reported at its position", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - name: web
   bind: 127.0.0.1:8080
)") == Errors{"test.yaml:3:4: invalid YAML: end of sequence not found"});
}

TEST_CASE("an unquoted IPv6 bind is a YAML syntax error", "[config]") {
  // `[` starts a YAML list, which is why docs/configuration.md says to quote IPv6 addresses.
  CHECK(errors_of(R"(
admin: {bind: [::1]:9090}
)") == Errors{"test.yaml:1:20: invalid YAML: end of map flow not found"});
}

TEST_CASE("a second YAML document is an error", "[config]") {
  CHECK(errors_of(R"(
workers: 1
---
workers: 2
)") == Errors{"test.yaml:3:1: expected a single YAML document, found a second one here"});
}

TEST_CASE("a stray comma is an error, not a hang", "[config]") {
  // yaml-cpp 0.7's LoadAll loops forever on these (found by tests/fuzz/config_fuzz.cc).
  CHECK(errors_of(",") ==
        Errors{"test.yaml:1:1: invalid YAML: unexpected character (a stray ','?)"});
  CHECK(errors_of("[a], b") ==
        Errors{"test.yaml:1:4: invalid YAML: unexpected character (a stray ','?)"});
  CHECK(errors_of("- a\n,\n") ==
        Errors{"test.yaml:2:1: invalid YAML: unexpected character (a stray ','?)"});
}

TEST_CASE("header values with control characters are refused", "[config]") {
  // Found by tests/fuzz/config_fuzz.cc: a 0x10 in a respond header made responses clients refuse.
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{respond: {status: 200, headers: {x-a: "a\x10b"}}}]}
pools: {}
)") == Errors{"test.yaml:2:56: header 'x-a' value must not contain control characters"});
}

TEST_CASE("an empty file has no listener", "[config]") {
  CHECK(errors_of("") == Errors{"test.yaml: at least one listener is required"});
  CHECK(errors_of("# nothing here\n") == Errors{"test.yaml: at least one listener is required"});
}

TEST_CASE("the document must be a map", "[config]") {
  CHECK(errors_of(R"(
- workers: 1
)") == Errors{"test.yaml:1:1: expected a map, got a list"});
}

TEST_CASE("at least one listener is required", "[config]") {
  CHECK(errors_of(R"(
routes: {main: [{respond: {}}]}
)") == Errors{"test.yaml: at least one listener is required"});
  CHECK(errors_of(R"(
listeners: []
)") == Errors{"test.yaml:1:12: at least one listener is required"});
}

// ---------------------------------------------------------------------------------------------
// Types

TEST_CASE("a section that is not a map is reported with what was found", "[config]") {
  CHECK(errors_of(with_minimal(R"(
limits: [1]
)")) == Errors{"test.yaml:1:9: expected a map, got a list"});
  CHECK(errors_of(with_minimal(R"(
timeouts: 10s
)")) == Errors{"test.yaml:1:11: expected a map, got '10s'"});
}

TEST_CASE("an empty value is reported at its key", "[config]") {
  // yaml-cpp puts an empty value at the start of the next line; the key is the useful place.
  CHECK(errors_of(with_minimal(R"(
forwarding:
admin:
)")) == Errors{"test.yaml:1:1: expected a map, got nothing",
               "test.yaml:2:1: expected a map, got nothing"});
}

TEST_CASE("a list that is not a list is reported", "[config]") {
  CHECK(errors_of(R"(
listeners: {name: web, bind: 127.0.0.1:8080, routes: main}
)") == Errors{"test.yaml:1:12: expected a list, got a map"});
}

TEST_CASE("an integer that is not an integer is reported", "[config]") {
  CHECK(errors_of(with_minimal(R"(
workers: two
limits: {max_header_count: 1.5}
)")) == Errors{"test.yaml:1:10: expected an integer, got 'two'",
               "test.yaml:2:28: expected an integer, got '1.5'"});
}

TEST_CASE("booleans are only true or false", "[config]") {
  CHECK(errors_of(with_minimal(R"(
forwarding: {via: yes, x_forwarded_for: 1, x_forwarded_proto: TRUE}
access_log: {enabled: [true]}
)")) == Errors{"test.yaml:1:19: expected true or false, got 'yes'",
               "test.yaml:1:41: expected true or false, got '1'",
               "test.yaml:2:23: expected true or false, got a list"});
}

TEST_CASE("a string that is not a string is reported", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - name: [web]
    bind: {ip: 127.0.0.1}
    routes: main
routes: {main: [{respond: {}}]}
)") == Errors{"test.yaml:2:11: expected a string, got a list",
              "test.yaml:3:11: expected a string, got a map"});
}

TEST_CASE("keys must be names", "[config]") {
  CHECK(errors_of(with_minimal(R"(
? [a, b]
: 1
)")) == Errors{"test.yaml:1:3: expected a name as key, got a list"});
}

// ---------------------------------------------------------------------------------------------
// Keys

TEST_CASE("unknown key suggests the closest allowed key", "[config]") {
  CHECK(errors_of(with_minimal(R"(
pols: {}
timeouts: {client_heder: 1s}
)")) == Errors{"test.yaml:1:1: unknown key 'pols' in top level; did you mean 'pools'?",
               "test.yaml:2:12: unknown key 'client_heder' in timeouts; did you mean "
               "'client_header'?"});
}

TEST_CASE("unknown key suggestions count a swap of neighbours as one edit", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    servers:
      - {address: 127.0.0.1:9001, wieght: 2}
)") == Errors{"test.yaml:6:35: unknown key 'wieght' in server; did you mean 'weight'?"});
}

TEST_CASE("unknown key without a close match lists the allowed keys", "[config]") {
  CHECK(errors_of(with_minimal(R"(
limits: {max_header_size: 1K}
)")) == Errors{"test.yaml:1:10: unknown key 'max_header_size' in limits; expected one of: "
               "max_header_bytes, max_header_count, max_body_bytes, max_connections"});
}

TEST_CASE("unknown keys are reported in every section", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - {name: web, bind: 127.0.0.1:8080, routes: main, proto: {}}
routes:
  main:
    - respond: {status: 200, header: {}}
      name: catch-all
pools:
  app: {servers: [127.0.0.1:9001], tsl: {}}
admin: {bind: 127.0.0.1:9090, token_file: admin.token, users: x}
access_log: {enable: true}
forwarding: {forwarded: true}
)") == Errors{"test.yaml:2:53: unknown key 'proto' in listener; expected one of: name, bind, mode, "
              "routes, pool, tls, websocket, sni",
              "test.yaml:5:30: unknown key 'header' in respond; did you mean 'headers'?",
              "test.yaml:6:7: unknown key 'name' in route; expected one of: match, pool, split, "
              "redirect, respond, goto, sticky, request_headers, response_headers, rewrite, "
              "fallback, handoff, connect, per_connection",
              "test.yaml:8:36: unknown key 'tsl' in pool; did you mean 'tls'?",
              "test.yaml:9:56: unknown key 'users' in admin; expected one of: bind, token_file, "
              "read_only_token_file, tls, metrics_bind",
              "test.yaml:10:14: unknown key 'enable' in access_log; did you mean 'enabled'?",
              "test.yaml:11:14: unknown key 'forwarded' in forwarding; expected one of: "
              "x_forwarded_for, x_forwarded_proto, via"});
}

TEST_CASE("a key given twice is an error", "[config]") {
  CHECK(errors_of(with_minimal(R"(
workers: 1
workers: 2
)")) == Errors{"test.yaml:2:1: duplicate key 'workers'; first set at line 1"});
}

// ---------------------------------------------------------------------------------------------
// Listeners and admin

TEST_CASE("a listener needs name, bind and routes", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - name: web
  - {}
routes: {main: [{pool: app}]}
pools: {app: {servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:2:5: listener is missing required key 'bind'",
              "test.yaml:2:5: listener is missing required key 'routes'",
              "test.yaml:3:5: listener is missing required key 'name'",
              "test.yaml:3:5: listener is missing required key 'bind'",
              "test.yaml:3:5: listener is missing required key 'routes'"});
}

TEST_CASE("a listener name must not be empty", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: "", bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:1:20: listener name must not be empty"});
}

TEST_CASE("listener names and binds must be unique", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - {name: web, bind: 127.0.0.1:8080, routes: main}
  - {name: web, bind: 127.0.0.1:8081, routes: main}
  - {name: api, bind: 127.0.0.1:8080, routes: main}
  - {name: v6a, bind: "[::1]:8080", routes: main}
  - {name: v6b, bind: "[0:0::1]:8080", routes: main}
routes: {main: [{pool: app}]}
pools: {app: {servers: [127.0.0.1:9001]}}
admin: {bind: 127.0.0.1:8081, token_file: t}
)") == Errors{"test.yaml:3:12: duplicate listener name 'web'; first defined at line 2",
              "test.yaml:4:23: duplicate bind 127.0.0.1:8080; already used by listener 'web' at "
              "line 2",
              "test.yaml:6:23: duplicate bind [0:0::1]:8080; already used by listener 'v6a' at "
              "line 5",
              "test.yaml:9:15: duplicate bind 127.0.0.1:8081; already used by listener 'web' at "
              "line 3"});
}

TEST_CASE("port 0 binds never conflict", "[config]") {
  auto config = load_ok(R"(
listeners:
  - {name: a, bind: 127.0.0.1:0, routes: main}
  - {name: b, bind: 127.0.0.1:0, routes: main}
routes: {main: [{respond: {}}]}
admin: {bind: 127.0.0.1:0, token_file: t, metrics_bind: 127.0.0.1:0}
)");
  CHECK(config->listeners.size() == 2);
}

TEST_CASE("admin needs a bind", "[config]") {
  CHECK(errors_of(with_minimal(R"(
admin: {token_file: t}
)")) == Errors{"test.yaml:1:8: admin is missing required key 'bind'"});
}

TEST_CASE("admin needs a token file", "[config]") {
  CHECK(errors_of(with_minimal(R"(
admin: {bind: 127.0.0.1:9090}
)")) == Errors{"test.yaml:1:8: admin is missing required key 'token_file'"});
}

TEST_CASE("admin token files must not be empty names", "[config]") {
  CHECK(errors_of(with_minimal(R"(
admin: {bind: 127.0.0.1:9090, token_file: "", read_only_token_file: ""}
)")) == Errors{"test.yaml:1:43: admin.token_file must not be empty",
               "test.yaml:1:69: admin.read_only_token_file must not be empty"});
}

TEST_CASE("admin paths are resolved against the configuration file's directory", "[config]") {
  auto r = switchyard::config::load_string(
      "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
      "routes: {main: [{respond: {}}]}\n"
      "admin: {bind: 127.0.0.1:9090, token_file: admin.token, read_only_token_file: /etc/ro}\n",
      "/etc/switchyard/sy.yaml");
  REQUIRE(r.ok());
  CHECK(r.config->admin->token_file == "/etc/switchyard/admin.token");
  CHECK(r.config->admin->read_only_token_file == "/etc/ro");
  CHECK_FALSE(r.config->admin->metrics_bind.has_value());
  CHECK_FALSE(r.config->admin->tls.has_value());
}

TEST_CASE("admin metrics_bind must differ from admin.bind and the listeners", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{respond: {}}]}
admin: {bind: 127.0.0.1:9090, token_file: t, metrics_bind: 127.0.0.1:9090}
)") == Errors{"test.yaml:3:60: duplicate bind 127.0.0.1:9090; already used by admin at line 3"});
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{respond: {}}]}
admin: {bind: 127.0.0.1:9090, token_file: t, metrics_bind: 127.0.0.1:8080}
)") == Errors{"test.yaml:3:60: duplicate bind 127.0.0.1:8080; already used by listener 'web' at "
              "line 1"});
}

TEST_CASE("admin tls needs cert and key", "[config]") {
  CHECK(errors_of(with_minimal(R"(
admin: {bind: 127.0.0.1:9090, token_file: t, tls: {cert: a.pem}}
)")) == Errors{"test.yaml:1:51: admin.tls is missing required key 'key'"});
  CHECK(errors_of(with_minimal(R"(
admin: {bind: 127.0.0.1:9090, token_file: t, tls: {key: a.key, certificate: a.pem}}
)")) == Errors{"test.yaml:1:51: admin.tls is missing required key 'cert'",
               "test.yaml:1:64: unknown key 'certificate' in admin.tls; expected one of: cert, "
               "key"});
}

TEST_CASE("admin tls files must exist", "[config]") {
  auto errors = errors_of(with_minimal(R"(
admin: {bind: 127.0.0.1:9090, token_file: t, tls: {cert: /nonexistent/a.pem, key: /nonexistent/a.key}}
)"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].starts_with("test.yaml:1:51: "));
  CHECK(errors[0].find("/nonexistent/a.pem") != std::string::npos);
}

TEST_CASE("a server may be in maintenance", "[config]") {
  auto c = load_ok(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: [{address: 127.0.0.1:9001, maintenance: true}, 127.0.0.1:9002]}}
)");
  CHECK(c->pools.at("app").servers[0].maintenance);
  CHECK_FALSE(c->pools.at("app").servers[1].maintenance);
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: [{address: 127.0.0.1:9001, maintenance: yes}]}}
)").size() == 1);
}

TEST_CASE("routes are numbered across tables in name order", "[config]") {
  auto c = load_ok(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main: [{match: {path: /a}, respond: {status: 201}}, {respond: {}}]
  api: [{respond: {}}]
)");
  CHECK(c->routes.at("api").routes[0].index == 0);
  CHECK(c->routes.at("main").routes[0].index == 1);
  CHECK(c->routes.at("main").routes[1].index == 2);
}

TEST_CASE("invalid addresses are reported with the reason", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - {name: a, bind: localhost:8080, routes: main}
  - {name: b, bind: "127.0.0.1", routes: main}
  - {name: c, bind: "::1:80", routes: main}
  - {name: d, bind: "[::1:80", routes: main}
  - {name: e, bind: 127.0.0.1:65536, routes: main}
  - {name: f, bind: ":80", routes: main}
  - {name: g, bind: "[fe80::1%eth0]:80", routes: main}
  - {name: h, bind: "127.0.0.1:http", routes: main}
  - {name: i, bind: "[::1]", routes: main}
  - {name: j, bind: "127.1:80", routes: main}
routes: {main: [{respond: {}}]}
)") == Errors{"test.yaml:2:21: invalid address 'localhost:8080': 'localhost' is not a numeric IPv4 "
              "address (host names are not supported); expected IP:port, e.g. 127.0.0.1:8080 or "
              "[::1]:8080",
              "test.yaml:3:21: invalid address '127.0.0.1': missing port; expected IP:port, e.g. "
              "127.0.0.1:8080 or [::1]:8080",
              "test.yaml:4:21: invalid address '::1:80': an IPv6 address needs brackets, e.g. "
              "[::1]:8080",
              "test.yaml:5:21: invalid address '[::1:80': missing ']' after IPv6 address; "
              "expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080",
              "test.yaml:6:21: invalid address '127.0.0.1:65536': invalid port '65536'; expected "
              "0..65535",
              "test.yaml:7:21: invalid address ':80': missing IP address (use 0.0.0.0 or [::] for "
              "all); expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080",
              "test.yaml:8:21: invalid address '[fe80::1%eth0]:80': 'fe80::1%eth0' is not a valid "
              "IPv6 address",
              "test.yaml:9:21: invalid address '127.0.0.1:http': invalid port 'http'; expected "
              "0..65535",
              "test.yaml:10:21: invalid address '[::1]': missing port; expected IP:port, e.g. "
              "127.0.0.1:8080 or [::1]:8080",
              "test.yaml:11:21: invalid address '127.1:80': '127.1' is not a numeric IPv4 address "
              "(host names are not supported); expected IP:port, e.g. 127.0.0.1:8080 or "
              "[::1]:8080"});
}

TEST_CASE("parse_socket_address fills the socket address", "[config]") {
  SocketAddress a;
  REQUIRE(parse_socket_address("192.0.2.7:443", a) == "");
  CHECK(a.text == "192.0.2.7:443");
  CHECK(a.family() == AF_INET);
  CHECK(a.length == sizeof(sockaddr_in));
  CHECK(ip_of(a) == "192.0.2.7");
  CHECK(port_of(a) == 443);

  SocketAddress b;
  REQUIRE(parse_socket_address("[2001:db8::2]:65535", b) == "");
  CHECK(b.text == "[2001:db8::2]:65535");
  CHECK(b.family() == AF_INET6);
  CHECK(b.length == sizeof(sockaddr_in6));
  CHECK(ip_of(b) == "2001:db8::2");
  CHECK(port_of(b) == 65535);

  SocketAddress c;
  REQUIRE(parse_socket_address("[::]:0", c) == "");
  CHECK(ip_of(c) == "::");
  CHECK(port_of(c) == 0);
}

TEST_CASE("parse_socket_address leaves its output alone on error", "[config]") {
  SocketAddress a;
  REQUIRE(parse_socket_address("127.0.0.1:80", a) == "");
  CHECK(parse_socket_address("", a) == "expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080");
  CHECK(parse_socket_address("127.0.0.1:", a) ==
        "missing port; expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080");
  CHECK(parse_socket_address("[::1]x80", a) ==
        "missing port; expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080");
  CHECK(parse_socket_address("127.0.0.1:-1", a) == "invalid port '-1'; expected 0..65535");
  CHECK(parse_socket_address("127.0.0.1:99999999999", a) ==
        "invalid port '99999999999'; expected 0..65535");
  CHECK(parse_socket_address("[127.0.0.1]:80", a) == "'127.0.0.1' is not a valid IPv6 address");
  CHECK(a.text == "127.0.0.1:80");
  CHECK(port_of(a) == 80);
}

// ---------------------------------------------------------------------------------------------
// Routes

TEST_CASE("unknown route table and pool references suggest defined names", "[config]") {
  CHECK(errors_of(R"(
listeners:
  - {name: web, bind: 127.0.0.1:8080, routes: mian}
  - {name: api, bind: 127.0.0.1:8081, routes: other}
routes:
  main:
    - pool: ap
  second:
    - pool: something_else
pools:
  app: {servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:2:47: unknown route table 'mian'; did you mean 'main'?",
              "test.yaml:3:47: unknown route table 'other'; defined route tables: main, second",
              "test.yaml:6:13: unknown pool 'ap'; did you mean 'app'?",
              "test.yaml:8:13: unknown pool 'something_else'; defined pools: app"});
}

TEST_CASE("a pool reference with no pools defined says so", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
)") == Errors{"test.yaml:2:24: unknown pool 'app'; no pools are defined"});
}

TEST_CASE("a reference to a pool with errors is not also unknown", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {servers: []}}
)") == Errors{"test.yaml:3:24: pool 'app' needs at least one server"});
}

TEST_CASE("a route needs exactly one action", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - pool: app
      respond: {status: 503}
  other:
    - {}
pools: {app: {servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:4:7: route needs exactly one of pool, split, redirect, respond, goto",
              "test.yaml:7:7: route needs exactly one of pool, split, redirect, respond, goto"});
}

TEST_CASE("a route with match does not make later routes unreachable", "[config]") {
  // More on match in routing_test.cc.
  auto config = load_ok(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - match: {host: example.com}
      pool: app
    - pool: app
pools: {app: {servers: [127.0.0.1:9001]}}
)");
  const auto& routes = config->routes.at("main").routes;
  REQUIRE(routes.size() == 2);
  REQUIRE(routes[0].match.has_value());
  CHECK(routes[0].match->kind == Match::Kind::kHost);
  CHECK(routes[0].match->patterns == std::vector<std::string>{"example.com"});
  CHECK_FALSE(routes[1].match.has_value());
}

TEST_CASE("routes after a route without match are unreachable", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - pool: app
    - pool: app
    - {respond: {status: 404}}
pools: {app: {servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:5:7: unreachable route: the route at line 4 matches every request",
              "test.yaml:6:7: unreachable route: the route at line 4 matches every request"});
}

TEST_CASE("a route table must be a non-empty list", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main: [{respond: {}}]
  empty: []
  notalist: {pool: app}
)") == Errors{"test.yaml:4:10: route table 'empty' is empty; it needs at least one route",
              "test.yaml:5:13: expected a list, got a map"});
}

TEST_CASE("respond status, headers and body are validated", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - respond:
        status: 600
  a: [{respond: {status: ok}}]
  b: [{respond: {status: 99}}]
  c: [{respond: {headers: [x]}}]
  d: [{respond: {headers: {x-a: [1]}}}]
  e: [{respond: {headers: {"bad name": x}}}]
  f: [{respond: {headers: {x-a: "a\r\nSet-Cookie: x=1"}}}]
  g: [{respond: {headers: {Content-Length: "5"}}}]
  h: [{respond: {status: 204, body: hello}}]
  i: [{respond: {headers: {X-A: 1, x-a: 2}}}]
  j: [{respond: {body: [1]}}]
  k: [{respond: ~}]
  l: [{respond: {statsu: 200}}]
  m: [{respond: {headers: {transfer-encoding: chunked}}}]
  n: [{respond: {headers: {Connection: keep-alive}}}]
)") == Errors{"test.yaml:5:17: respond.status must be between 100 and 599, got 600",
              "test.yaml:6:26: expected an integer, got 'ok'",
              "test.yaml:7:26: respond.status must be between 100 and 599, got 99",
              "test.yaml:8:27: expected a map, got a list",
              "test.yaml:9:33: expected a string, got a list",
              "test.yaml:10:28: invalid header name 'bad name'",
              "test.yaml:11:33: header 'x-a' value must not contain CR, LF or NUL",
              "test.yaml:12:28: header 'Content-Length' is set by the proxy and cannot be "
              "configured",
              "test.yaml:13:37: a 204 response cannot have a body",
              "test.yaml:14:36: duplicate header 'x-a'; first set at line 14",
              "test.yaml:15:24: expected a string, got a list",
              "test.yaml:16:8: expected a map, got nothing",
              "test.yaml:17:18: unknown key 'statsu' in respond; did you mean 'status'?",
              "test.yaml:18:28: header 'transfer-encoding' is set by the proxy and cannot be "
              "configured",
              "test.yaml:19:28: header 'Connection' is set by the proxy and cannot be configured"});
}

// ---------------------------------------------------------------------------------------------
// Pools and servers

TEST_CASE("a pool needs servers and a server needs an address", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{respond: {}}]}
pools:
  app: {servers: []}
  api: {scheduler: rr}
  web:
    servers:
      - weight: 2
      - [127.0.0.1:9001]
)") == Errors{"test.yaml:4:18: pool 'app' needs at least one server",
              "test.yaml:5:8: pool 'api' is missing required key 'servers'",
              "test.yaml:8:9: server is missing required key 'address'",
              "test.yaml:9:9: expected a server address or a map with 'address', got a list"});
}

TEST_CASE("only the schedulers this build registers are accepted", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {scheduler: nosuch, servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:3:26: unsupported scheduler 'nosuch'; this build supports: " +
              scheduler_names()});
  // Every registered scheduler loads, the ones being added included.
  for (const switchyard::upstream::SchedulerInfo& info : switchyard::upstream::schedulers()) {
    INFO(info.name);
    CHECK(load_ok("listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
                  "routes: {main: [{pool: app}]}\n"
                  "pools: {app: {scheduler: " +
                  std::string(info.name) + ", servers: [127.0.0.1:9001]}}\n")
              ->pools.at("app")
              .scheduler == info.name);
  }
}

// ---------------------------------------------------------------------------------------------
// Pools: hashing, retries, queue, persistence, health, outlier detection, server flags

TEST_CASE("a full pool loads into every field", "[config]") {
  auto config = load_ok(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - match: {path_prefix: /api/}
      pool: api
      fallback: {pool: sorry}
    - split: [{pool: api, weight: 9}, {pool: sorry, weight: 1}]
      fallback: {respond: {status: 503, headers: {retry-after: "30"}, body: "try later\n"}}
pools:
  api:
    scheduler: wrr
    retries: 3
    connect_timeout: 1s
    response_timeout: 30s
    max_idle_per_server: 8
    queue: {size: 100, timeout: 2s}
    persistence: {source: {timeout: 10m, netmask: 24, netmask_v6: 64}}
    health:
      http: {method: HEAD, path: "/healthz?full=1", host: "api.example.com:8080", expect: 200-299, body: ok}
      interval: 3s
      timeout: 3s
      rise: 1
      fall: 5
      jitter: 20%
    outlier: {consecutive_failures: 0, count_5xx: false, base_ejection: 1s, max_ejection: 1s}
    servers:
      - {address: 127.0.0.1:9001, weight: 3, max_connections: 100}
      - {address: 127.0.0.1:9002, drain: true, backup: false}
      - {address: 127.0.0.1:9003, backup: true}
  sorry:
    persistence: {cookie: {name: SRVID}}
    health: {tcp: true}
    servers: [127.0.0.1:9004]
  edges:
    persistence: {cookie: {}}
    health: {http: {expect: 204}, interval: 10ms, timeout: 10ms, jitter: 0, rise: 100, fall: 100}
    queue: {size: 100000}
    outlier: {consecutive_failures: 1000}
    retries: 0
    servers: [{address: 127.0.0.1:9005, max_connections: 1000000}]
  longest:
    persistence: {source: {timeout: 720h, netmask: 0, netmask_v6: 128}}
    health: {tcp: true, jitter: 50}
    outlier: {base_ejection: 24h, max_ejection: 24h}
    retries: 10
    servers: [127.0.0.1:9006]
)");
  const Config& c = *config;
  const Pool& api = c.pools.at("api");
  CHECK(api.name == "api");
  CHECK(api.mark.line == 10);
  CHECK(api.mark.column == 3);
  CHECK(api.scheduler == "wrr");
  CHECK(api.hash.on == HashKey::On::kDefault);
  CHECK(api.fallback);
  CHECK(api.retries == 3);
  CHECK(api.connect_timeout == 1s);
  CHECK(api.response_timeout == 30s);
  CHECK(api.max_idle_per_server == 8);
  CHECK(api.queue.size == 100);
  CHECK(api.queue.timeout == 2s);
  CHECK(api.persistence.kind == Persistence::Kind::kSource);
  CHECK(api.persistence.timeout == 10min);
  CHECK(api.persistence.netmask_v4 == 24);
  CHECK(api.persistence.netmask_v6 == 64);
  REQUIRE(api.health.has_value());
  CHECK(api.health->kind == HealthCheck::Kind::kHttp);
  CHECK(api.health->method == "HEAD");
  CHECK(api.health->path == "/healthz?full=1");
  CHECK(api.health->host == "api.example.com:8080");
  CHECK(api.health->expect_min == 200);
  CHECK(api.health->expect_max == 299);
  CHECK(api.health->body_contains == "ok");
  CHECK(api.health->interval == 3s);
  CHECK(api.health->timeout == 3s);
  CHECK(api.health->rise == 1);
  CHECK(api.health->fall == 5);
  CHECK(api.health->jitter_percent == 20);
  CHECK(api.outlier.consecutive_failures == 0);
  CHECK_FALSE(api.outlier.count_5xx);
  CHECK(api.outlier.base_ejection == 1s);
  CHECK(api.outlier.max_ejection == 1s);
  REQUIRE(api.servers.size() == 3);
  CHECK(api.servers[0].weight == 3);
  CHECK(api.servers[0].max_connections == 100);
  CHECK_FALSE(api.servers[0].drain);
  CHECK_FALSE(api.servers[0].backup);
  CHECK(api.servers[1].weight == 1);
  CHECK(api.servers[1].max_connections == 0);
  CHECK(api.servers[1].drain);
  CHECK_FALSE(api.servers[1].backup);
  CHECK_FALSE(api.servers[2].drain);
  CHECK(api.servers[2].backup);

  const Pool& sorry = c.pools.at("sorry");
  CHECK(sorry.mark.line == 30);
  CHECK(sorry.persistence.kind == Persistence::Kind::kCookie);
  CHECK(sorry.persistence.cookie == "SRVID");
  REQUIRE(sorry.health.has_value());
  CHECK(sorry.health->kind == HealthCheck::Kind::kTcp);
  const HealthCheck defaults;
  CHECK(sorry.health->interval == defaults.interval);
  CHECK(sorry.health->timeout == defaults.timeout);
  CHECK(sorry.health->rise == defaults.rise);
  CHECK(sorry.health->fall == defaults.fall);
  CHECK(sorry.health->jitter_percent == defaults.jitter_percent);

  const Pool& edges = c.pools.at("edges");
  CHECK(edges.persistence.kind == Persistence::Kind::kCookie);
  CHECK(edges.persistence.cookie == Persistence{}.cookie);
  REQUIRE(edges.health.has_value());
  CHECK(edges.health->kind == HealthCheck::Kind::kHttp);
  CHECK(edges.health->method == defaults.method);
  CHECK(edges.health->path == defaults.path);
  CHECK(edges.health->host.empty());
  CHECK(edges.health->expect_min == 204);
  CHECK(edges.health->expect_max == 204);
  CHECK(edges.health->body_contains.empty());
  CHECK(edges.health->interval == 10ms);
  CHECK(edges.health->timeout == 10ms);
  CHECK(edges.health->jitter_percent == 0);
  CHECK(edges.health->rise == 100);
  CHECK(edges.health->fall == 100);
  CHECK(edges.queue.size == 100000);
  CHECK(edges.queue.timeout == Queue{}.timeout);
  CHECK(edges.outlier.consecutive_failures == 1000);
  CHECK(edges.retries == 0);
  CHECK(edges.servers.at(0).max_connections == 1000000);

  const Pool& longest = c.pools.at("longest");
  CHECK(longest.persistence.timeout == 720h);
  CHECK(longest.persistence.netmask_v4 == 0);
  CHECK(longest.persistence.netmask_v6 == 128);
  CHECK(longest.health->jitter_percent == 50);
  CHECK(longest.outlier.base_ejection == 24h);
  CHECK(longest.retries == 10);

  const auto& routes = c.routes.at("main").routes;
  REQUIRE(routes.size() == 2);
  CHECK(routes[0].fallback_pool == "sorry");
  CHECK_FALSE(routes[0].fallback_respond.has_value());
  CHECK_FALSE(routes[1].fallback_pool.has_value());
  REQUIRE(routes[1].fallback_respond.has_value());
  CHECK(routes[1].fallback_respond->status == 503);
  REQUIRE(routes[1].fallback_respond->headers.size() == 1);
  CHECK(routes[1].fallback_respond->headers[0].name == "retry-after");
  CHECK(routes[1].fallback_respond->headers[0].value == "30");
  CHECK(routes[1].fallback_respond->body == "try later\n");
}

TEST_CASE("a pool without the new keys keeps the defaults of config.h", "[config]") {
  auto config = load_ok(with_minimal(""));
  const Pool& app = config->pools.at("app");
  const Pool defaults;
  CHECK(app.mark.line == 3);
  CHECK(app.mark.column == 9);
  CHECK(app.hash.on == defaults.hash.on);
  CHECK(app.hash.name == defaults.hash.name);
  CHECK(app.fallback == defaults.fallback);
  CHECK(app.retries == defaults.retries);
  CHECK_FALSE(app.connect_timeout.has_value());
  CHECK_FALSE(app.response_timeout.has_value());
  CHECK(app.queue.size == defaults.queue.size);
  CHECK(app.queue.timeout == defaults.queue.timeout);
  CHECK(app.persistence.kind == Persistence::Kind::kNone);
  CHECK(app.persistence.timeout == defaults.persistence.timeout);
  CHECK(app.persistence.netmask_v4 == defaults.persistence.netmask_v4);
  CHECK(app.persistence.netmask_v6 == defaults.persistence.netmask_v6);
  CHECK(app.persistence.cookie == defaults.persistence.cookie);
  CHECK_FALSE(app.health.has_value());
  CHECK(app.outlier.consecutive_failures == defaults.outlier.consecutive_failures);
  CHECK(app.outlier.count_5xx == defaults.outlier.count_5xx);
  CHECK(app.outlier.base_ejection == defaults.outlier.base_ejection);
  CHECK(app.outlier.max_ejection == defaults.outlier.max_ejection);
  const Server server_defaults;
  REQUIRE(app.servers.size() == 1);
  CHECK(app.servers[0].max_connections == server_defaults.max_connections);
  CHECK(app.servers[0].drain == server_defaults.drain);
  CHECK(app.servers[0].backup == server_defaults.backup);
  const Route& route = config->routes.at("main").routes.at(0);
  CHECK_FALSE(route.fallback_pool.has_value());
  CHECK_FALSE(route.fallback_respond.has_value());
}

TEST_CASE("hash reads every key form for each hashing scheduler", "[config]") {
  const std::pair<std::string, HashKey> cases[] = {
      {"source", {HashKey::On::kSource, ""}},
      {"source_port", {HashKey::On::kSourcePort, ""}},
      {"url", {HashKey::On::kUrl, ""}},
      {"{header: X-User}", {HashKey::On::kHeader, "x-user"}},
      {"{cookie: Session}", {HashKey::On::kCookie, "Session"}},
  };
  int hashing = 0;
  for (const switchyard::upstream::SchedulerInfo& info : switchyard::upstream::schedulers()) {
    if (info.default_key == HashKey::On::kDefault) continue;
    ++hashing;
    for (const auto& [text, expected] : cases) {
      INFO(info.name << " hash: " << text);
      auto config = load_ok(
          "listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]\n"
          "routes: {main: [{pool: app}]}\n"
          "pools: {app: {scheduler: " +
          std::string(info.name) + ", hash: " + text +
          ", fallback: false, servers: [127.0.0.1:9001]}}\n");
      const Pool& app = config->pools.at("app");
      CHECK(app.hash.on == expected.on);
      CHECK(app.hash.name == expected.name);
      CHECK_FALSE(app.fallback);
    }
  }
  if (hashing == 0) WARN("no hashing scheduler is registered yet; valid hash keys not loaded");
}

TEST_CASE("hash and fallback are only allowed with a hashing scheduler", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    scheduler: wrr
    hash: source
    fallback: false
    servers: [127.0.0.1:9001]
)") == Errors{"test.yaml:6:5: " + only_with_hashing("hash", "wrr"),
              "test.yaml:7:5: " + only_with_hashing("fallback", "wrr")});
}

TEST_CASE("hash values are checked", "[config]") {
  // rr (the default) does not hash, so each pool also gets that message at its `hash` key.
  const std::string rr = only_with_hashing("hash", "rr");
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: a}]}
pools:
  a: {hash: sorce, servers: [127.0.0.1:9001]}
  b: {hash: random, servers: [127.0.0.1:9001]}
  c: {hash: [source], servers: [127.0.0.1:9001]}
  d: {hash: {header: x-user, cookie: s}, servers: [127.0.0.1:9001]}
  e: {hash: {header: "x user"}, servers: [127.0.0.1:9001]}
  f: {hash: {cookie: ""}, servers: [127.0.0.1:9001]}
  g: {hash: {hedaer: x}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:4:7: " + rr,
              "test.yaml:4:13: unknown hash 'sorce'; did you mean 'source'?",
              "test.yaml:5:7: " + rr,
              "test.yaml:5:13: unknown hash 'random'; expected source, source_port, url, or a "
              "map with header or cookie",
              "test.yaml:6:7: " + rr,
              "test.yaml:6:13: expected source, source_port, url, or a map with header or "
              "cookie, got a list",
              "test.yaml:7:7: " + rr, "test.yaml:7:13: hash needs exactly one of header, cookie",
              "test.yaml:8:7: " + rr, "test.yaml:8:22: invalid header name 'x user'",
              "test.yaml:9:7: " + rr, "test.yaml:9:22: hash cookie name must not be empty",
              "test.yaml:10:7: " + rr,
              "test.yaml:10:14: unknown key 'hedaer' in hash; did you mean 'header'?"});
}

TEST_CASE("retries, pool timeouts and the queue are range-checked", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    retries: 11
    connect_timeout: 0s
    response_timeout: 25h
    queue: {size: 100001, timeout: 0s, sise: 1}
    servers: [127.0.0.1:9001]
)") == Errors{"test.yaml:5:14: retries must be between 0 and 10, got 11",
              "test.yaml:6:22: connect_timeout must be greater than zero",
              "test.yaml:7:23: duration '25h' is too long; the maximum is 24h",
              "test.yaml:8:19: queue.size must be between 0 and 100000, got 100001",
              "test.yaml:8:36: queue.timeout must be greater than zero",
              "test.yaml:8:40: unknown key 'sise' in queue; did you mean 'size'?"});
}

TEST_CASE("persistence is one of source or cookie, each checked", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: a}]}
pools:
  a: {persistence: {source: {}, cookie: {}}, servers: [127.0.0.1:9001]}
  b: {persistence: {}, servers: [127.0.0.1:9001]}
  c: {persistence: {source: {timeout: 500ms, netmask: 33, netmask_v6: 129}}, servers: [127.0.0.1:9001]}
  d: {persistence: {source: {timeout: 721h}}, servers: [127.0.0.1:9001]}
  e: {persistence: {cookie: {name: "a b"}}, servers: [127.0.0.1:9001]}
  f: {persistence: {cookie: {name: ""}}, servers: [127.0.0.1:9001]}
  g: {persistence: {source: {netmsk: 24}}, servers: [127.0.0.1:9001]}
  h: {persistence: {sourc: {}}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:4:20: persistence needs exactly one of source, cookie",
              "test.yaml:5:20: persistence needs exactly one of source, cookie",
              "test.yaml:6:39: persistence.source.timeout must be at least 1s, got 500ms",
              "test.yaml:6:55: persistence.source.netmask must be between 0 and 32, got 33",
              "test.yaml:6:71: persistence.source.netmask_v6 must be between 0 and 128, got 129",
              "test.yaml:7:39: duration '721h' is too long; the maximum is 720h",
              "test.yaml:8:36: invalid cookie name 'a b'",
              "test.yaml:9:36: persistence cookie name must not be empty",
              "test.yaml:10:30: unknown key 'netmsk' in persistence.source; did you mean "
              "'netmask'?",
              "test.yaml:11:21: unknown key 'sourc' in persistence; did you mean 'source'?"});
}

TEST_CASE("health needs exactly one of http or tcp", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: a}]}
pools:
  a: {health: {http: {}, tcp: true}, servers: [127.0.0.1:9001]}
  b: {health: {interval: 5s}, servers: [127.0.0.1:9001]}
  c: {health: {tcp: false}, servers: [127.0.0.1:9001]}
  d: {health: {htp: {}}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:4:15: health needs exactly one of http, tcp",
              "test.yaml:5:15: health needs exactly one of http, tcp",
              "test.yaml:6:21: health.tcp can only be true; to turn active health checks off, "
              "leave out health",
              "test.yaml:7:16: unknown key 'htp' in health; did you mean 'http'?"});
}

TEST_CASE("health timing is range-checked, and the timeout fits in the interval", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    health:
      tcp: true
      interval: 5ms
      rise: 0
      fall: 101
      jitter: 60%
    servers: [127.0.0.1:9001]
  b:
    health: {tcp: true, interval: 1s, timeout: 2s}
    servers: [127.0.0.1:9001]
  c:
    health: {tcp: true, timeout: 3s, jitter: ten}
    servers: [127.0.0.1:9001]
  d: {health: {tcp: true, jitter: [1], timeout: 0s}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:7:17: health.interval must be at least 10ms, got 5ms",
              "test.yaml:8:13: health.rise must be between 1 and 100, got 0",
              "test.yaml:9:13: health.fall must be between 1 and 100, got 101",
              "test.yaml:10:15: health.jitter must be between 0% and 50%, got 60%",
              "test.yaml:13:48: health.timeout 2s must not be longer than health.interval 1s: a "
              "check must end before the next one starts",
              "test.yaml:16:34: health.timeout 3s must not be longer than health.interval (2s by "
              "default): a check must end before the next one starts",
              "test.yaml:16:46: expected a percentage, e.g. 10%, got 'ten'",
              "test.yaml:18:35: expected a percentage, e.g. 10%, got a list",
              "test.yaml:18:49: health.timeout must be greater than zero"});
}

TEST_CASE("health http method, path, host, expect and body are checked", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    health:
      http:
        method: "G T"
        path: healthz
        host: "a/b"
        expect: 600
        body: [ok]
        bdy: ok
    servers: [127.0.0.1:9001]
  b: {health: {http: {path: "/a b", expect: 2xx, host: ""}}, servers: [127.0.0.1:9001]}
  c: {health: {http: {expect: 399-200, method: ""}}, servers: [127.0.0.1:9001]}
  d: {health: {http: {expect: {min: 200}}}, servers: [127.0.0.1:9001]}
  e: {health: {http: {expect: 200-600}}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:7:17: invalid health.http.method 'G T'; a method is a token, e.g. GET",
              "test.yaml:8:15: health.http.path must start with '/', got 'healthz'",
              "test.yaml:9:15: invalid health.http.host 'a/b': expected a host name or IP "
              "address, optionally with a port",
              "test.yaml:10:17: health.http.expect must be between 100 and 599, got 600",
              "test.yaml:11:15: expected a string, got a list",
              "test.yaml:12:9: unknown key 'bdy' in health.http; did you mean 'body'?",
              "test.yaml:14:29: health.http.path contains '\\x20'; write it percent-encoded as "
              "%20",
              "test.yaml:14:45: invalid health.http.expect '2xx': expected a status code or a "
              "range, e.g. 200 or 200-399",
              "test.yaml:14:56: health.http.host must not be empty",
              "test.yaml:15:31: health.http.expect range '399-200' is empty; did you mean "
              "'200-399'?",
              "test.yaml:15:48: health.http.method must not be empty",
              "test.yaml:16:31: expected a status code or a range, e.g. 200 or 200-399, got a map",
              "test.yaml:17:31: health.http.expect must be between 100 and 599, got 200-600"});
}

TEST_CASE("outlier detection values and ejection order are checked", "[config]") {
  const std::string why = ": an ejection starts at base_ejection and doubles up to max_ejection";
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: a}]}
pools:
  a: {outlier: {consecutive_failures: 1001, count_5xx: maybe}, servers: [127.0.0.1:9001]}
  b: {outlier: {base_ejection: 10s, max_ejection: 5s}, servers: [127.0.0.1:9001]}
  c: {outlier: {base_ejection: 10m}, servers: [127.0.0.1:9001]}
  d: {outlier: {max_ejection: 5s}, servers: [127.0.0.1:9001]}
  e: {outlier: {base_ejection: 0s, max_ejecton: 1s}, servers: [127.0.0.1:9001]}
)") == Errors{"test.yaml:4:39: outlier.consecutive_failures must be between 0 and 1000, got 1001",
              "test.yaml:4:56: expected true or false, got 'maybe'",
              "test.yaml:5:51: outlier.max_ejection 5s must not be shorter than "
              "outlier.base_ejection 10s" +
                  why,
              "test.yaml:6:32: outlier.base_ejection 10m must not be longer than "
              "outlier.max_ejection (5m by default)" +
                  why,
              "test.yaml:7:31: outlier.max_ejection 5s must not be shorter than "
              "outlier.base_ejection (10s by default)" +
                  why,
              "test.yaml:8:32: outlier.base_ejection must be greater than zero",
              "test.yaml:8:36: unknown key 'max_ejecton' in outlier; did you mean "
              "'max_ejection'?"});
}

TEST_CASE("server max_connections, drain and backup are checked", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    servers:
      - {address: 127.0.0.1:9001, max_connections: -1, drain: maybe, backup: 1}
      - {address: 127.0.0.1:9002, max_conections: 5}
)") == Errors{"test.yaml:6:52: max_connections must be between 0 and 1000000, got -1",
              "test.yaml:6:63: expected true or false, got 'maybe'",
              "test.yaml:6:78: expected true or false, got '1'",
              "test.yaml:7:35: unknown key 'max_conections' in server; did you mean "
              "'max_connections'?"});
}

TEST_CASE("a pool whose servers are all backups is an error", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    servers:
      - {address: 127.0.0.1:9001, backup: true}
      - {address: 127.0.0.1:9002, backup: true}
)") == Errors{"test.yaml:6:7: every server of pool 'app' is a backup; backups are used only "
              "while no other server is available, so at least one server must not be a backup"});
}

TEST_CASE("a route fallback is a pool or a response, only after pool or split", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes:
  main:
    - match: {path_prefix: /a/}
      pool: app
      fallback: {pool: app}
    - match: {path_prefix: /b/}
      respond: {status: 200}
      fallback: {respond: {}}
    - match: {path_prefix: /c/}
      pool: app
      fallback: {pool: sory}
    - match: {path_prefix: /d/}
      pool: app
      fallback: {pool: sorry, respond: {}}
    - match: {path_prefix: /e/}
      pool: app
      fallback: {respond: {status: 600}}
    - match: {path_prefix: /f/}
      pool: app
      fallback: {}
    - match: {path_prefix: /g/}
      pool: app
      fallback: {pol: sorry}
pools:
  app: {servers: [127.0.0.1:9001]}
  sorry: {servers: [127.0.0.1:9002]}
)") == Errors{"test.yaml:6:24: fallback pool 'app' is the route's own pool; name another pool",
              "test.yaml:9:7: fallback is only allowed with pool or split",
              "test.yaml:12:24: unknown pool 'sory'; did you mean 'sorry'?",
              "test.yaml:15:17: fallback needs exactly one of pool, respond",
              "test.yaml:18:36: respond.status must be between 100 and 599, got 600",
              "test.yaml:21:17: fallback needs exactly one of pool, respond",
              "test.yaml:24:18: unknown key 'pol' in fallback; did you mean 'pool'?"});
}

TEST_CASE("server weight, port and uniqueness are checked", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools:
  app:
    max_idle_per_server: 70000
    servers:
      - {address: 127.0.0.1:9001, weight: 257}
      - {address: 127.0.0.1:9002, weight: -1}
      - 127.0.0.1:0
      - {address: 127.0.0.1:0}
      - 127.0.0.1:9003
      - 127.0.0.1:9003
)") == Errors{"test.yaml:5:26: max_idle_per_server must be between 0 and 65536, got 70000",
              "test.yaml:7:43: weight must be between 0 and 256, got 257",
              "test.yaml:8:43: weight must be between 0 and 256, got -1",
              "test.yaml:9:9: invalid address '127.0.0.1:0': a server needs a port other than 0",
              "test.yaml:10:19: invalid address '127.0.0.1:0': a server needs a port other than 0",
              "test.yaml:12:9: duplicate server 127.0.0.1:9003 in pool 'app'; first listed at line "
              "11"});
}

// ---------------------------------------------------------------------------------------------
// Scalars: workers, access_log, sizes, durations

TEST_CASE("workers is between 0 and 1024", "[config]") {
  CHECK(load_ok(with_minimal("workers: 1024\n"))->workers == 1024);
  CHECK(load_ok(with_minimal("workers: 0\n"))->workers == 0);
  CHECK(errors_of(with_minimal("workers: 1025\n")) ==
        Errors{"test.yaml:1:10: workers must be between 0 and 1024, got 1025"});
  CHECK(errors_of(with_minimal("workers: -1\n")) ==
        Errors{"test.yaml:1:10: workers must be between 0 and 1024, got -1"});
  CHECK(errors_of(with_minimal("workers: 99999999999999999999\n")) ==
        Errors{"test.yaml:1:10: workers must be between 0 and 1024, got 99999999999999999999"});
}

TEST_CASE("access_log format is json or common and path is not empty", "[config]") {
  CHECK(errors_of(with_minimal(R"(
access_log: {format: text, path: ""}
)")) == Errors{"test.yaml:1:22: unknown access_log format 'text'; expected json or common",
               "test.yaml:1:34: access_log.path must not be empty"});
}

TEST_CASE("sizes accept bytes and binary units", "[config]") {
  const std::pair<std::string, std::uint64_t> cases[] = {
      {"0", 0},
      {"1024", 1024},
      {"\"1024\"", 1024},
      {"1B", 1},
      {"1K", 1024},
      {"1k", 1024},
      {"1KB", 1024},
      {"1kb", 1024},
      {"1KiB", 1024},
      {"2 MiB", 2ull << 20},
      {"3M", 3ull << 20},
      {"3mb", 3ull << 20},
      {"1G", 1ull << 30},
      {"1GB", 1ull << 30},
      {"5GiB", 5ull << 30},
      {"17179869183GiB", (17179869183ull) << 30},
      {"18446744073709551615", 18446744073709551615ull},
  };
  for (const auto& [text, bytes] : cases) {
    INFO("max_body_bytes: " << text);
    CHECK(
        load_ok(with_minimal("limits: {max_body_bytes: " + text + "}\n"))->limits.max_body_bytes ==
        bytes);
  }
}

TEST_CASE("invalid sizes are reported", "[config]") {
  const std::string hint =
      "expected a byte count or a whole number with unit B, K, KB, KiB, M, MB, MiB, G, GB or GiB, "
      "e.g. 16KiB";
  const std::pair<std::string, std::string> cases[] = {
      {"1.5G", "invalid size '1.5G': " + hint},
      {"-1", "invalid size '-1': " + hint},
      {"1T", "invalid size '1T': " + hint},
      {"K", "invalid size 'K': " + hint},
      {"'1 0K'", "invalid size '1 0K': " + hint},
      {"\"\"", "invalid size '': " + hint},
      {"18446744073709551616", "size '18446744073709551616' is too large"},
      {"17179869184GiB", "size '17179869184GiB' is too large"},
      {"[1]", "expected a size, got a list"},
  };
  for (const auto& [text, message] : cases) {
    INFO("max_body_bytes: " << text);
    CHECK(errors_of(with_minimal("limits: {max_body_bytes: " + text + "}\n")) ==
          Errors{"test.yaml:1:26: " + message});
  }
}

TEST_CASE("sizes outside a limit's range are reported", "[config]") {
  CHECK(errors_of(with_minimal(R"(
limits: {max_header_bytes: 2MiB}
)")) == Errors{"test.yaml:1:28: limits.max_header_bytes must be between 64 and 1MiB, got 2MiB"});
  CHECK(errors_of(with_minimal(R"(
limits: {max_header_bytes: 63}
)")) == Errors{"test.yaml:1:28: limits.max_header_bytes must be between 64 and 1MiB, got 63"});
  CHECK(load_ok(with_minimal("limits: {max_header_bytes: 1MiB}\n"))->limits.max_header_bytes ==
        1024 * 1024);
  CHECK(errors_of(with_minimal(R"(
limits: {max_header_count: 0, max_connections: 1000001}
)")) == Errors{"test.yaml:1:28: limits.max_header_count must be between 1 and 10000, got 0",
               "test.yaml:1:48: limits.max_connections must be between 1 and 1000000, got "
               "1000001"});
}

TEST_CASE("durations need a unit of ms, s, m or h", "[config]") {
  const std::pair<std::string, Millis> cases[] = {
      {"1ms", 1ms},    {"500ms", 500ms},    {"10s", 10s},     {"10 s", 10s},
      {"2m", 2min},    {"1h", 1h},          {"24h", 24h},     {"1440m", 24h},
      {"86400s", 24h}, {"86400000ms", 24h}, {"\"90s\"", 90s},
  };
  for (const auto& [text, expected] : cases) {
    INFO("client_idle: " << text);
    CHECK(load_ok(with_minimal("timeouts: {client_idle: " + text + "}\n"))->timeouts.client_idle ==
          expected);
  }
}

TEST_CASE("invalid durations are reported", "[config]") {
  const std::string hint = "expected a whole number with unit ms, s, m or h, e.g. 10s";
  const std::pair<std::string, std::string> cases[] = {
      {"10", "duration needs a unit, e.g. 10s"},
      {"\"10\"", "duration needs a unit, e.g. 10s"},
      {"1.5s", "invalid duration '1.5s': " + hint},
      {"10S", "invalid duration '10S': " + hint},
      {"10sec", "invalid duration '10sec': " + hint},
      {"-1s", "invalid duration '-1s': " + hint},
      {"1m30s", "invalid duration '1m30s': " + hint},
      {"s", "invalid duration 's': " + hint},
      {"0s", "timeouts.client_idle must be greater than zero"},
      {"0ms", "timeouts.client_idle must be greater than zero"},
      {"25h", "duration '25h' is too long; the maximum is 24h"},
      {"86400001ms", "duration '86400001ms' is too long; the maximum is 24h"},
      {"99999999999999999999h", "duration '99999999999999999999h' is too long; the maximum is 24h"},
      {"{}", "expected a duration, got a map"},
  };
  for (const auto& [text, message] : cases) {
    INFO("client_idle: " << text);
    CHECK(errors_of(with_minimal("timeouts: {client_idle: " + text + "}\n")) ==
          Errors{"test.yaml:1:25: " + message});
  }
}

TEST_CASE("every timeout rejects zero", "[config]") {
  CHECK(errors_of(with_minimal(R"(
timeouts:
  client_header: 0s
  client_idle: 0s
  client_body: 0s
  upstream_connect: 0s
  upstream_response: 0s
  upstream_idle: 0s
  shutdown: 0s
)")) == Errors{"test.yaml:2:18: timeouts.client_header must be greater than zero",
               "test.yaml:3:16: timeouts.client_idle must be greater than zero",
               "test.yaml:4:16: timeouts.client_body must be greater than zero",
               "test.yaml:5:21: timeouts.upstream_connect must be greater than zero",
               "test.yaml:6:22: timeouts.upstream_response must be greater than zero",
               "test.yaml:7:18: timeouts.upstream_idle must be greater than zero",
               "test.yaml:8:13: timeouts.shutdown must be greater than zero"});
}

// ---------------------------------------------------------------------------------------------
// Reporting

TEST_CASE("all errors in a file are reported, sorted by line and column", "[config]") {
  // Reference errors are found after everything else is read; they still come out in file order.
  CHECK(errors_of(R"(
workers: many
listeners:
  - {name: web, bind: 127.0.0.1:99999, routes: mian}
routes:
  main: [{pool: ap}]
pools:
  app: {servers: [{address: 127.0.0.1:9001, weight: 1000}], sheduler: rr}
timeouts: {client_idle: 60}
pols: {}
)") == Errors{"test.yaml:1:10: expected an integer, got 'many'",
              "test.yaml:3:23: invalid address '127.0.0.1:99999': invalid port '99999'; expected "
              "0..65535",
              "test.yaml:3:48: unknown route table 'mian'; did you mean 'main'?",
              "test.yaml:5:17: unknown pool 'ap'; did you mean 'app'?",
              "test.yaml:7:53: weight must be between 0 and 256, got 1000",
              "test.yaml:7:61: unknown key 'sheduler' in pool; did you mean 'scheduler'?",
              "test.yaml:8:25: duration needs a unit, e.g. 10s",
              "test.yaml:9:1: unknown key 'pols' in top level; did you mean 'pools'?"});
}

TEST_CASE("diagnostics print like compiler messages", "[config]") {
  CHECK(Diagnostic{"a.yaml", 3, 7, "oops"}.to_string() == "a.yaml:3:7: oops");
  CHECK(Diagnostic{"a.yaml", 0, 0, "oops"}.to_string() == "a.yaml: oops");
}

TEST_CASE("load_string names the source in diagnostics and the config", "[config]") {
  CHECK(load_string("workers: x\n" + std::string(kMinimal), "inline.yaml")
            .diagnostics.at(0)
            .to_string() == "inline.yaml:1:10: expected an integer, got 'x'");
  auto result = load_string(kMinimal);
  REQUIRE(result.ok());
  CHECK(result.config->source_path == "<string>");
}

// ---------------------------------------------------------------------------------------------
// Files

TEST_CASE("load_file on a missing file reports the OS error", "[config]") {
  const LoadResult result = load_file("/nonexistent/switchyard.yaml");
  CHECK_FALSE(result.ok());
  REQUIRE(result.diagnostics.size() == 1);
  CHECK(result.diagnostics[0].to_string() ==
        "/nonexistent/switchyard.yaml: cannot read file: No such file or directory");
}

TEST_CASE("load_file on a directory reports the OS error", "[config]") {
  const LoadResult result = load_file("/");
  REQUIRE(result.diagnostics.size() == 1);
  CHECK(result.diagnostics[0].to_string() == "/: cannot read file: Is a directory");
}

TEST_CASE("load_file reads the file and records its path", "[config]") {
  char path[] = "/tmp/switchyard_config_test_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "workers: 3\n" + std::string(kMinimal);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  const LoadResult ok = load_file(path);
  std::ofstream(path) << "workers: x\n";
  const LoadResult bad = load_file(path);
  unlink(path);
  REQUIRE(ok.ok());
  CHECK(ok.config->source_path == path);
  CHECK(ok.config->workers == 3);
  REQUIRE(bad.diagnostics.size() == 2);
  CHECK(bad.diagnostics[0].to_string() ==
        std::string(path) + ": at least one listener is required");
  CHECK(bad.diagnostics[1].to_string() ==
        std::string(path) + ":1:10: expected an integer, got 'x'");
}

// ---------------------------------------------------------------------------------------------
// docs/configuration.md

namespace {

std::string read_docs() {
  std::ifstream in(std::string(SWITCHYARD_SOURCE_DIR) + "/docs/configuration.md");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The allowed keys of one section, as the loader itself lists them in its "unknown key" message.
std::vector<std::string> loader_keys(const std::string& yaml_with_bogus_key) {
  const std::string marker = "unknown key 'zzzzzzzz' in ";
  const std::string list = "; expected one of: ";
  for (const Diagnostic& d : load_string(yaml_with_bogus_key).diagnostics) {
    if (d.message.rfind(marker, 0) != 0) continue;
    const std::size_t at = d.message.find(list);
    REQUIRE(at != std::string::npos);
    std::vector<std::string> keys;
    std::stringstream rest(d.message.substr(at + list.size()));
    for (std::string key; std::getline(rest, key, ',');) {
      keys.push_back(key.substr(key.find_first_not_of(' ')));
    }
    return keys;
  }
  FAIL("no unknown-key diagnostic for: " << yaml_with_bogus_key);
  return {};
}

}  // namespace

TEST_CASE("the example at the top of docs/configuration.md loads", "[config]") {
  const std::string docs = read_docs();
  const std::size_t begin = docs.find("```yaml\n");
  REQUIRE(begin != std::string::npos);
  const std::size_t end = docs.find("```", begin + 8);
  REQUIRE(end != std::string::npos);
  load_ok(docs.substr(begin + 8, end - begin - 8));
}

TEST_CASE("every complete example in docs/configuration.md loads", "[config]") {
  // Complete = it has listeners; the others are fragments of a routes table.
  const std::string docs = read_docs();
  int complete = 0;
  for (std::size_t begin = docs.find("```yaml\n"); begin != std::string::npos;
       begin = docs.find("```yaml\n", begin + 1)) {
    const std::size_t end = docs.find("```", begin + 8);
    REQUIRE(end != std::string::npos);
    const std::string block = docs.substr(begin + 8, end - begin - 8);
    if (block.find("listeners:") == std::string::npos) continue;
    INFO(block);
    load_ok(block);
    ++complete;
  }
  CHECK(complete >= 2);
}

TEST_CASE("docs/configuration.md has a row for every key the loader accepts, and no other",
          "[config]") {
  std::set<std::string> documented;
  const std::regex row(R"(^\| `([^`]+)` \|)");
  std::stringstream lines(read_docs());
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) documented.insert(m[1]);
  }
  REQUIRE_FALSE(documented.empty());

  // {directive prefix in the docs, YAML that puts an unknown key into that section}
  const std::pair<std::string, std::string> sections[] = {
      {"", "zzzzzzzz: 1"},
      {"access_log.", "access_log: {zzzzzzzz: 1}"},
      {"limits.", "limits: {zzzzzzzz: 1}"},
      {"timeouts.", "timeouts: {zzzzzzzz: 1}"},
      {"forwarding.", "forwarding: {zzzzzzzz: 1}"},
      {"splice.", "splice: {zzzzzzzz: 1}"},
      {"listeners[].", "listeners: [{zzzzzzzz: 1}]"},
      {"listeners[].tls.", "listeners: [{tls: {zzzzzzzz: 1}}]"},
      {"listeners[].tls.certificates[].", "listeners: [{tls: {certificates: [{zzzzzzzz: 1}]}}]"},
      {"routes.<table>[].", "routes: {t: [{zzzzzzzz: 1}]}"},
      {"routes.<table>[].respond.", "routes: {t: [{respond: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].match.", "routes: {t: [{match: {zzzzzzzz: 1}}]}"},
      // query and cookie tests take the same keys as header tests; their rows say so.
      {"routes.<table>[].match.header.<name>.",
       "routes: {t: [{match: {header: {x: {zzzzzzzz: 1}}}}]}"},
      {"routes.<table>[].split[].", "routes: {t: [{split: [{zzzzzzzz: 1}]}]}"},
      {"routes.<table>[].sticky.", "routes: {t: [{sticky: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].redirect.", "routes: {t: [{redirect: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].request_headers.", "routes: {t: [{request_headers: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].response_headers.", "routes: {t: [{response_headers: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].rewrite.", "routes: {t: [{rewrite: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].rewrite.path_prefix.",
       "routes: {t: [{rewrite: {path_prefix: {zzzzzzzz: 1}}}]}"},
      {"routes.<table>[].rewrite.path_regex.",
       "routes: {t: [{rewrite: {path_regex: {zzzzzzzz: 1}}}]}"},
      {"pools.<name>.", "pools: {p: {zzzzzzzz: 1}}"},
      {"routes.<table>[].fallback.", "routes: {t: [{fallback: {zzzzzzzz: 1}}]}"},
      {"routes.<table>[].connect.", "routes: {t: [{connect: {zzzzzzzz: 1}}]}"},
      {"pools.<name>.servers[].", "pools: {p: {servers: [{zzzzzzzz: 1}]}}"},
      {"pools.<name>.hash.", "pools: {p: {hash: {zzzzzzzz: 1}}}"},
      {"pools.<name>.queue.", "pools: {p: {queue: {zzzzzzzz: 1}}}"},
      {"pools.<name>.persistence.", "pools: {p: {persistence: {zzzzzzzz: 1}}}"},
      {"pools.<name>.persistence.source.", "pools: {p: {persistence: {source: {zzzzzzzz: 1}}}}"},
      {"pools.<name>.persistence.cookie.", "pools: {p: {persistence: {cookie: {zzzzzzzz: 1}}}}"},
      {"pools.<name>.health.", "pools: {p: {health: {zzzzzzzz: 1}}}"},
      {"pools.<name>.health.http.", "pools: {p: {health: {http: {zzzzzzzz: 1}}}}"},
      {"pools.<name>.outlier.", "pools: {p: {outlier: {zzzzzzzz: 1}}}"},
      {"pools.<name>.tls.", "pools: {p: {tls: {zzzzzzzz: 1}}}"},
      {"admin.", "admin: {zzzzzzzz: 1}"},
      {"handoff.", "handoff: {zzzzzzzz: 1}"},
      {"l4.", "l4: {zzzzzzzz: 1}"},
      {"l4.connections.", "l4: {connections: {zzzzzzzz: 1}}"},
      {"l4.services[].", "l4: {services: [{zzzzzzzz: 1}]}"},
      {"l4.services[].servers[].", "l4: {services: [{servers: [{zzzzzzzz: 1}]}]}"},
  };
  std::set<std::string> accepted;
  for (const auto& [prefix, yaml] : sections) {
    for (const std::string& key : loader_keys(yaml)) accepted.insert(prefix + key);
  }
  for (const std::string& name : accepted) {
    INFO("loader key: " << name);
    CHECK(documented.count(name) == 1);
  }
  for (const std::string& name : documented) {
    // Rows for user-chosen names and list elements describe structure, not a key.
    if (name.ends_with('>') || name.ends_with("[]")) continue;
    INFO("documented directive: " << name);
    CHECK(accepted.count(name) == 1);
  }
}

TEST_CASE("a pool with more than 64 servers is refused", "[config]") {
  std::string yaml =
      "listeners:\n  - {name: web, bind: 127.0.0.1:80, routes: main}\n"
      "routes:\n  main:\n    - pool: big\npools:\n  big:\n    servers:\n";
  for (int i = 1; i <= 65; ++i) yaml += "      - 10.0.0." + std::to_string(i) + ":80\n";
  auto r = switchyard::config::load_string(yaml, "t.yaml");
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].to_string() ==
        "t.yaml:9:7: pool 'big' has 65 servers; at most 64 are supported");
}

// ---------------------------------------------------------------------------------------------
// l4: the kernel fast path

TEST_CASE("an l4 section with services needs no listener", "[config][l4]") {
  auto config = load_ok(R"(
l4:
  interfaces: [eth0, eth1]
  xdp_mode: generic
  pin_path: /sys/fs/bpf/lb1
  connections: { size: 100000, tcp_timeout: 1h, tcp_fin_timeout: 30s, udp_timeout: 60s }
  services:
    - name: web
      vip: 192.0.2.10:80
      scheduler: mh
      hash: source_port
      mode: dr
      on_down: reschedule
      health: { tcp: true, interval: 1s }
      servers:
        - 10.0.0.11:80
        - { address: 10.0.0.12:80, weight: 3, mode: tun }
        - { address: "[2001:db8::12]:80", mode: tun }
    - name: dns
      vip: "[2001:db8::53]:53"
      protocol: udp
      servers: ["[2001:db8::1]:5353"]
)");
  REQUIRE(config->l4.has_value());
  const L4& l4 = *config->l4;
  CHECK(config->listeners.empty());
  CHECK(l4.interfaces == std::vector<std::string>{"eth0", "eth1"});
  CHECK(l4.xdp_mode == L4::XdpMode::kGeneric);
  CHECK(l4.pin_path == "/sys/fs/bpf/lb1");
  CHECK(l4.connections == 100000);
  CHECK(l4.tcp_timeout == 3600s);
  CHECK(l4.tcp_fin_timeout == 30s);
  CHECK(l4.udp_timeout == 60s);
  REQUIRE(l4.services.size() == 2);
  const L4Service& web = l4.services[0];
  CHECK(web.name == "web");
  CHECK(ip_of(web.vip) == "192.0.2.10");
  CHECK(port_of(web.vip) == 80);
  CHECK(web.protocol == 6);
  CHECK(web.scheduler == "mh");
  CHECK(web.hash_port);
  CHECK(web.reschedule_down);
  REQUIRE(web.health.has_value());
  CHECK(web.health->interval == 1s);
  REQUIRE(web.servers.size() == 3);
  CHECK(web.servers[0].mode == L4Mode::kDr);
  CHECK(web.servers[0].weight == 1);
  CHECK(web.servers[1].mode == L4Mode::kTun);
  CHECK(web.servers[1].weight == 3);
  CHECK(web.servers[2].address.family() == AF_INET6);
  const L4Service& dns = l4.services[1];
  CHECK(dns.protocol == 17);
  CHECK(dns.scheduler == "rr");
  CHECK_FALSE(dns.reschedule_down);
  CHECK(dns.servers[0].mode == L4Mode::kNat);
}

TEST_CASE("l4 defaults", "[config][l4]") {
  auto config = load_ok(R"(
l4:
  interfaces: eth0
  services: [{ name: web, vip: 192.0.2.10:80, servers: [10.0.0.11:8080] }]
)");
  const L4& l4 = *config->l4;
  CHECK(l4.xdp_mode == L4::XdpMode::kAuto);
  CHECK(l4.pin_path == "/sys/fs/bpf/switchyard");
  CHECK(l4.connections == 262144);
  CHECK(l4.tcp_timeout == 900s);
  CHECK(l4.tcp_fin_timeout == 120s);
  CHECK(l4.udp_timeout == 300s);
  CHECK(l4.services[0].servers[0].mode == L4Mode::kNat);
}

TEST_CASE("without l4 and listeners a listener is still required", "[config][l4]") {
  CHECK(errors_of("workers: 1\n") ==
        Errors{"test.yaml: at least one listener is required"});
}

TEST_CASE("l4 errors point at the value with did-you-mean", "[config][l4]") {
  CHECK(errors_of(R"(
l4:
  interfaces: [eth0]
  services:
    - name: web
      vip: 192.0.2.10:80
      schedulr: mh
      servers: [10.0.0.11:80]
)") == Errors{"test.yaml:6:7: unknown key 'schedulr' in l4 service; did you mean 'scheduler'?"});
  CHECK(errors_of(R"(
l4:
  interfaces: [eth0]
  services:
    - name: web
      vip: 192.0.2.10:80
      scheduler: mhh
      mode: dsr
      servers: [10.0.0.11:80]
)") == Errors{"test.yaml:6:18: unsupported l4 scheduler 'mhh'; did you mean 'mh'?",
              "test.yaml:7:13: unknown l4 mode 'dsr'; did you mean 'dr'?"});
  CHECK(errors_of(R"(
l4:
  interfacs: [eth0]
)") == Errors{"test.yaml:2:3: unknown key 'interfacs' in l4; did you mean 'interfaces'?"});
}

TEST_CASE("l4 servers: DR/TUN keep the VIP port, NAT/DR keep the family", "[config][l4]") {
  CHECK(errors_of(R"(
l4:
  interfaces: [eth0]
  services:
    - name: web
      vip: 192.0.2.10:80
      mode: dr
      servers:
        - 10.0.0.11:8080
        - { address: "[2001:db8::1]:80", mode: nat }
        - { address: "[2001:db8::2]:80", mode: tun }
)") == Errors{"test.yaml:8:11: dr server 10.0.0.11:8080 must use the vip's port 80: dr mode does "
              "not rewrite the packet (only nat mode can change the port)",
              "test.yaml:9:22: nat server [2001:db8::1]:80 and vip 192.0.2.10:80 are of different "
              "address families; only tun mode can carry IPv4 in IPv6 or IPv6 in IPv4"});
}

TEST_CASE("l4 services are unique by name and by vip and protocol", "[config][l4]") {
  CHECK(errors_of(R"(
l4:
  interfaces: [eth0]
  services:
    - { name: a, vip: 192.0.2.10:80, servers: [10.0.0.11:80] }
    - { name: a, vip: 192.0.2.10:81, servers: [10.0.0.11:80] }
    - { name: b, vip: 192.0.2.10:80, servers: [10.0.0.11:80] }
    - { name: c, vip: 192.0.2.10:80, protocol: udp, servers: [10.0.0.11:80, 10.0.0.11:80] }
)") == Errors{"test.yaml:5:7: duplicate l4 service 'a'; first defined at line 4",
              "test.yaml:6:7: l4 service 'b' repeats tcp 192.0.2.10:80 of the service at line 4",
              "test.yaml:7:77: duplicate server 10.0.0.11:80 in l4 service 'c'; first listed at "
              "line 7"});
}

TEST_CASE("l4 values are validated", "[config][l4]") {
  CHECK(errors_of(R"(
l4:
  interfaces: [eth0/1]
  xdp_mode: fast
  pin_path: relative/dir
  connections: { size: 10, tcp_timeout: 10ms }
  services:
    - name: web
      vip: 192.0.2.10:0
      protocol: sctp
      scheduler: rr
      hash: source
      on_down: drop
      servers: []
)") == Errors{
           "test.yaml:2:16: invalid interface name 'eth0/1': expected 1 to 15 characters "
           "without '/', ':' or blanks",
           "test.yaml:3:13: unknown xdp_mode 'fast'; expected one of: auto, native, generic",
           "test.yaml:4:13: l4.pin_path must be an absolute path (a directory on bpffs, e.g. "
           "/sys/fs/bpf/switchyard), got 'relative/dir'",
           "test.yaml:5:24: l4.connections.size must be between 1024 and 67108864, got 10",
           "test.yaml:5:41: l4.connections.tcp_timeout must be at least 1s, got 10ms",
           "test.yaml:8:12: invalid vip '192.0.2.10:0': a virtual service needs a port other "
           "than 0",
           "test.yaml:9:17: unknown protocol 'sctp'; expected tcp or udp",
           "test.yaml:11:7: hash is only allowed with the sh and mh schedulers; 'rr' does not "
           "hash the client",
           "test.yaml:12:16: unknown on_down 'drop'; expected keep (flows of a DOWN server "
           "continue) or reschedule (they move to another server)",
           "test.yaml:13:16: l4 service 'web' needs at least one server",
       });
  CHECK(errors_of(R"(
l4:
  services: [{ name: web, vip: 192.0.2.10:80, servers: [10.0.0.11:80] }]
)") == Errors{"test.yaml:2:3: l4 has services but no interfaces: list where the XDP program is "
              "attached, e.g. interfaces: [eth0]"});
}
