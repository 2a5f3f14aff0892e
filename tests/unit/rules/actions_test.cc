#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "rules_test_support.h"

using namespace switchyard;
using namespace switchyard::rules;
using namespace switchyard::rules::testing;

namespace {

config::Route split_route(std::vector<std::pair<std::string, std::uint32_t>> pools,
                          config::Split::StickyOn sticky = config::Split::StickyOn::kNone,
                          std::string sticky_name = {}) {
  config::Route r;
  config::Split s;
  for (auto& [name, weight] : pools) s.pools.push_back({name, weight});
  s.sticky_on = sticky;
  s.sticky_name = std::move(sticky_name);
  r.split = s;
  return r;
}

config::Route redirect_route(std::optional<std::string> scheme, std::optional<std::string> host,
                             std::optional<std::string> path, std::optional<std::string> query) {
  config::Route r;
  config::Redirect red;
  red.status = 301;
  red.scheme = std::move(scheme);
  red.host = std::move(host);
  red.path = std::move(path);
  red.query = std::move(query);
  r.redirect = red;
  return r;
}

config::Route rewrite_route(config::PathRewrite::Kind kind, std::string from, std::string to) {
  config::Route r = to_pool(std::nullopt, "a");
  r.rewrite.kind = kind;
  r.rewrite.from = std::move(from);
  r.rewrite.to = std::move(to);
  return r;
}

// rewrite_target for `route` as if it had matched a GET of `target`.
bool rewrite_with(const RuleSet& rules, const config::Route& route, const char* target,
                  MatchScratch& scratch, std::string& out) {
  TestRequest r("GET", target, {{"Host", "h"}});
  Decision d;
  d.route = &route;
  return rules.rewrite_target(d, r.view(), scratch, out);
}

// Runs every routing case both scanned and indexed.
const std::size_t kModes[] = {kNeverIndex, 1};

}  // namespace

TEST_CASE("the first matching route decides; pools are numbered in map order", "[rules]") {
  auto config = make_config({{"main",
                              {to_pool(prefix({"/a/"}), "c"), to_pool(prefix({"/a/b"}), "d"),
                               to_pool(prefix({"/"}), "e")}}});
  const auto& routes = config->routes["main"].routes;
  for (std::size_t mode : kModes) {
    auto rules = compile_or_die(*config, mode);
    MatchScratch scratch;
    TestRequest ab("GET", "/a/b", {{"Host", "h"}});
    Decision d = rules->decide(rules->table_index("main"), ab.view(), scratch);
    CHECK(d.route == &routes[0]);
    CHECK(d.pool == 2);
    TestRequest x("GET", "/x", {{"Host", "h"}});
    d = rules->decide(0, x.view(), scratch);
    CHECK(d.route == &routes[2]);
    CHECK(d.pool == 4);
    TestRequest star("OPTIONS", "*", {{"Host", "h"}});
    CHECK(rules->decide(0, star.view(), scratch).route == nullptr);
    CHECK(rules->decide(-1, x.view(), scratch).route == nullptr);
    CHECK(rules->decide(1, x.view(), scratch).route == nullptr);
  }
}

TEST_CASE("table_index finds tables by name", "[rules]") {
  auto config = make_config({{"main", {}}, {"api", {}}, {"zeta", {}}});
  auto rules = compile_or_die(*config);
  CHECK(rules->table_index("api") == 0);
  CHECK(rules->table_index("main") == 1);
  CHECK(rules->table_index("zeta") == 2);
  CHECK(rules->table_index("nope") == -1);
  CHECK(rules->table_index("") == -1);
}

TEST_CASE("goto: the target table decides, or the caller falls through", "[rules]") {
  auto config = make_config({
      {"main",
       {go_to(prefix({"/api/"}), "api"), to_pool(prefix({"/api/"}), "d"),
        to_pool(std::nullopt, "e")}},
      {"api",
       {to_pool(method({"GET"}), "a"), go_to(header("x-v2", Op::kPresent), "v2"),
        to_pool(header("x-beta", Op::kPresent), "b")}},
      {"v2", {to_pool(query("fast", Op::kPresent), "c")}},
  });
  const auto& main = config->routes["main"].routes;
  const auto& api = config->routes["api"].routes;
  const auto& v2 = config->routes["v2"].routes;
  for (std::size_t mode : kModes) {
    auto rules = compile_or_die(*config, mode);
    int t = rules->table_index("main");
    MatchScratch scratch;
    auto decide = [&](const char* m, const char* target,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
      TestRequest r(m, target, std::move(headers));
      return rules->decide(t, r.view(), scratch);
    };
    CHECK(decide("GET", "/api/x").route == &api[0]);
    CHECK(decide("GET", "/api/x").pool == 0);
    CHECK(decide("POST", "/api/x", {{"X-Beta", "1"}}).route == &api[2]);
    CHECK(decide("POST", "/api/x?fast", {{"X-V2", "1"}}).route == &v2[0]);
    CHECK(decide("POST", "/api/x?fast", {{"X-V2", "1"}}).pool == 2);
    // v2 matches nothing: continue in api after the goto.
    CHECK(decide("POST", "/api/x", {{"X-V2", "1"}, {"x-beta", "y"}}).route == &api[2]);
    // api matches nothing: continue in main after the goto.
    CHECK(decide("POST", "/api/x").route == &main[1]);
    CHECK(decide("POST", "/api/x").pool == 3);
    CHECK(decide("POST", "/web").route == &main[2]);
  }
}

TEST_CASE("goto: a cycle the loader missed ends at the depth limit", "[rules]") {
  auto config = make_config({{"loop", {go_to(std::nullopt, "loop"), to_pool(std::nullopt, "b")}},
                             {"ping", {go_to(std::nullopt, "pong")}},
                             {"pong", {go_to(std::nullopt, "ping")}}});
  for (std::size_t mode : kModes) {
    auto rules = compile_or_die(*config, mode);
    MatchScratch scratch;
    TestRequest r("GET", "/", {});
    Decision d = rules->decide(rules->table_index("loop"), r.view(), scratch);
    CHECK(d.route == &config->routes["loop"].routes[1]);
    CHECK(rules->decide(rules->table_index("ping"), r.view(), scratch).route == nullptr);
  }
}

TEST_CASE("split: proportions follow the weights", "[rules]") {
  auto config = make_config({{"main", {split_route({{"a", 10}, {"b", 90}})}},
                             {"three", {split_route({{"c", 1}, {"d", 2}, {"e", 1}, {"a", 0}})}}});
  auto rules = compile_or_die(*config);
  MatchScratch scratch;
  TestRequest r("GET", "/", {{"Host", "h"}});
  constexpr int kN = 10000;
  std::map<int, int> counts;
  for (int i = 0; i < kN; ++i)
    counts[rules->decide(rules->table_index("main"), r.view(), scratch).pool]++;
  CHECK(counts.size() == 2);
  CHECK(counts[0] == Approx(0.10 * kN).margin(0.03 * kN));
  CHECK(counts[1] == Approx(0.90 * kN).margin(0.03 * kN));

  counts.clear();
  for (int i = 0; i < kN; ++i)
    counts[rules->decide(rules->table_index("three"), r.view(), scratch).pool]++;
  CHECK(counts[0] == 0);  // weight 0: never chosen
  CHECK(counts[2] == Approx(0.25 * kN).margin(0.03 * kN));
  CHECK(counts[3] == Approx(0.50 * kN).margin(0.03 * kN));
  CHECK(counts[4] == Approx(0.25 * kN).margin(0.03 * kN));
}

TEST_CASE("split: sticky on a header keeps a value on one pool", "[rules]") {
  auto config = make_config(
      {{"main",
        {split_route({{"a", 30}, {"b", 70}}, config::Split::StickyOn::kHeader, "X-User")}}});
  auto rules = compile_or_die(*config);
  auto again = compile_or_die(*config);  // another snapshot (or worker) must agree
  MatchScratch scratch;
  constexpr int kN = 10000;
  std::map<int, int> counts;
  for (int i = 0; i < kN; ++i) {
    TestRequest r("GET", "/", {{"x-user", "user-" + std::to_string(i)}});
    int pool = rules->decide(0, r.view(), scratch).pool;
    counts[pool]++;
    if (i % 100 == 0) {
      for (int k = 0; k < 5; ++k) CHECK(rules->decide(0, r.view(), scratch).pool == pool);
      CHECK(again->decide(0, r.view(), scratch).pool == pool);
    }
  }
  CHECK(counts[0] == Approx(0.30 * kN).margin(0.03 * kN));
  CHECK(counts[1] == Approx(0.70 * kN).margin(0.03 * kN));

  // Without the header (or with an empty one) requests draw independently.
  counts.clear();
  TestRequest anon("GET", "/", {{"X-Other", "1"}});
  TestRequest empty("GET", "/", {{"X-User", ""}});
  for (int i = 0; i < kN / 2; ++i) {
    counts[rules->decide(0, anon.view(), scratch).pool]++;
    counts[rules->decide(0, empty.view(), scratch).pool]++;
  }
  CHECK(counts[0] == Approx(0.30 * kN).margin(0.03 * kN));
  CHECK(counts[1] == Approx(0.70 * kN).margin(0.03 * kN));
}

TEST_CASE("split: sticky on a cookie", "[rules]") {
  auto config = make_config(
      {{"main", {split_route({{"a", 1}, {"b", 1}}, config::Split::StickyOn::kCookie, "sid")}}});
  auto rules = compile_or_die(*config);
  MatchScratch scratch;
  std::map<int, int> counts;
  for (int i = 0; i < 1000; ++i) {
    std::string v = "s" + std::to_string(i);
    TestRequest r1("GET", "/", {{"Cookie", "theme=dark; sid=" + v}});
    TestRequest r2("GET", "/", {{"Cookie", "sid=" + v}, {"Cookie", "x=1"}});
    int pool = rules->decide(0, r1.view(), scratch).pool;
    CHECK(rules->decide(0, r2.view(), scratch).pool == pool);
    counts[pool]++;
  }
  CHECK(counts[0] == Approx(500).margin(60));
  CHECK(counts[1] == Approx(500).margin(60));
}

TEST_CASE("redirect_location: templates and defaults", "[rules]") {
  auto config = make_config(
      {{"main",
        {redirect_route(std::nullopt, std::nullopt, std::nullopt, std::nullopt),
         redirect_route("https", std::nullopt, std::nullopt, std::nullopt),
         redirect_route(std::nullopt, "www.{host}", "/new{path}", "{query}&from={scheme}"),
         redirect_route("https", "{host}:8443", "moved", ""),
         redirect_route(std::nullopt, "{host}", "{path}/{x}", "{query")}}});
  const auto& routes = config->routes["main"].routes;
  auto rules = compile_or_die(*config);
  MatchScratch scratch;
  auto location = [&](int route, const char* target, const char* host) {
    TestRequest r("GET", target, {{"Host", host}});
    Decision d;
    d.route = &routes[route];
    std::string out = "Location: ";
    rules->redirect_location(d, r.view(), scratch, out);
    return out;
  };
  CHECK(location(0, "/a/b?x=1", "Example.com:8080") == "Location: http://Example.com/a/b?x=1");
  CHECK(location(0, "/a/b", "example.com") == "Location: http://example.com/a/b");
  CHECK(location(0, "/a/b?", "example.com") == "Location: http://example.com/a/b");
  CHECK(location(1, "/a/b?x=1", "example.com") == "Location: https://example.com/a/b?x=1");
  CHECK(location(1, "/%7e/../a", "example.com") == "Location: https://example.com/%7e/../a");
  CHECK(location(2, "/a?x=1", "example.com") ==
        "Location: http://www.example.com/new/a?x=1&from=http");
  CHECK(location(3, "/a?x=1", "[::1]:80") == "Location: https://[::1]:8443/moved");
  CHECK(location(4, "/a", "h") == "Location: http://h/a/{x}?{query");
  {
    TestRequest abs("GET", "http://example.org:81/p?q", {{"Host", "ignored"}});
    Decision d;
    d.route = &routes[1];
    std::string out;
    rules->redirect_location(d, abs.view(), scratch, out);
    CHECK(out == "https://example.org/p?q");
  }
  {
    // Not a redirect route: nothing appended.
    auto other = make_config({{"main", {to_pool(std::nullopt, "a")}}});
    Decision d;
    d.route = &other->routes["main"].routes[0];
    TestRequest r("GET", "/", {});
    std::string out;
    rules->redirect_location(d, r.view(), scratch, out);
    CHECK(out.empty());
  }
}

TEST_CASE("rewrite_target: prefix replacement keeps the query", "[rules]") {
  using K = config::PathRewrite::Kind;
  auto config = make_config(
      {{"main",
        {rewrite_route(K::kPrefix, "/api/", "/"), rewrite_route(K::kPrefix, "/old", "/new/v2"),
         rewrite_route(K::kPrefix, "/strip", ""), to_pool(std::nullopt, "a")}}});
  const auto& routes = config->routes["main"].routes;
  auto rules = compile_or_die(*config);
  MatchScratch scratch;
  auto rewrite = [&](int route, const char* target, std::string& out) {
    return rewrite_with(*rules, routes[route], target, scratch, out);
  };
  std::string out;
  CHECK(rewrite(0, "/api/users?x=1&y", out));
  CHECK(out == "/users?x=1&y");
  out = "GET ";
  CHECK(rewrite(0, "/api/", out));
  CHECK(out == "GET /");
  out.clear();
  CHECK(rewrite(0, "/api/x?", out));
  CHECK(out == "/x?");
  out = "untouched";
  CHECK_FALSE(rewrite(0, "/apx/users?x=1", out));
  CHECK(out == "untouched");
  out.clear();
  CHECK(rewrite(1, "/older/x", out));
  CHECK(out == "/new/v2er/x");
  out.clear();
  CHECK(rewrite(2, "/strip?q", out));
  CHECK(out == "/?q");
  out.clear();
  CHECK(rewrite(0, "http://h:80/api/z?k=v", out));
  CHECK(out == "/z?k=v");
  out.clear();
  // The rewrite applies to the normalised path the route matched, not the raw one.
  CHECK(rewrite(0, "//api/./users?x=1", out));
  CHECK(out == "/users?x=1");
  out.clear();
  CHECK_FALSE(rewrite(3, "/api/x", out));  // no rewrite on this route
  CHECK(out.empty());
}

TEST_CASE("rewrite_target: regex replacement with captures", "[rules]") {
  using K = config::PathRewrite::Kind;
  auto config = make_config({{"main",
                              {rewrite_route(K::kRegex, "^/u/([0-9]+)/(.*)$", "/users/\\1/\\2"),
                               rewrite_route(K::kRegex, "v1", "v2"),
                               rewrite_route(K::kRegex, "^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)$",
                                             "/\\9\\8\\7\\6\\5\\4\\3\\2\\1-\\0")}}});
  const auto& routes = config->routes["main"].routes;
  auto rules = compile_or_die(*config);
  MatchScratch scratch;
  auto rewrite = [&](int route, const char* target, std::string& out) {
    return rewrite_with(*rules, routes[route], target, scratch, out);
  };
  std::string out;
  CHECK(rewrite(0, "/u/42/profile/photo?size=2", out));
  CHECK(out == "/users/42/profile/photo?size=2");
  out = "keep";
  CHECK_FALSE(rewrite(0, "/u/x/profile", out));
  CHECK(out == "keep");
  out.clear();
  CHECK(rewrite(1, "/api/v1/v1/x", out));  // first occurrence only, the rest kept
  CHECK(out == "/api/v2/v1/x");
  out.clear();
  CHECK(rewrite(2, "/abcdefghij", out));
  CHECK(out == "/ihgfedcba-/abcdefghij");
}

TEST_CASE("compile: errors name the route; a valid config compiles", "[rules]") {
  std::string error;
  {
    auto config = make_config({{"main", {to_pool(path_regex("("), "a")}}});
    CHECK(RuleSet::compile(*config, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("routes.main[0]") && Catch::Contains("regular expression"));
  }
  {
    auto config = make_config(
        {{"main", {to_pool(std::nullopt, "a"), to_pool(header("x", Op::kRegex, "[a"), "a")}}});
    config->routes["main"].routes[1].mark.line = 12;
    CHECK(RuleSet::compile(*config, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("routes.main[1] (line 12)"));
  }
  {
    auto config = make_config({{"main", {to_pool(std::nullopt, "nope")}}});
    CHECK(RuleSet::compile(*config, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("nope"));
  }
  {
    auto config = make_config({{"main", {go_to(std::nullopt, "nope")}}});
    CHECK(RuleSet::compile(*config, error) == nullptr);
  }
  {
    auto config =
        make_config({{"main", {rewrite_route(config::PathRewrite::Kind::kRegex, "(a)", "\\2")}}});
    CHECK(RuleSet::compile(*config, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("rewrite"));
  }
  {
    auto config = make_config({{"main", {to_pool(host({"example.com"}), "a")}}});
    error.clear();
    CHECK(RuleSet::compile(*config, error) != nullptr);
    CHECK(error.empty());
  }
}
