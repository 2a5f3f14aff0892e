// The routing language of the config loader: `match` trees and the route actions beyond pool and
// respond (split, redirect, goto), header edits and path rewrites.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_loader.h"

namespace {

using namespace switchyard::config;
using Errors = std::vector<std::string>;
using Kind = Match::Kind;
using Op = ValueTest::Op;
using Strings = std::vector<std::string>;

// The rest of a valid file, appended after the test's own `routes:` text so that line N of the
// test's literal is line N in the messages. Tables must include `main`.
constexpr std::string_view kRest = R"(listeners: [{name: web, bind: 127.0.0.1:8080, routes: main}]
pools:
  app: {servers: [127.0.0.1:9001]}
  api: {servers: [127.0.0.1:9002]}
  api-canary: {servers: [127.0.0.1:9003]}
  static: {servers: [127.0.0.1:9004]}
)";

std::string with_rest(std::string_view routes) {
  if (!routes.empty() && routes.front() == '\n') routes.remove_prefix(1);
  return std::string(routes) + std::string(kRest);
}

Errors errors_of(std::string_view routes) {
  const LoadResult result = load_string(with_rest(routes), "test.yaml");
  Errors out;
  for (const Diagnostic& d : result.diagnostics) out.push_back(d.to_string());
  CHECK((result.config == nullptr) == !result.diagnostics.empty());
  return out;
}

std::shared_ptr<const Config> load_ok(std::string_view routes) {
  const LoadResult result = load_string(with_rest(routes), "test.yaml");
  Errors errors;
  for (const Diagnostic& d : result.diagnostics) errors.push_back(d.to_string());
  REQUIRE(errors == Errors{});
  REQUIRE(result.config != nullptr);
  return result.config;
}

const std::vector<Route>& table(const Config& c, const std::string& name) {
  REQUIRE(c.routes.count(name) == 1);
  return c.routes.at(name).routes;
}

// The match of the only route of table `main` in `routes`.
Match only_match(std::string_view routes) {
  auto config = load_ok(routes);
  const auto& main = table(*config, "main");
  REQUIRE(main.size() >= 1);
  REQUIRE(main[0].match.has_value());
  return *main[0].match;
}

// A single-route table "main" with the given match and pool app, then a catch-all.
std::string route_with(std::string_view match) {
  return "routes:\n  main:\n    - match: " + std::string(match) +
         "\n      pool: app\n    - respond: {status: 404}\n";
}

// The error for a match written at line 3, column 14 (see route_with).
Errors match_errors(std::string_view match) {
  return errors_of(route_with(match));
}

bool same_mark(const SourceMark& m, int line, int column) {
  return m.line == line && m.column == column;
}

std::string address_text(const Cidr& c) {
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(c.family, c.address, buffer, sizeof buffer);
  return buffer;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The full routing example

TEST_CASE("the routing example loads into the model", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - match: { host: api.example.com, path_prefix: /v1/, method: [GET, POST] }
      pool: api
    - match: { header: { x-canary: "1" } }
      split: [ { pool: api-canary, weight: 10 }, { pool: api, weight: 90 } ]
      sticky: { cookie: uid }
    - match: { path_regex: "^/static/.+\\.(css|js)$" }
      pool: static
      response_headers: { set: { cache-control: "max-age=3600" } }
    - match: { any: [ { host: old.example.com }, { host: "*.old.example.com" } ] }
      redirect: { status: 301, scheme: https, host: new.example.com }
    - match: { path_prefix: /api/ }
      goto: api_routes
    - match: { not: { source: [10.0.0.0/8, "fd00::/8"] }, path_prefix: /admin }
      respond: { status: 403, body: "forbidden\n" }
    - match: { path_prefix: /v1/ }
      rewrite: { path_prefix: { from: /v1/, to: /api/v1/ } }
      request_headers: { set: { x-version: "1" }, add: { x-trace: "on" }, remove: [cookie] }
      pool: api
    - respond: { status: 404, body: "no route\n" }
  api_routes:
    - match: { path_regex: "^/api/(.*)$" }
      rewrite: { path_regex: { pattern: "^/old/(.*)$", replace: "/new/\\1" } }
      pool: api
)");
  const auto& routes = table(*config, "main");
  REQUIRE(routes.size() == 8);

  // 1: host + path_prefix + method -> kAll of three, in document order.
  {
    const Route& r = routes[0];
    CHECK(same_mark(r.mark, 3, 7));
    REQUIRE(r.match.has_value());
    const Match& m = *r.match;
    CHECK(m.kind == Kind::kAll);
    CHECK(same_mark(m.mark, 3, 14));
    REQUIRE(m.children.size() == 3);
    CHECK(m.children[0].kind == Kind::kHost);
    CHECK(m.children[0].patterns == Strings{"api.example.com"});
    CHECK(same_mark(m.children[0].mark, 3, 16));
    CHECK(m.children[1].kind == Kind::kPathPrefix);
    CHECK(m.children[1].patterns == Strings{"/v1/"});
    CHECK(same_mark(m.children[1].mark, 3, 39));
    CHECK(m.children[2].kind == Kind::kMethod);
    CHECK(m.children[2].patterns == Strings{"GET", "POST"});
    CHECK(r.pool == "api");
    CHECK_FALSE(r.split.has_value());
    CHECK_FALSE(r.redirect.has_value());
    CHECK_FALSE(r.respond.has_value());
    CHECK_FALSE(r.go_to.has_value());
    CHECK(r.request_headers.empty());
    CHECK(r.response_headers.empty());
    CHECK(r.rewrite.kind == PathRewrite::Kind::kNone);
  }
  // 2: a single header test is the matcher itself; a weighted, sticky split.
  {
    const Route& r = routes[1];
    const Match& m = *r.match;
    CHECK(m.kind == Kind::kHeader);
    CHECK(m.name == "x-canary");
    CHECK(m.test.op == Op::kExact);
    CHECK(m.test.value == "1");
    CHECK(same_mark(m.mark, 5, 26));
    CHECK_FALSE(r.pool.has_value());
    REQUIRE(r.split.has_value());
    REQUIRE(r.split->pools.size() == 2);
    CHECK(r.split->pools[0].pool == "api-canary");
    CHECK(r.split->pools[0].weight == 10);
    CHECK(r.split->pools[1].pool == "api");
    CHECK(r.split->pools[1].weight == 90);
    CHECK(r.split->sticky_on == Split::StickyOn::kCookie);
    CHECK(r.split->sticky_name == "uid");
  }
  // 3: a regex (YAML unescapes "\\." to "\.") and response header edits.
  {
    const Route& r = routes[2];
    CHECK(r.match->kind == Kind::kPathRegex);
    CHECK(r.match->patterns == Strings{R"(^/static/.+\.(css|js)$)"});
    CHECK(r.pool == "static");
    REQUIRE(r.response_headers.set.size() == 1);
    CHECK(r.response_headers.set[0].name == "cache-control");
    CHECK(r.response_headers.set[0].value == "max-age=3600");
    CHECK(r.response_headers.add.empty());
    CHECK(r.response_headers.remove.empty());
    CHECK(r.request_headers.empty());
  }
  // 4: any of two hosts; a redirect keeping the request's path and query.
  {
    const Route& r = routes[3];
    const Match& m = *r.match;
    CHECK(m.kind == Kind::kAny);
    CHECK(same_mark(m.mark, 11, 16));
    REQUIRE(m.children.size() == 2);
    CHECK(m.children[0].kind == Kind::kHost);
    CHECK(m.children[0].patterns == Strings{"old.example.com"});
    CHECK(m.children[1].patterns == Strings{"*.old.example.com"});
    REQUIRE(r.redirect.has_value());
    CHECK(r.redirect->status == 301);
    CHECK(r.redirect->scheme == "https");
    CHECK(r.redirect->host == "new.example.com");
    CHECK_FALSE(r.redirect->path.has_value());
    CHECK_FALSE(r.redirect->query.has_value());
  }
  // 5: goto.
  {
    const Route& r = routes[4];
    CHECK(r.match->kind == Kind::kPathPrefix);
    CHECK(r.go_to == "api_routes");
  }
  // 6: not(source) + path_prefix; respond.
  {
    const Route& r = routes[5];
    const Match& m = *r.match;
    CHECK(m.kind == Kind::kAll);
    REQUIRE(m.children.size() == 2);
    const Match& negation = m.children[0];
    CHECK(negation.kind == Kind::kNot);
    REQUIRE(negation.children.size() == 1);
    const Match& source = negation.children[0];
    CHECK(source.kind == Kind::kSource);
    REQUIRE(source.cidrs.size() == 2);
    CHECK(source.cidrs[0].family == AF_INET);
    CHECK(source.cidrs[0].prefix_length == 8);
    CHECK(source.cidrs[0].text == "10.0.0.0/8");
    CHECK(address_text(source.cidrs[0]) == "10.0.0.0");
    CHECK(source.cidrs[1].family == AF_INET6);
    CHECK(source.cidrs[1].prefix_length == 8);
    CHECK(source.cidrs[1].text == "fd00::/8");
    CHECK(address_text(source.cidrs[1]) == "fd00::");
    CHECK(m.children[1].kind == Kind::kPathPrefix);
    CHECK(m.children[1].patterns == Strings{"/admin"});
    REQUIRE(r.respond.has_value());
    CHECK(r.respond->status == 403);
    CHECK(r.respond->body == "forbidden\n");
  }
  // 7: prefix rewrite and request header edits.
  {
    const Route& r = routes[6];
    CHECK(r.rewrite.kind == PathRewrite::Kind::kPrefix);
    CHECK(r.rewrite.from == "/v1/");
    CHECK(r.rewrite.to == "/api/v1/");
    REQUIRE(r.request_headers.set.size() == 1);
    CHECK(r.request_headers.set[0].name == "x-version");
    CHECK(r.request_headers.set[0].value == "1");
    REQUIRE(r.request_headers.add.size() == 1);
    CHECK(r.request_headers.add[0].name == "x-trace");
    CHECK(r.request_headers.add[0].value == "on");
    CHECK(r.request_headers.remove == Strings{"cookie"});
    CHECK(r.pool == "api");
  }
  // 8: the catch-all.
  {
    const Route& r = routes[7];
    CHECK_FALSE(r.match.has_value());
    REQUIRE(r.respond.has_value());
    CHECK(r.respond->status == 404);
  }
  // The jump target, with a regex rewrite.
  const auto& api = table(*config, "api_routes");
  REQUIRE(api.size() == 1);
  CHECK(api[0].rewrite.kind == PathRewrite::Kind::kRegex);
  CHECK(api[0].rewrite.from == "^/old/(.*)$");
  CHECK(api[0].rewrite.to == R"(/new/\1)");
}

// ---------------------------------------------------------------------------------------------
// Matchers: happy paths

TEST_CASE("host patterns are lower-cased and may be a list or a wildcard", "[config][routing]") {
  Match m = only_match(route_with(R"({host: [Example.COM, "*.Example.com", "[::1]", 10.0.0.1]})"));
  CHECK(m.kind == Kind::kHost);
  CHECK(m.patterns == Strings{"example.com", "*.example.com", "[::1]", "10.0.0.1"});
  CHECK(same_mark(m.mark, 3, 15));
}

TEST_CASE("path and path_prefix take a string or a list of normalised paths", "[config][routing]") {
  Match m = only_match(route_with(R"({path: /exact})"));
  CHECK(m.kind == Kind::kPath);
  CHECK(m.patterns == Strings{"/exact"});
  m = only_match(route_with(R"({path: [/, /a/b/, "/a%2Fb", "/%C3%A9"]})"));
  CHECK(m.patterns == Strings{"/", "/a/b/", "/a%2Fb", "/%C3%A9"});
  m = only_match(route_with(R"({path_prefix: [/v1/, /v2]})"));
  CHECK(m.kind == Kind::kPathPrefix);
  CHECK(m.patterns == Strings{"/v1/", "/v2"});
}

TEST_CASE("path_regex is one RE2 pattern", "[config][routing]") {
  Match m = only_match(route_with(R"({path_regex: '^/u/(?P<id>\d+)$'})"));
  CHECK(m.kind == Kind::kPathRegex);
  CHECK(m.patterns == Strings{R"(^/u/(?P<id>\d+)$)"});
}

TEST_CASE("method takes one method or a list", "[config][routing]") {
  Match m = only_match(route_with("{method: DELETE}"));
  CHECK(m.kind == Kind::kMethod);
  CHECK(m.patterns == Strings{"DELETE"});
  m = only_match(route_with("{method: [GET, HEAD, PURGE]}"));
  CHECK(m.patterns == Strings{"GET", "HEAD", "PURGE"});
}

TEST_CASE("header, query and cookie tests take every test form", "[config][routing]") {
  Match m = only_match(R"(
routes:
  main:
    - match:
        header:
          X-Canary: "1"
          x-debug: {present: true}
          x-internal: {present: false}
          user-agent: {regex: "(?i)bot"}
          accept: {exact: text/html}
      pool: app
)");
  CHECK(m.kind == Kind::kAll);
  CHECK(same_mark(m.mark, 4, 9));
  REQUIRE(m.children.size() == 5);
  for (const Match& c : m.children) CHECK(c.kind == Kind::kHeader);
  CHECK(m.children[0].name == "x-canary");  // header names are stored lower-cased
  CHECK(same_mark(m.children[0].mark, 5, 11));
  CHECK(m.children[0].test.op == Op::kExact);
  CHECK(m.children[0].test.value == "1");
  CHECK(m.children[1].test.op == Op::kPresent);
  CHECK(m.children[2].name == "x-internal");
  CHECK(m.children[2].test.op == Op::kAbsent);
  CHECK(m.children[3].test.op == Op::kRegex);
  CHECK(m.children[3].test.value == "(?i)bot");
  CHECK(m.children[4].test.op == Op::kExact);
  CHECK(m.children[4].test.value == "text/html");

  m = only_match(route_with(R"({query: {Page: "2", "a b": {present: true}, q: {regex: "^x"}}})"));
  CHECK(m.kind == Kind::kAll);
  REQUIRE(m.children.size() == 3);
  CHECK(m.children[0].kind == Kind::kQuery);
  CHECK(m.children[0].name == "Page");  // query names are exact
  CHECK(m.children[1].name == "a b");
  CHECK(m.children[1].test.op == Op::kPresent);
  CHECK(m.children[2].test.op == Op::kRegex);

  m = only_match(route_with(R"({cookie: {SessionID: {present: false}}})"));
  CHECK(m.kind == Kind::kCookie);
  CHECK(m.name == "SessionID");
  CHECK(m.test.op == Op::kAbsent);
  m = only_match(route_with(R"({cookie: {beta: {exact: "yes"}}})"));
  CHECK(m.test.op == Op::kExact);
  CHECK(m.test.value == "yes");
  m = only_match(route_with(R"({cookie: {uid: {regex: "^[0-9]+$"}}})"));
  CHECK(m.kind == Kind::kCookie);
  CHECK(m.test.op == Op::kRegex);
  CHECK(m.test.value == "^[0-9]+$");
}

TEST_CASE("source takes CIDR prefixes and bare addresses", "[config][routing]") {
  Match m = only_match(
      route_with(R"({source: [192.168.1.7, "::1", 0.0.0.0/0, "2001:db8::/32", 172.16.0.0/12]})"));
  CHECK(m.kind == Kind::kSource);
  REQUIRE(m.cidrs.size() == 5);
  CHECK(m.cidrs[0].family == AF_INET);
  CHECK(m.cidrs[0].prefix_length == 32);
  CHECK(m.cidrs[0].text == "192.168.1.7");
  const std::uint8_t v4[] = {192, 168, 1, 7};
  CHECK(std::memcmp(m.cidrs[0].address, v4, 4) == 0);
  CHECK(m.cidrs[1].family == AF_INET6);
  CHECK(m.cidrs[1].prefix_length == 128);
  CHECK(m.cidrs[1].address[15] == 1);
  CHECK(m.cidrs[2].prefix_length == 0);
  CHECK(m.cidrs[3].family == AF_INET6);
  CHECK(m.cidrs[3].prefix_length == 32);
  CHECK(address_text(m.cidrs[3]) == "2001:db8::");
  CHECK(m.cidrs[4].prefix_length == 12);
  CHECK(address_text(m.cidrs[4]) == "172.16.0.0");
}

TEST_CASE("all, any and not nest, and every node has its position", "[config][routing]") {
  Match m = only_match(R"(
routes:
  main:
    - match:
        all:
          - {method: GET}
          - any:
              - {host: a.example}
              - {not: {path_prefix: /private/}, header: {x-ok: "1"}}
      pool: app
)");
  CHECK(m.kind == Kind::kAll);
  CHECK(same_mark(m.mark, 4, 9));
  REQUIRE(m.children.size() == 2);
  CHECK(m.children[0].kind == Kind::kMethod);
  CHECK(same_mark(m.children[0].mark, 5, 14));
  const Match& any = m.children[1];
  CHECK(any.kind == Kind::kAny);
  CHECK(same_mark(any.mark, 6, 13));
  REQUIRE(any.children.size() == 2);
  CHECK(any.children[0].kind == Kind::kHost);
  CHECK(same_mark(any.children[0].mark, 7, 18));
  const Match& both = any.children[1];
  CHECK(both.kind == Kind::kAll);
  CHECK(same_mark(both.mark, 8, 17));
  REQUIRE(both.children.size() == 2);
  CHECK(both.children[0].kind == Kind::kNot);
  CHECK(same_mark(both.children[0].mark, 8, 18));
  REQUIRE(both.children[0].children.size() == 1);
  CHECK(both.children[0].children[0].kind == Kind::kPathPrefix);
  CHECK(same_mark(both.children[0].children[0].mark, 8, 24));
  CHECK(both.children[1].kind == Kind::kHeader);
  CHECK(same_mark(both.children[1].mark, 8, 58));
}

// ---------------------------------------------------------------------------------------------
// Actions: happy paths

TEST_CASE("split weights default to 1 and sticky may use a header", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - split: [{pool: app}, {pool: api, weight: 0}, {pool: static, weight: 1000}]
      sticky: {header: X-User}
)");
  const Route& r = table(*config, "main")[0];
  REQUIRE(r.split.has_value());
  REQUIRE(r.split->pools.size() == 3);
  CHECK(r.split->pools[0].weight == 1);
  CHECK(r.split->pools[1].weight == 0);
  CHECK(r.split->pools[2].weight == 1000);
  CHECK(r.split->sticky_on == Split::StickyOn::kHeader);
  CHECK(r.split->sticky_name == "x-user");
}

TEST_CASE("a split without sticky draws per request", "[config][routing]") {
  auto config = load_ok("routes:\n  main:\n    - split: [{pool: app, weight: 3}]\n");
  const Route& r = table(*config, "main")[0];
  CHECK(r.split->sticky_on == Split::StickyOn::kNone);
  CHECK(r.split->sticky_name.empty());
}

TEST_CASE("redirect defaults to 302 and takes templates", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - match: {host: www.example.com}
      redirect: {host: "example.com", path: "/www{path}", query: "from=www&{query}"}
    - match: {host: example.com}
      redirect: {status: 308, scheme: "{scheme}", path: "{path}/", query: ""}
    - redirect: {scheme: HTTPS}
)");
  const auto& routes = table(*config, "main");
  REQUIRE(routes[0].redirect.has_value());
  CHECK(routes[0].redirect->status == 302);
  CHECK_FALSE(routes[0].redirect->scheme.has_value());
  CHECK(routes[0].redirect->host == "example.com");
  CHECK(routes[0].redirect->path == "/www{path}");
  CHECK(routes[0].redirect->query == "from=www&{query}");
  CHECK(routes[1].redirect->status == 308);
  CHECK(routes[1].redirect->scheme == "{scheme}");
  CHECK(routes[1].redirect->query == "");
  CHECK(routes[2].redirect->scheme == "https");  // schemes are stored lower-cased
  for (int status : {301, 302, 303, 307, 308}) {
    auto c = load_ok("routes:\n  main:\n    - redirect: {status: " + std::to_string(status) +
                     ", scheme: https}\n");
    CHECK(table(*c, "main")[0].redirect->status == status);
  }
}

TEST_CASE("a goto may fall through, so routes after it stay reachable", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - goto: first
    - goto: second
    - pool: app
  first:
    - {match: {host: a.example}, pool: app}
  second:
    - {match: {host: b.example}, goto: third}
  third:
    - {match: {method: GET}, pool: api}
)");
  const auto& main = table(*config, "main");
  REQUIRE(main.size() == 3);
  CHECK(main[0].go_to == "first");
  CHECK_FALSE(main[0].match.has_value());
  CHECK(main[1].go_to == "second");
  CHECK(table(*config, "second")[0].go_to == "third");
}

TEST_CASE("header edits keep names as written and remove names lower-cased", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - pool: app
      request_headers:
        set: {X-Forwarded-Host: example.com, Host: backend.internal}
        add: {X-Tag: a, x-tag: b}
        remove: X-Debug
      response_headers: {remove: [Server, x-powered-by]}
)");
  const Route& r = table(*config, "main")[0];
  REQUIRE(r.request_headers.set.size() == 2);
  CHECK(r.request_headers.set[0].name == "X-Forwarded-Host");
  CHECK(r.request_headers.set[0].value == "example.com");
  CHECK(r.request_headers.set[1].name == "Host");
  REQUIRE(r.request_headers.add.size() == 2);  // several fields of one name may be added
  CHECK(r.request_headers.add[1].name == "x-tag");
  CHECK(r.request_headers.add[1].value == "b");
  CHECK(r.request_headers.remove == Strings{"x-debug"});
  CHECK(r.response_headers.remove == Strings{"server", "x-powered-by"});
  CHECK(r.response_headers.set.empty());
}

TEST_CASE("rewrites, header edits and sticky work with split", "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - split: [{pool: app, weight: 1}, {pool: api, weight: 1}]
      sticky: {cookie: uid}
      rewrite: {path_regex: {pattern: '^/(a|b)/(\d+)$', replace: '/\2/\1/\0\\'}}
      request_headers: {add: {x-split: "yes"}}
)");
  const Route& r = table(*config, "main")[0];
  CHECK(r.rewrite.kind == PathRewrite::Kind::kRegex);
  CHECK(r.rewrite.to == R"(/\2/\1/\0\\)");
  CHECK(r.request_headers.add.size() == 1);
}

// ---------------------------------------------------------------------------------------------
// Route structure errors

TEST_CASE("a route needs exactly one action, whichever they are", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a.example}
    - {pool: app, goto: other}
    - {match: {host: b}, split: [{pool: app}], redirect: {scheme: https}, respond: {}}
    - {sticky: {cookie: a}}
  other: [{pool: app}]
)") == Errors{"test.yaml:3:7: route needs exactly one of pool, split, redirect, respond, goto",
              "test.yaml:4:7: route needs exactly one of pool, split, redirect, respond, goto",
              "test.yaml:5:7: route needs exactly one of pool, split, redirect, respond, goto",
              "test.yaml:6:7: route needs exactly one of pool, split, redirect, respond, goto"});
}

TEST_CASE("sticky is only allowed with split", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a.example}, pool: app, sticky: {cookie: uid}}
    - pool: app
)") == Errors{"test.yaml:3:45: sticky is only allowed with split"});
}

TEST_CASE("header edits and rewrites are only allowed with pool or split", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a.example}
      respond: {status: 200}
      request_headers: {remove: [cookie]}
      response_headers: {set: {x-a: b}}
    - match: {host: b.example}
      redirect: {scheme: https}
      rewrite: {path_prefix: {from: /a/, to: /b/}}
    - pool: app
)") == Errors{"test.yaml:5:7: request_headers is only allowed with pool or split",
              "test.yaml:6:7: response_headers is only allowed with pool or split",
              "test.yaml:9:7: rewrite is only allowed with pool or split"});
}

TEST_CASE("unknown keys in a route list every route key", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {pool: app, zzzzzzzz: 1}
    - {pool: app, mtach: {host: a}}
    - {pool: app, rewite: {}}
)") == Errors{"test.yaml:3:19: unknown key 'zzzzzzzz' in route; expected one of: match, pool, "
              "split, redirect, respond, goto, sticky, request_headers, response_headers, rewrite, "
              "fallback, handoff, connect, per_connection",
              "test.yaml:4:19: unknown key 'mtach' in route; did you mean 'match'?",
              "test.yaml:5:19: unknown key 'rewite' in route; did you mean 'rewrite'?"});
}

TEST_CASE("a route with a misspelt key does not make later routes unreachable",
          "[config][routing]") {
  // The typo may be `match`; reporting every following route as unreachable would be noise.
  CHECK(errors_of(R"(
routes:
  main:
    - {macth: {host: a.example}, pool: app}
    - pool: app
)") == Errors{"test.yaml:3:8: unknown key 'macth' in route; did you mean 'match'?"});
}

TEST_CASE("a route without match after a catch-all is unreachable, a matched one too",
          "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - redirect: {scheme: https}
    - {match: {host: a.example}, pool: app}
    - split: [{pool: app}]
)") == Errors{"test.yaml:4:7: unreachable route: the route at line 3 matches every request",
              "test.yaml:5:7: unreachable route: the route at line 3 matches every request"});
}

// ---------------------------------------------------------------------------------------------
// Match structure errors

TEST_CASE("an empty match is an error, also inside any and not", "[config][routing]") {
  CHECK(match_errors("{}") == Errors{"test.yaml:3:14: empty match"});
  CHECK(match_errors("{any: [{}], not: {}}") ==
        Errors{"test.yaml:3:21: empty match", "test.yaml:3:31: empty match"});
}

TEST_CASE("match must be a map of matchers", "[config][routing]") {
  CHECK(match_errors("[{host: a}]") == Errors{"test.yaml:3:14: expected a map, got a list"});
  CHECK(match_errors("{hots: a}") ==
        Errors{"test.yaml:3:15: unknown key 'hots' in match; did you mean 'host'?"});
  CHECK(match_errors("{zzzzzzzz: a}") ==
        Errors{"test.yaml:3:15: unknown key 'zzzzzzzz' in match; expected one of: host, path, "
               "path_prefix, path_regex, method, header, query, cookie, source, all, any, not"});
  CHECK(match_errors("{not: [{host: a}]}") == Errors{"test.yaml:3:20: expected a map, got a list"});
}

TEST_CASE("all and any need a non-empty list of matches", "[config][routing]") {
  CHECK(match_errors("{any: []}") == Errors{"test.yaml:3:20: any needs at least one match"});
  CHECK(match_errors("{all: []}") == Errors{"test.yaml:3:20: all needs at least one match"});
  CHECK(match_errors("{any: {host: a}}") == Errors{"test.yaml:3:20: expected a list, got a map"});
  CHECK(match_errors("{all: [host]}") == Errors{"test.yaml:3:21: expected a map, got 'host'"});
}

TEST_CASE("string matchers take a string or a non-empty list of strings", "[config][routing]") {
  CHECK(match_errors("{host: []}") == Errors{"test.yaml:3:21: host needs at least one value"});
  CHECK(match_errors("{method: {GET: 1}}") ==
        Errors{"test.yaml:3:23: expected a string or a list of strings, got a map"});
  CHECK(match_errors("{path: [/a, [/b]]}") ==
        Errors{"test.yaml:3:26: expected a string, got a list"});
  CHECK(match_errors("{path_regex: [^/a]}") ==
        Errors{"test.yaml:3:27: expected a string, got a list"});
}

// ---------------------------------------------------------------------------------------------
// Matcher value errors

TEST_CASE("host patterns are checked", "[config][routing]") {
  CHECK(match_errors(R"({host: ""})") == Errors{"test.yaml:3:21: host pattern must not be empty"});
  CHECK(match_errors(R"({host: "*"})") ==
        Errors{"test.yaml:3:21: host pattern '*' matches every host; leave out host instead"});
  CHECK(match_errors(R"({host: [a.example, "example.com:8080"]})") ==
        Errors{"test.yaml:3:33: host pattern 'example.com:8080' must not include a port; ports "
               "are ignored when matching hosts"});
  CHECK(match_errors(R"({host: "[::1]:80"})") ==
        Errors{"test.yaml:3:21: host pattern '[::1]:80' must not include a port; ports are "
               "ignored when matching hosts"});
  CHECK(match_errors(R"({host: "[nope]"})") ==
        Errors{"test.yaml:3:21: invalid host pattern '[nope]': expected a name or a bracketed "
               "IPv6 address"});
  CHECK(match_errors(R"({host: "a.*.example"})") ==
        Errors{"test.yaml:3:21: invalid host pattern 'a.*.example': '*' is only allowed as a "
               "leading '*.'"});
  CHECK(match_errors(R"({host: "*example.com"})") ==
        Errors{"test.yaml:3:21: invalid host pattern '*example.com': '*' is only allowed as a "
               "leading '*.'"});
  CHECK(match_errors(R"({host: [a.example, "Example.COM."]})") ==
        Errors{"test.yaml:3:33: host pattern 'Example.COM.' must not end with '.'; did you mean "
               "'Example.COM'?"});
  CHECK(match_errors(R"({host: "*."})") ==
        Errors{"test.yaml:3:21: invalid host pattern '*.': no name after '*.'"});
  CHECK(match_errors(R"({host: "https//example.com"})") ==
        Errors{"test.yaml:3:21: invalid character '/' in host pattern 'https//example.com'"});
}

TEST_CASE("path patterns must be normalised absolute paths", "[config][routing]") {
  CHECK(match_errors("{path: api}") ==
        Errors{"test.yaml:3:21: path pattern 'api' must start with '/'"});
  CHECK(match_errors("{path_prefix: [/ok, v1/]}") ==
        Errors{"test.yaml:3:34: path pattern 'v1/' must start with '/'"});
  CHECK(match_errors(R"({path: "/search?q=1"})") ==
        Errors{"test.yaml:3:21: path pattern '/search?q=1' must not contain '?': the query is "
               "not part of the path; match it with query"});
  CHECK(match_errors(R"({path: "/a b"})") ==
        Errors{"test.yaml:3:21: path pattern '/a b' contains '\\x20'; write it percent-encoded "
               "as %20"});
  CHECK(match_errors(R"({path_prefix: "/a#b"})") ==
        Errors{"test.yaml:3:28: path pattern '/a#b' contains '#'; write it percent-encoded as "
               "%23"});
  CHECK(match_errors(R"({path: "/a%2"})") ==
        Errors{"test.yaml:3:21: path pattern '/a%2' has a malformed percent-escape; '%' must be "
               "followed by two hex digits"});
  CHECK(match_errors(R"({path: "/a%zz"})") ==
        Errors{"test.yaml:3:21: path pattern '/a%zz' has a malformed percent-escape; '%' must "
               "be followed by two hex digits"});
}

TEST_CASE("path patterns that are not normalised suggest their normal form", "[config][routing]") {
  const std::pair<const char*, const char*> cases[] = {
      {"/a/b/../c", "/a/c"},  {"/a/./b", "/a/b"},   {"//a///b", "/a/b"},    {"/a/.", "/a/"},
      {"/a/b/..", "/a/"},     {"/..", "/"},         {"/../a", "/a"},        {"/%7Euser", "/~user"},
      {"/%61%2d%5F", "/a-_"}, {"/a%2fb", "/a%2Fb"}, {"/%2e%2E/x", "/x"},    {"/a/%2E/b", "/a/b"},
      {"/a//", "/a/"},        {"/a/..//b", "/b"},   {"/%c3%a9", "/%C3%A9"},
  };
  for (const auto& [pattern, normal] : cases) {
    INFO(pattern);
    CHECK(match_errors(std::string("{path_prefix: \"") + pattern + "\"}") ==
          Errors{std::string("test.yaml:3:28: path pattern is not normalised; did you mean '") +
                 normal + "'?"});
  }
}

TEST_CASE("path_regex must be a valid RE2 pattern", "[config][routing]") {
  CHECK(match_errors(R"({path_regex: "^/(a"})") ==
        Errors{"test.yaml:3:27: invalid regex: missing ): ^/(a"});
  CHECK(match_errors(R"y({path_regex: "^/(?=a)"})y") ==
        Errors{"test.yaml:3:27: invalid regex: invalid perl operator: (?="});
  CHECK(match_errors(R"({path_regex: "(a)\\1"})") ==
        Errors{"test.yaml:3:27: invalid regex: invalid escape sequence: \\1"});
}

TEST_CASE("methods are upper-case letters", "[config][routing]") {
  CHECK(match_errors("{method: get}") ==
        Errors{"test.yaml:3:23: method names are case-sensitive; did you mean 'GET'?"});
  CHECK(match_errors("{method: [GET, Post]}") ==
        Errors{"test.yaml:3:29: method names are case-sensitive; did you mean 'POST'?"});
  CHECK(match_errors(R"({method: ["G3T", "", M-SEARCH]})") ==
        Errors{"test.yaml:3:24: invalid method 'G3T'; a method is upper-case letters, e.g. GET",
               "test.yaml:3:31: invalid method ''; a method is upper-case letters, e.g. GET",
               "test.yaml:3:35: invalid method 'M-SEARCH'; a method is upper-case letters, e.g. "
               "GET"});
}

TEST_CASE("header, query and cookie names are checked", "[config][routing]") {
  CHECK(match_errors(R"({header: {"x y": "1"}})") ==
        Errors{"test.yaml:3:24: invalid header name 'x y'"});
  CHECK(match_errors(R"({cookie: {"a;b": "1"}})") ==
        Errors{"test.yaml:3:24: invalid cookie name 'a;b'"});
  CHECK(match_errors(R"({query: {"": "1"}})") ==
        Errors{"test.yaml:3:23: query parameter name must not be empty"});
  CHECK(match_errors("{header: {}}") == Errors{"test.yaml:3:23: header needs at least one name"});
  CHECK(match_errors("{query: [a]}") == Errors{"test.yaml:3:22: expected a map, got a list"});
}

TEST_CASE("value tests need exactly one of present, exact or regex", "[config][routing]") {
  CHECK(match_errors("{header: {x-a: {}}}") ==
        Errors{"test.yaml:3:29: a header test needs exactly one of present, exact, regex"});
  CHECK(match_errors("{query: {a: {present: true, exact: b}}}") ==
        Errors{"test.yaml:3:26: a query test needs exactly one of present, exact, regex"});
  CHECK(match_errors("{header: {x-a: {exat: b}}}") ==
        Errors{"test.yaml:3:30: unknown key 'exat' in header test; did you mean 'exact'?"});
  CHECK(match_errors("{header: {x-a: [b]}}") ==
        Errors{"test.yaml:3:29: expected a string or a map with present, exact or regex, got a "
               "list"});
  CHECK(match_errors("{header: {x-a: }}") ==
        Errors{"test.yaml:3:24: expected a string or a map with present, exact or regex, got "
               "nothing"});
  CHECK(match_errors("{header: {x-a: {present: yes}}}") ==
        Errors{"test.yaml:3:39: expected true or false, got 'yes'"});
  CHECK(match_errors("{header: {x-a: {regex: '(('}}}") ==
        Errors{"test.yaml:3:37: invalid regex: missing ): (("});
}

TEST_CASE("source prefixes are checked", "[config][routing]") {
  CHECK(match_errors("{source: 10.0.0.1/8}") ==
        Errors{"test.yaml:3:23: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"});
  CHECK(match_errors(R"({source: ["fd00::1/8", 192.168.1.1/23]})") ==
        Errors{"test.yaml:3:24: fd00::1/8 has host bits set; did you mean fd00::/8?",
               "test.yaml:3:37: 192.168.1.1/23 has host bits set; did you mean 192.168.0.0/23?"});
  CHECK(match_errors(R"({source: [10.0.0.0/33, "::/129", 10.0.0.0/, 10.0.0.0/x, 1.2.3.4/-1]})") ==
        Errors{"test.yaml:3:24: invalid prefix length in '10.0.0.0/33': expected 0..32",
               "test.yaml:3:37: invalid prefix length in '::/129': expected 0..128",
               "test.yaml:3:47: invalid prefix length in '10.0.0.0/': expected 0..32",
               "test.yaml:3:58: invalid prefix length in '10.0.0.0/x': expected 0..32",
               "test.yaml:3:70: invalid prefix length in '1.2.3.4/-1': expected 0..32"});
  CHECK(match_errors(R"({source: [localhost, 10.0.0/8, ""]})") ==
        Errors{"test.yaml:3:24: invalid source 'localhost': expected an IP address or a CIDR "
               "prefix, e.g. 10.0.0.0/8 or fd00::/8",
               "test.yaml:3:35: invalid source '10.0.0/8': expected an IP address or a CIDR "
               "prefix, e.g. 10.0.0.0/8 or fd00::/8",
               "test.yaml:3:45: invalid source '': expected an IP address or a CIDR prefix, e.g. "
               "10.0.0.0/8 or fd00::/8"});
}

TEST_CASE("every error inside one match is reported", "[config][routing]") {
  CHECK(match_errors(R"({host: "*", method: get, any: [{path: x}, {source: 10.0.0.1/8}]})") ==
        Errors{"test.yaml:3:21: host pattern '*' matches every host; leave out host instead",
               "test.yaml:3:34: method names are case-sensitive; did you mean 'GET'?",
               "test.yaml:3:52: path pattern 'x' must start with '/'",
               "test.yaml:3:65: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"});
}

// ---------------------------------------------------------------------------------------------
// Action errors

TEST_CASE("split entries are checked", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a}
      split: []
    - match: {host: b}
      split: {pool: app}
    - match: {host: c}
      split: [{pool: app, weight: 1001}, {weight: 1}, {pool: app, wieght: 2}]
    - match: {host: d}
      split: [{pool: app, weight: 0}, {pool: api, weight: 0}]
    - match: {host: e}
      split: [{pool: app}, {pool: app}, {pool: ap}]
    - pool: app
)") == Errors{"test.yaml:4:14: split needs at least one pool",
              "test.yaml:6:14: expected a list, got a map",
              "test.yaml:8:35: split weight must be between 0 and 1000, got 1001",
              "test.yaml:8:42: split entry is missing required key 'pool'",
              "test.yaml:8:62: pool 'app' is listed twice in split; first at line 8",
              "test.yaml:8:67: unknown key 'wieght' in split entry; did you mean 'weight'?",
              "test.yaml:10:14: split weights add up to 0; at least one weight must be above 0",
              "test.yaml:12:35: pool 'app' is listed twice in split; first at line 12",
              "test.yaml:12:48: unknown pool 'ap'; did you mean 'app'?"});
}

TEST_CASE("sticky needs exactly one of cookie or header", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, split: [{pool: app}], sticky: {}}
    - {match: {host: b}, split: [{pool: app}], sticky: {cookie: a, header: b}}
    - {match: {host: c}, split: [{pool: app}], sticky: {header: "x y"}}
    - {match: {host: d}, split: [{pool: app}], sticky: {cookie: ""}}
    - {match: {host: e}, split: [{pool: app}], sticky: {cookies: a}}
    - pool: app
)") == Errors{"test.yaml:3:56: sticky needs exactly one of cookie, header",
              "test.yaml:4:56: sticky needs exactly one of cookie, header",
              "test.yaml:5:65: invalid header name 'x y'",
              "test.yaml:6:65: sticky cookie name must not be empty",
              "test.yaml:7:57: unknown key 'cookies' in sticky; did you mean 'cookie'?"});
}

TEST_CASE("redirect status is a redirect code", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, redirect: {status: 200, scheme: https}}
    - {match: {host: b}, redirect: {status: 304, scheme: https}}
    - {match: {host: c}, redirect: {status: 3010, scheme: https}}
    - pool: app
)") == Errors{"test.yaml:3:45: redirect status must be 301, 302, 303, 307 or 308, got 200",
              "test.yaml:4:45: redirect status must be 301, 302, 303, 307 or 308, got 304",
              "test.yaml:5:45: redirect.status must be between 100 and 599, got 3010"});
}

TEST_CASE("redirect templates accept only the four placeholders", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, redirect: {path: "/x{uri}"}}
    - {match: {host: b}, redirect: {host: "{host"}}
    - {match: {host: c}, redirect: {query: "a=}"}}
    - {match: {host: d}, redirect: {scheme: "{Scheme}"}}
    - pool: app
)") == Errors{"test.yaml:3:43: unknown placeholder '{uri}' in redirect path; valid placeholders: "
              "{scheme}, {host}, {path}, {query}",
              "test.yaml:4:43: unmatched '{' in redirect host",
              "test.yaml:5:44: unmatched '}' in redirect query",
              "test.yaml:6:45: unknown placeholder '{Scheme}' in redirect scheme; valid "
              "placeholders: {scheme}, {host}, {path}, {query}"});
}

TEST_CASE("redirect parts are checked", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, redirect: {scheme: ftp}}
    - {match: {host: b}, redirect: {host: ""}}
    - {match: {host: c}, redirect: {host: "example.com/x"}}
    - {match: {host: d}, redirect: {path: "x{path}"}}
    - {match: {host: e}, redirect: {path: "/a?b=1"}}
    - {match: {host: f}, redirect: {query: "?a=1"}}
    - {match: {host: g}, redirect: {query: "a=1#top"}}
    - {match: {host: h}, redirect: {path: "/a b"}}
    - {match: {host: i}, redirect: {host: "evil\r\nset-cookie: x"}}
    - {match: {host: j}, redirect: {status: 301}}
    - {match: {host: k}, redirect: {statuss: 301}}
    - {match: {host: l}, redirect: "https://example.com"}
    - pool: app
)") == Errors{"test.yaml:3:45: redirect scheme must be http, https or a template, got 'ftp'",
              "test.yaml:4:43: redirect host must not be empty",
              "test.yaml:5:43: redirect host must not contain '/', '?' or '#'",
              "test.yaml:6:43: redirect path must start with '/' or {path}",
              "test.yaml:7:43: redirect path must not contain '?' or '#'; give the query in query",
              "test.yaml:8:44: redirect query is written without the leading '?'",
              "test.yaml:9:44: redirect query must not contain '#'",
              "test.yaml:10:43: redirect path must not contain spaces or control characters",
              "test.yaml:11:43: redirect host must not contain spaces or control characters",
              "test.yaml:12:36: redirect changes nothing; give at least one of scheme, host, "
              "path, query",
              "test.yaml:13:37: unknown key 'statuss' in redirect; did you mean 'status'?",
              "test.yaml:14:36: expected a map, got 'https://example.com'"});
}

TEST_CASE("goto names another existing table", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, goto: main}
    - {match: {host: b}, goto: api_rotues}
    - {match: {host: c}, goto: ""}
    - {match: {host: d}, goto: [api_routes]}
    - pool: app
  api_routes:
    - pool: api
)") == Errors{"test.yaml:3:32: a route cannot goto its own table 'main'",
              "test.yaml:4:32: unknown route table 'api_rotues'; did you mean 'api_routes'?",
              "test.yaml:5:32: goto table name must not be empty",
              "test.yaml:6:32: expected a string, got a list"});
}

TEST_CASE("goto cycles across tables are reported", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, goto: api}
    - pool: app
  api:
    - {match: {host: b}, goto: main}
    - {match: {host: c}, goto: deep}
  deep:
    - {match: {host: d}, goto: deeper}
  deeper:
    - {match: {host: e}, goto: api}
    - goto: main
)") == Errors{"test.yaml:6:32: goto cycle: main -> api -> main",
              "test.yaml:11:32: goto cycle: api -> deep -> deeper -> api",
              "test.yaml:12:13: goto cycle: main -> api -> deep -> deeper -> main"});
}

TEST_CASE("header edits are checked", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a}
      pool: app
      request_headers:
        set: {"x y": a, connection: close, Content-Length: "5", x-ok: "a\nb"}
        add: {Transfer-Encoding: chunked, upgrade: h2c, keep-alive: "1", te: trailers}
        remove: [content-length, "", x-ok]
    - match: {host: b}
      pool: app
      response_headers:
        set: {x-a: "1", X-A: "2"}
        add: {x-b: "1"}
        remove: [x-b, x-c, X-C]
    - match: {host: c}
      pool: app
      response_headers: {sett: {}, remove: {x-a: 1}}
    - pool: app
)") == Errors{"test.yaml:6:15: invalid header name 'x y'",
              "test.yaml:6:25: header 'connection' is set by the proxy and cannot be configured",
              "test.yaml:6:44: header 'Content-Length' is set by the proxy and cannot be "
              "configured",
              "test.yaml:6:71: header 'x-ok' value must not contain CR, LF or NUL",
              "test.yaml:7:15: header 'Transfer-Encoding' is set by the proxy and cannot be "
              "configured",
              "test.yaml:7:43: header 'upgrade' is set by the proxy and cannot be configured",
              "test.yaml:7:57: header 'keep-alive' is set by the proxy and cannot be configured",
              "test.yaml:7:74: header 'te' is set by the proxy and cannot be configured",
              "test.yaml:8:18: header 'content-length' frames the message and cannot be removed",
              "test.yaml:8:34: invalid header name ''",
              "test.yaml:8:38: header 'x-ok' is in both set (line 6) and remove",
              "test.yaml:12:25: duplicate header 'X-A'; first set at line 12",
              "test.yaml:14:18: header 'x-b' is in both add (line 13) and remove",
              "test.yaml:14:28: duplicate header 'X-C'; first listed at line 14",
              "test.yaml:17:26: unknown key 'sett' in response_headers; did you mean 'set'?",
              "test.yaml:17:44: expected a string or a list of strings, got a map"});
}

TEST_CASE("a rewrite needs exactly one of path_prefix or path_regex", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - {match: {host: a}, pool: app, rewrite: {}}
    - {match: {host: b}, pool: app, rewrite: {path_prefix: {from: /a, to: /b}, path_regex: {pattern: a, replace: b}}}
    - {match: {host: c}, pool: app, rewrite: {path: {from: /a, to: /b}}}
    - {match: {host: d}, pool: app, rewrite: {path_prefix: {from: /a}}}
    - {match: {host: e}, pool: app, rewrite: {path_regex: {pattern: a, replace: b, flags: i}}}
    - pool: app
)") == Errors{"test.yaml:3:46: rewrite needs exactly one of path_prefix, path_regex",
              "test.yaml:4:46: rewrite needs exactly one of path_prefix, path_regex",
              "test.yaml:5:47: unknown key 'path' in rewrite; expected one of: path_prefix, "
              "path_regex",
              "test.yaml:6:60: rewrite.path_prefix is missing required key 'to'",
              "test.yaml:7:84: unknown key 'flags' in rewrite.path_regex; expected one of: "
              "pattern, replace"});
}

TEST_CASE("prefix rewrites need absolute paths that fit in a request line", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a}
      pool: app
      rewrite: {path_prefix: {from: v1/, to: v2/}}
    - match: {host: b}
      pool: app
      rewrite: {path_prefix: {from: "/a b/", to: "/x?y=1"}}
    - match: {host: c}
      pool: app
      rewrite: {path_prefix: {from: /a/, to: "/x y/"}}
    - pool: app
)") == Errors{"test.yaml:5:37: rewrite from must start with '/'",
              "test.yaml:5:46: rewrite to must start with '/'",
              "test.yaml:8:37: rewrite from contains '\\x20'; write it percent-encoded as %20",
              "test.yaml:8:50: rewrite to must not contain '?'; the request's query is kept",
              "test.yaml:11:46: rewrite to contains '\\x20'; write it percent-encoded as %20"});
}

TEST_CASE("regex rewrites need a valid pattern and matching captures", "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: a}
      pool: app
      rewrite: {path_regex: {pattern: "^/(a", replace: /b}}
    - match: {host: b}
      pool: app
      rewrite: {path_regex: {pattern: "^/(a)/(b)$", replace: '/\3'}}
    - match: {host: c}
      pool: app
      rewrite: {path_regex: {pattern: "^/a$", replace: '/\1'}}
    - match: {host: d}
      pool: app
      rewrite: {path_regex: {pattern: "^/(a)$", replace: '/\x'}}
    - match: {host: e}
      pool: app
      rewrite: {path_regex: {pattern: "^/(a)$", replace: '/\'}}
    - match: {host: f}
      pool: app
      rewrite: {path_regex: {pattern: "^/(a)$", replace: '/\1?x=1'}}
    - pool: app
)") == Errors{"test.yaml:5:39: invalid regex: missing ): ^/(a",
              "test.yaml:8:62: rewrite replace refers to \\3, but the pattern has only 2 capture "
              "groups",
              "test.yaml:11:56: rewrite replace refers to \\1, but the pattern has no capture "
              "groups",
              "test.yaml:14:58: invalid escape in rewrite replace: '\\' must be followed by a "
              "digit or another '\\'",
              "test.yaml:17:58: invalid escape in rewrite replace: '\\' must be followed by a "
              "digit or another '\\'",
              "test.yaml:20:58: rewrite replace must not contain '?'; the request's query is "
              "kept"});
}

TEST_CASE("errors in several routes and tables are all reported in file order",
          "[config][routing]") {
  CHECK(errors_of(R"(
routes:
  main:
    - match: {host: "*"}
      goto: second
    - match: {method: get}
      split: [{pool: apps, weight: 1}]
    - respond: {status: 404}
  second:
    - match: {}
      pool: app
    - {match: {path: /a/../b}, redirect: {status: 200, scheme: https}}
)") == Errors{"test.yaml:3:21: host pattern '*' matches every host; leave out host instead",
              "test.yaml:5:23: method names are case-sensitive; did you mean 'GET'?",
              "test.yaml:6:22: unknown pool 'apps'; did you mean 'app'?",
              "test.yaml:9:14: empty match",
              "test.yaml:11:22: path pattern is not normalised; did you mean '/b'?",
              "test.yaml:11:51: redirect status must be 301, 302, 303, 307 or 308, got 200"});
}

TEST_CASE("a prefix rewrite applies to the path as sent, so from need not be normalised",
          "[config][routing]") {
  auto config = load_ok(R"(
routes:
  main:
    - pool: app
      rewrite: {path_prefix: {from: "/a//%7e/", to: /}}
)");
  const Route& r = table(*config, "main")[0];
  CHECK(r.rewrite.kind == PathRewrite::Kind::kPrefix);
  CHECK(r.rewrite.from == "/a//%7e/");
  CHECK(r.rewrite.to == "/");
}
