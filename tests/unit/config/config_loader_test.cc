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
admin: { bind: 127.0.0.1:9090 }
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
admin: { bind: 127.0.0.1:9090 }
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
  - {name: web, bind: 127.0.0.1:8080, routes: main, tls: {}}
routes:
  main:
    - respond: {status: 200, header: {}}
      name: catch-all
pools:
  app: {servers: [127.0.0.1:9001], health: {}}
admin: {bind: 127.0.0.1:9090, token_file: admin.token}
access_log: {enable: true}
forwarding: {forwarded: true}
)") == Errors{"test.yaml:2:53: unknown key 'tls' in listener; expected one of: name, bind, routes",
              "test.yaml:5:30: unknown key 'header' in respond; did you mean 'headers'?",
              "test.yaml:6:7: unknown key 'name' in route; expected one of: match, pool, split, "
              "redirect, respond, goto, sticky, request_headers, response_headers, rewrite",
              "test.yaml:8:36: unknown key 'health' in pool; expected one of: scheduler, "
              "max_idle_per_server, servers",
              "test.yaml:9:31: unknown key 'token_file' in admin; expected one of: bind",
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
admin: {bind: 127.0.0.1:8081}
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
admin: {bind: 127.0.0.1:0}
)");
  CHECK(config->listeners.size() == 2);
}

TEST_CASE("admin needs a bind", "[config]") {
  CHECK(errors_of(with_minimal(R"(
admin: {}
)")) == Errors{"test.yaml:1:8: admin is missing required key 'bind'"});
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

TEST_CASE("only the rr and wrr schedulers are accepted", "[config]") {
  CHECK(errors_of(R"(
listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
routes: {main: [{pool: app}]}
pools: {app: {scheduler: wlc, servers: [127.0.0.1:9001]}}
)") == Errors{"test.yaml:3:26: unsupported scheduler 'wlc'; this build supports: rr, wrr"});
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
      {"listeners[].", "listeners: [{zzzzzzzz: 1}]"},
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
      {"pools.<name>.servers[].", "pools: {p: {servers: [{zzzzzzzz: 1}]}}"},
      {"admin.", "admin: {zzzzzzzz: 1}"},
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
