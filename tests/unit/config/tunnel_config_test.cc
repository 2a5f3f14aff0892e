// Tunnel directives: listeners[].mode / pool / websocket, splice.sockmap, timeouts.tunnel_idle.
#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_loader.h"

namespace {

using namespace switchyard::config;
using namespace std::chrono_literals;
using Errors = std::vector<std::string>;

LoadResult load(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return load_string(yaml, "test.yaml");
}

Errors errors_of(std::string_view yaml) {
  Errors out;
  for (const Diagnostic& d : load(yaml).diagnostics) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("a tcp listener names a pool and needs no routes", "[config][tunnel]") {
  LoadResult r = load(R"(
listeners:
  - { name: db, bind: 127.0.0.1:5432, mode: tcp, pool: db }
  - { name: web, bind: 127.0.0.1:8080, routes: main }
routes:
  main: [{ pool: db }]
pools:
  db: { scheduler: lc, servers: [10.0.0.1:5432] }
)");
  for (const Diagnostic& d : r.diagnostics) INFO(d.to_string());
  REQUIRE(r.ok());
  const Listener& db = r.config->listeners.at(0);
  CHECK(db.mode == Listener::Mode::kTcp);
  CHECK(db.pool == "db");
  CHECK(db.routes.empty());
  const Listener& web = r.config->listeners.at(1);
  CHECK(web.mode == Listener::Mode::kHttp);
  CHECK(web.websocket);
  CHECK_FALSE(r.config->splice.sockmap);  // opt-in (docs/configuration.md, "Tunnels")
  CHECK(r.config->timeouts.tunnel_idle == 3600s);
}

TEST_CASE("splice.sockmap, tunnel_idle and websocket are read", "[config][tunnel]") {
  LoadResult r = load(R"(
splice: { sockmap: false }
timeouts: { tunnel_idle: 90s }
listeners:
  - { name: web, bind: 127.0.0.1:8080, routes: main, websocket: false }
routes:
  main: [{ pool: app }]
pools:
  app: { servers: [10.0.0.1:80] }
)");
  REQUIRE(r.ok());
  CHECK_FALSE(r.config->splice.sockmap);
  CHECK(r.config->timeouts.tunnel_idle == 90s);
  CHECK_FALSE(r.config->listeners.at(0).websocket);
}

TEST_CASE("tunnel directives are validated with positions", "[config][tunnel]") {
  CHECK(errors_of(R"(
listeners:
  - { name: db, bind: 127.0.0.1:5432, mode: udp, pool: db }
pools:
  db: { servers: [10.0.0.1:5432] }
)") == Errors{"test.yaml:2:45: unknown listener mode 'udp'; expected http, tcp"});

  CHECK(errors_of(R"(
listeners:
  - { name: db, bind: 127.0.0.1:5432, mode: tcp }
)") == Errors{"test.yaml:2:5: listener with mode tcp is missing required key 'pool'"});

  CHECK(errors_of(R"(
listeners:
  - { name: db, bind: 127.0.0.1:5432, mode: tcp, pool: db, routes: main, websocket: true }
routes:
  main: [{ pool: db }]
pools:
  db: { servers: [10.0.0.1:5432] }
)") == Errors{"test.yaml:2:68: 'routes' is not allowed on a listener with mode tcp",
              "test.yaml:2:85: 'websocket' is not allowed on a listener with mode tcp"});

  CHECK(errors_of(R"(
listeners:
  - { name: web, bind: 127.0.0.1:80, routes: main, pool: app }
routes:
  main: [{ pool: app }]
pools:
  app: { servers: [10.0.0.1:80] }
)") == Errors{"test.yaml:2:58: 'pool' is only allowed on a listener with mode tcp; an HTTP "
              "listener names its route table in 'routes'"});

  CHECK(errors_of(R"(
listeners:
  - { name: db, bind: 127.0.0.1:5432, mode: tcp, pool: dbb }
pools:
  db: { servers: [10.0.0.1:5432] }
)") == Errors{"test.yaml:2:56: unknown pool 'dbb'; did you mean 'db'?"});

  CHECK(errors_of(R"(
splice: { sockmap: yes }
listeners:
  - { name: web, bind: 127.0.0.1:80, routes: main }
routes:
  main: [{ pool: app }]
pools:
  app: { servers: [10.0.0.1:80] }
)")
            .size() == 1);
}

TEST_CASE("a tcp listener's pool may hash only on the client address", "[config][tunnel]") {
  for (std::string_view pool :
       {"{ scheduler: sh, hash: url, servers: [10.0.0.1:5432] }",
        "{ scheduler: dh, servers: [10.0.0.1:5432] }",
        "{ persistence: { cookie: { name: s } }, servers: [10.0.0.1:5432] }"}) {
    INFO(pool);
    std::string yaml =
        "listeners:\n  - { name: db, bind: 127.0.0.1:5432, mode: tcp, pool: db }\n"
        "pools:\n  db: " +
        std::string(pool) + "\n";
    Errors e = errors_of(yaml);
    REQUIRE(e.size() == 1);
    INFO(e[0]);
    CHECK(e[0].find("test.yaml:2:56: pool 'db' hashes or persists on HTTP request data") == 0);
  }
  CHECK(errors_of("listeners:\n  - { name: db, bind: 127.0.0.1:5432, mode: tcp, pool: db }\n"
                  "pools:\n  db: { scheduler: sh, hash: source_port, servers: [10.0.0.1:5432] }\n")
            .empty());
}

TEST_CASE("connect and per_connection routes are read", "[config][tunnel]") {
  LoadResult r = load(R"(
listeners:
  - { name: web, bind: 127.0.0.1:8080, routes: main }
routes:
  main:
    - { match: { method: CONNECT, host: db.example }, connect: { ports: [443, 5432] }, pool: db }
    - { match: { method: CONNECT }, connect: true, pool: app }
    - { match: { path_prefix: /stream/ }, per_connection: true, pool: app }
    - { match: { path_prefix: /x/ }, connect: false, per_connection: false, pool: app }
    - pool: app
pools:
  db: { servers: [10.0.0.1:5432] }
  app: { servers: [10.0.0.2:80] }
)");
  for (const Diagnostic& d : r.diagnostics) INFO(d.to_string());
  REQUIRE(r.ok());
  const auto& routes = r.config->routes.at("main").routes;
  CHECK(routes[0].connect_ports == std::vector<std::uint16_t>{443, 5432});
  CHECK_FALSE(routes[0].per_connection);
  CHECK(routes[1].connect_ports == std::vector<std::uint16_t>{443});  // the default
  CHECK(routes[2].connect_ports.empty());
  CHECK(routes[2].per_connection);
  CHECK(routes[3].connect_ports.empty());
  CHECK_FALSE(routes[3].per_connection);
  CHECK(routes[4].connect_ports.empty());
  CHECK_FALSE(routes[4].per_connection);
}

TEST_CASE("connect and per_connection are validated with positions", "[config][tunnel]") {
  const std::string head = "listeners:\n  - { name: web, bind: 127.0.0.1:8080, routes: main }\n";
  const std::string pools = "pools:\n  app: { servers: [10.0.0.2:80] }\n";
  CHECK(errors_of(head + "routes:\n  main:\n    - { connect: { ports: [443, 0] }, pool: app }\n" +
                  pools) ==
        Errors{"test.yaml:5:33: connect port must be between 1 and 65535, got 0"});
  CHECK(errors_of(head + "routes:\n  main:\n    - { connect: { ports: [] }, pool: app }\n" +
                  pools) == Errors{"test.yaml:5:27: connect.ports needs at least one port"});
  CHECK(
      errors_of(head + "routes:\n  main:\n    - { connect: { port: 443 }, pool: app }\n" + pools) ==
      Errors{"test.yaml:5:20: unknown key 'port' in connect; did you mean 'ports'?"});
  CHECK(errors_of(head + "routes:\n  main:\n    - { connect: yes please, pool: app }\n" + pools)
            .size() == 1);
  CHECK(errors_of(head + "routes:\n  main:\n    - { per_connection: 1, pool: app }\n" + pools)
            .size() == 1);
  CHECK(errors_of(head + "routes:\n  main:\n    - { connect: true, respond: { status: 200 } }\n") ==
        Errors{"test.yaml:5:9: connect is only allowed with pool or split"});
  CHECK(errors_of(head +
                  "routes:\n  main:\n    - { per_connection: true, redirect: { scheme: https } "
                  "}\n") == Errors{"test.yaml:5:9: per_connection is only allowed with pool or "
                                   "split"});
  CHECK(errors_of(head +
                  "routes:\n  main:\n    - { connect: true, per_connection: true, pool: app }\n" +
                  pools) == Errors{"test.yaml:5:24: per_connection and connect exclude each other "
                                   "(a CONNECT is a tunnel already)"});
  // A tunnel needs the raw server socket: no pool with tls, through split or fallback either.
  CHECK(errors_of(head + R"(routes:
  main:
    - match: { path: /a }
      per_connection: true
      split: [{ pool: app, weight: 1 }, { pool: secure, weight: 1 }]
    - { connect: true, pool: app, fallback: { pool: secure } }
pools:
  app: { servers: [10.0.0.2:80] }
  secure: { servers: [10.0.0.3:443], tls: {} }
)") == Errors{"test.yaml:6:7: pool 'secure' uses tls; a per_connection route tunnels raw TCP to "
              "its servers and needs a pool without tls",
              "test.yaml:8:9: pool 'secure' uses tls; a connect route tunnels raw TCP to its "
              "servers and needs a pool without tls"});
}

TEST_CASE("a tcp listener's sni map", "[config][tunnel]") {
  LoadResult r = load(R"(
listeners:
  - name: tls
    bind: 127.0.0.1:8443
    mode: tcp
    pool: other
    sni: { API.example.com: api, "*.example.com": web }
pools:
  api: { servers: [10.0.0.1:443] }
  web: { servers: [10.0.0.2:443] }
  other: { servers: [10.0.0.3:443] }
)");
  for (const Diagnostic& d : r.diagnostics) INFO(d.to_string());
  REQUIRE(r.ok());
  const auto& sni = r.config->listeners.at(0).sni;
  REQUIRE(sni.size() == 2);
  CHECK(sni[0].name == "api.example.com");  // names are compared ignoring case
  CHECK(sni[0].pool == "api");
  CHECK(sni[1].name == "*.example.com");
  CHECK(sni[1].pool == "web");

  CHECK(errors_of(R"(
listeners:
  - { name: tls, bind: 127.0.0.1:8443, mode: tcp, pool: other, sni: { "a b": api, x.example: apx } }
pools:
  api: { servers: [10.0.0.1:443] }
  other: { servers: [10.0.0.3:443] }
)") == Errors{"test.yaml:2:71: invalid sni name 'a b'; expected a DNS name or *.suffix",
              "test.yaml:2:94: unknown pool 'apx'; did you mean 'api'?"});
  CHECK(errors_of(R"(
listeners:
  - { name: web, bind: 127.0.0.1:8080, routes: main, sni: { a.example: app } }
routes:
  main: [{ pool: app }]
pools:
  app: { servers: [10.0.0.1:80] }
)") == Errors{"test.yaml:2:59: 'sni' is only allowed on a listener with mode tcp (a TLS listener "
              "chooses its certificate by SNI, and its routes can match the Host)"});
  CHECK(errors_of(R"(
listeners:
  - { name: tls, bind: 127.0.0.1:8443, mode: tcp, pool: other, sni: { a.example: secure } }
pools:
  secure: { servers: [10.0.0.1:443], tls: {} }
  other: { servers: [10.0.0.3:443] }
)") == Errors{"test.yaml:2:82: pool 'secure' speaks TLS to its servers; a tcp listener forwards "
              "bytes as they are and cannot use it"});
}
