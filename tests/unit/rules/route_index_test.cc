// The index must be invisible: for any table and request, decide() answers exactly what a plain
// first-match scan answers. These tests compare the indexed RuleSet with an independent, naive
// evaluation of the config (written here from the documented semantics), and with the RuleSet
// compiled without an index, on randomised tables and requests.
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "rules_test_support.h"

using namespace switchyard;
using namespace switchyard::rules;
using namespace switchyard::rules::testing;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct NaiveRequest {
  std::string method;
  std::string host;  // lower-case, no port, no trailing dot; empty if none
  std::string path;
  bool path_ok = false;
  std::vector<std::pair<std::string, std::string>> headers;
};

bool naive_host(const std::string& pattern, const std::string& host) {
  std::string p = lower(pattern);
  if (!p.empty() && p.back() == '.') p.pop_back();
  if (host.empty()) return false;
  if (p == "*") return true;
  if (p.starts_with("*.")) {
    std::string suffix = p.substr(1);
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return host == p;
}

std::string naive_pattern(const std::string& p) {
  std::string out;
  return normalize_path(p, out) ? out : p;  // patterns used here have no dot segments
}

bool naive_match(const Match& m, const NaiveRequest& r) {
  switch (m.kind) {
    case Kind::kAll:
      for (const Match& c : m.children) {
        if (!naive_match(c, r)) return false;
      }
      return true;
    case Kind::kAny:
      for (const Match& c : m.children) {
        if (naive_match(c, r)) return true;
      }
      return false;
    case Kind::kNot:
      return !naive_match(m.children.at(0), r);
    case Kind::kHost:
      for (const std::string& p : m.patterns) {
        if (naive_host(p, r.host)) return true;
      }
      return false;
    case Kind::kPath:
      for (const std::string& p : m.patterns) {
        if (r.path_ok && r.path == naive_pattern(p)) return true;
      }
      return false;
    case Kind::kPathPrefix:
      for (const std::string& p : m.patterns) {
        if (r.path_ok && r.path.starts_with(naive_pattern(p))) return true;
      }
      return false;
    case Kind::kMethod:
      for (const std::string& p : m.patterns) {
        if (r.method == p) return true;
      }
      return false;
    case Kind::kHeader:
      for (const auto& [name, value] : r.headers) {
        if (lower(name) == lower(m.name) && (m.test.op == Op::kPresent || value == m.test.value)) {
          return true;
        }
      }
      return false;
    default:
      FAIL("kind not used by these tests");
      return false;
  }
}

const config::Route* naive_decide(const config::Config& c, const std::string& table,
                                  const NaiveRequest& r, int depth = 0) {
  for (const config::Route& route : c.routes.at(table).routes) {
    if (route.match && !naive_match(*route.match, r)) continue;
    if (!route.go_to) return &route;
    if (depth < 8) {
      if (const config::Route* d = naive_decide(c, *route.go_to, r, depth + 1)) return d;
    }
  }
  return nullptr;
}

template <class T>
const T& pick(std::mt19937& rng, const std::vector<T>& v) {
  return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
}

struct Vocabulary {
  std::vector<std::string> host_patterns;
  std::vector<std::string> path_patterns;
  std::vector<std::string> request_hosts;  // "" = no Host header
  std::vector<std::string> request_paths;  // request-targets
};

Vocabulary small_vocabulary() {
  Vocabulary v;
  v.host_patterns = {"a.com", "b.com",     "x.a.com", "y.x.a.com", "B.COM", "*.a.com",
                     "*.com", "*.x.a.com", "[::1]",   "c.org.",    "*",     "*.B.com"};
  v.path_patterns = {"/",        "/api",           "/api/", "/api/v1",  "/api/v1/users",
                     "/static/", "/static/app.js", "/apix", "/%7euser", "/~user/x",
                     "/a"};
  v.request_hosts = {"a.com",  "A.COM:80",   "b.com",  "x.a.com", "y.x.a.com", "Z.y.x.a.com",
                     "q.com",  "[::1]:8080", "c.org",  "c.org.",  "",          "com",
                     ".a.com", "a..a.com",   "s.b.com"};
  v.request_paths = {"/",
                     "/api",
                     "/api/",
                     "/api/v1",
                     "/api/v1/users",
                     "/api/v1/users/7?x=1",
                     "/static/app.js",
                     "/apix/y",
                     "/~user/x",
                     "/%7Euser/x",
                     "//api//v1",
                     "/a/../api/",
                     "/%zz",
                     "*",
                     "/static/",
                     "/a",
                     "/ab",
                     "http://b.com/api/"};
  return v;
}

// Many distinct paths per host: exercises the hashed (large-bucket) lookups.
Vocabulary wide_vocabulary() {
  Vocabulary v;
  v.host_patterns = {"a.com", "b.com", "*.a.com"};
  v.request_hosts = {"a.com", "b.com", "x.a.com", "c.com"};
  for (int i = 0; i < 30; ++i) {
    std::string s = "/s" + std::to_string(i);
    v.path_patterns.push_back(s);
    v.path_patterns.push_back(s + "/");
    v.path_patterns.push_back(s + "/t" + std::to_string(i % 4));
    v.request_paths.push_back(s);
    v.request_paths.push_back(s + "/t" + std::to_string(i % 4) + "/x");
    v.request_paths.push_back(s + "/t" + std::to_string(i % 4));
    v.request_paths.push_back(s + "0/");
  }
  return v;
}

std::vector<std::string> some(std::mt19937& rng, const std::vector<std::string>& from) {
  std::vector<std::string> out{pick(rng, from)};
  if (rng() % 3 == 0) out.push_back(pick(rng, from));
  return out;
}

std::optional<Match> random_match(std::mt19937& rng, const Vocabulary& v) {
  auto h = [&] { return host(some(rng, v.host_patterns)); };
  auto p = [&] { return prefix(some(rng, v.path_patterns)); };
  auto e = [&] { return path(some(rng, v.path_patterns)); };
  auto m = [&] { return method({rng() % 2 ? "GET" : "POST"}); };
  auto x = [&] {
    return rng() % 2 ? header("X-Flag", Op::kPresent) : header("x-flag", Op::kExact, "1");
  };
  switch (rng() % 16) {
    case 0:
      return std::nullopt;
    case 1:
      return h();
    case 2:
      return p();
    case 3:
      return e();
    case 4:
      return all({h(), p()});
    case 5:
      return all({h(), e()});
    case 6:
      return all({h(), p(), m()});
    case 7:
      return all({x(), h(), p()});
    case 8:
      return all({all({h()}), all({p(), m()})});
    case 9:
      return any({h(), p()});
    case 10:
      return all({h(), h()});
    case 11:
      return all({p(), e(), p()});
    case 12:
      return not_(h());
    case 13:
      return x();
    case 14:
      return all({m(), h()});
    default:
      return all({h(), p()});
  }
}

std::vector<config::Route> random_table(std::mt19937& rng, const Vocabulary& v, std::size_t max,
                                        bool with_goto) {
  std::vector<config::Route> routes;
  std::size_t n = 1 + rng() % max;
  for (std::size_t i = 0; i < n; ++i) {
    if (with_goto && rng() % 8 == 0) {
      routes.push_back(go_to(random_match(rng, v), "sub"));
    } else {
      routes.push_back(to_pool(random_match(rng, v), "a"));
    }
  }
  return routes;
}

void check_equivalence(const Vocabulary& v, std::uint32_t seed, int configs, std::size_t max_routes,
                       int requests) {
  std::mt19937 rng(seed);
  MatchScratch scratch;
  int decided = 0;
  for (int c = 0; c < configs; ++c) {
    auto config = make_config({{"main", random_table(rng, v, max_routes, true)},
                               {"sub", random_table(rng, v, max_routes / 2 + 1, false)}});
    auto scanned = compile_or_die(*config, kNeverIndex);
    auto indexed = compile_or_die(*config, 1);
    auto defaults = compile_or_die(*config);
    int main_table = indexed->table_index("main");
    for (int q = 0; q < requests; ++q) {
      NaiveRequest nr;
      nr.method = rng() % 2 ? "GET" : "POST";
      std::string h = pick(rng, v.request_hosts);
      std::string target = pick(rng, v.request_paths);
      if (!h.empty()) nr.headers.push_back({"Host", h});
      if (rng() % 3 == 0) nr.headers.push_back({"X-Flag", rng() % 2 ? "1" : "2"});
      // The naive view of host and path, derived independently of RequestContext.
      std::string t = target;
      if (t.starts_with("http://")) {
        std::string rest = t.substr(7);
        h = rest.substr(0, rest.find('/'));
        t = rest.substr(rest.find('/'));
      }
      std::string hl = lower(h);
      if (!hl.empty() && hl.front() == '[') {
        hl = hl.substr(0, hl.find(']') + 1);
      } else {
        hl = hl.substr(0, hl.find(':'));
      }
      if (!hl.empty() && hl.back() == '.') hl.pop_back();
      nr.host = hl;
      nr.path_ok = normalize_path(t.substr(0, t.find('?')), nr.path);

      TestRequest r(nr.method, target, nr.headers);
      const config::Route* expected = naive_decide(*config, "main", nr);
      INFO("config " << c << " request " << nr.method << " " << target << " host " << h);
      CHECK(scanned->decide(main_table, r.view(), scratch).route == expected);
      CHECK(indexed->decide(main_table, r.view(), scratch).route == expected);
      CHECK(defaults->decide(main_table, r.view(), scratch).route == expected);
      decided += expected != nullptr;
    }
  }
  // The vocabularies are built to hit: most requests must find some route, or the test proves
  // little.
  CHECK(decided > configs * requests / 3);
}

}  // namespace

TEST_CASE("index agrees with a naive scan on randomised small tables", "[rules]") {
  check_equivalence(small_vocabulary(), 20240601, 400, 40, 60);
}

TEST_CASE("index agrees with a naive scan on randomised wide tables", "[rules]") {
  check_equivalence(wide_vocabulary(), 7, 60, 400, 200);
}

TEST_CASE("index falls back to a scan when a request hits too many prefixes", "[rules]") {
  std::vector<config::Route> routes;
  for (int k = 100; k >= 1; --k) {
    routes.push_back(to_pool(
        all({prefix({"/" + std::string(k, 'a')}), header("x-k", Op::kExact, std::to_string(k))}),
        "a"));
  }
  routes.push_back(to_pool(std::nullopt, "b"));
  auto config = make_config({{"main", std::move(routes)}});
  const auto& rs = config->routes["main"].routes;
  auto indexed = compile_or_die(*config, 1);
  MatchScratch scratch;
  for (int k : {1, 2, 63, 64, 65, 70, 100}) {
    TestRequest r("GET", "/" + std::string(100, 'a'), {{"X-K", std::to_string(k)}});
    CHECK(indexed->decide(0, r.view(), scratch).route == &rs[100 - k]);
  }
  TestRequest shorter("GET", "/" + std::string(50, 'a'), {{"X-K", "70"}});
  CHECK(indexed->decide(0, shorter.view(), scratch).route == &rs[100]);
  TestRequest miss("GET", "/" + std::string(100, 'a'), {{"X-K", "0"}});
  CHECK(indexed->decide(0, miss.view(), scratch).route == &rs[100]);
}
