#include <catch2/catch.hpp>
#include <string>

#include "rules_test_support.h"

using namespace switchyard::rules;
using namespace switchyard::rules::testing;

namespace {

// Whether a one-route table with match `m` picks the route, both scanned and indexed (which must
// agree).
bool matches(const Match& m, const TestRequest& r) {
  auto config = make_config({{"main", {to_pool(m, "a")}}});
  MatchScratch scratch;
  bool result[2];
  int i = 0;
  for (std::size_t min_indexed : {kNeverIndex, std::size_t{1}}) {
    auto rules = compile_or_die(*config, min_indexed);
    result[i++] = rules->decide(rules->table_index("main"), r.view(), scratch).route != nullptr;
  }
  CHECK(result[0] == result[1]);
  return result[0];
}

bool matches(const Match& m, const char* target, const char* host_header) {
  TestRequest r("GET", target, {{"Host", host_header}});
  return matches(m, r);
}

bool matches_header(const Match& m, std::vector<std::pair<std::string, std::string>> headers) {
  headers.insert(headers.begin(), {"Host", "example.com"});
  TestRequest r("GET", "/", std::move(headers));
  return matches(m, r);
}

bool matches_target(const Match& m, const char* target) {
  return matches(m, target, "example.com");
}

bool matches_source(const Match& m, const char* client) {
  TestRequest r("GET", "/", {{"Host", "example.com"}}, client);
  return matches(m, r);
}

}  // namespace

TEST_CASE("host: exact names are case-insensitive and ignore the port", "[rules]") {
  Match m = host({"example.com"});
  CHECK(matches(m, "/", "example.com"));
  CHECK(matches(m, "/", "EXAMPLE.com"));
  CHECK(matches(m, "/", "example.com:8080"));
  CHECK(matches(m, "/", "example.com."));
  CHECK_FALSE(matches(m, "/", "www.example.com"));
  CHECK_FALSE(matches(m, "/", "example.org"));
  CHECK_FALSE(matches(m, "/", "example.co"));
  CHECK_FALSE(matches(m, "/", ""));
  CHECK(matches(host({"Example.COM"}), "/", "example.com"));
  CHECK(matches(host({"a.org", "example.com"}), "/", "example.com"));
}

TEST_CASE("host: a missing Host header matches no host pattern", "[rules]") {
  TestRequest r("GET", "/", {});
  CHECK_FALSE(matches(host({"example.com"}), r));
  CHECK_FALSE(matches(host({"*.example.com"}), r));
  CHECK(matches(not_(host({"example.com"})), r));
}

TEST_CASE("host: wildcards match subdomains at any depth, not the domain itself", "[rules]") {
  Match m = host({"*.example.com"});
  CHECK(matches(m, "/", "a.example.com"));
  CHECK(matches(m, "/", "a.b.example.com"));
  CHECK(matches(m, "/", "A.Example.Com:443"));
  CHECK_FALSE(matches(m, "/", "example.com"));
  CHECK_FALSE(matches(m, "/", "badexample.com"));
  CHECK_FALSE(matches(m, "/", ".example.com"));
  CHECK_FALSE(matches(m, "/", "a.example.com.evil.org"));
  CHECK(matches(host({"*"}), "/", "anything.at.all"));
  CHECK_FALSE(matches(host({"*"}), "/", ""));
}

TEST_CASE("host: bracketed IPv6 literals with and without port", "[rules]") {
  CHECK(matches(host({"[::1]"}), "/", "[::1]:80"));
  CHECK(matches(host({"[::1]"}), "/", "[::1]"));
  CHECK_FALSE(matches(host({"[::2]"}), "/", "[::1]:80"));
  CHECK(matches(host({"127.0.0.1"}), "/", "127.0.0.1:8080"));
}

TEST_CASE("host and path come from an absolute-form target over the Host header", "[rules]") {
  TestRequest r("GET", "http://Example.com:8080/a/../p?q=1", {{"Host", "other.org"}});
  CHECK(matches(host({"example.com"}), r));
  CHECK_FALSE(matches(host({"other.org"}), r));
  CHECK(matches(path({"/p"}), r));
  CHECK(matches(query("q", Op::kExact, "1"), r));
  TestRequest root("GET", "http://user@example.com?x=2", {});
  CHECK(matches(all({host({"example.com"}), path({"/"}), query("x", Op::kExact, "2")}), root));
}

TEST_CASE("path: exact match on the normalised path", "[rules]") {
  Match m = path({"/a/c"});
  CHECK(matches_target(m, "/a/c"));
  CHECK(matches_target(m, "/a/./b/../c?x=1"));
  CHECK(matches_target(m, "//a//c"));
  CHECK(matches_target(m, "/%61/c"));
  CHECK_FALSE(matches_target(m, "/a/c/"));
  CHECK_FALSE(matches_target(m, "/a/cd"));
  CHECK_FALSE(matches_target(m, "/A/c"));
  CHECK(matches_target(path({"/x", "/a/c"}), "/a/c"));
  // Patterns get the same escape normalisation as requests.
  CHECK(matches_target(path({"/%7euser"}), "/~user"));
  CHECK(matches_target(path({"/a%2fb"}), "/a%2Fb"));
}

TEST_CASE("path_prefix: byte prefix of the normalised path", "[rules]") {
  Match m = prefix({"/api/"});
  CHECK(matches_target(m, "/api/"));
  CHECK(matches_target(m, "/api/users?x"));
  CHECK(matches_target(m, "//api//users"));
  CHECK(matches_target(m, "/%61pi/x"));
  CHECK(matches_target(m, "/x/../api/x"));
  CHECK_FALSE(matches_target(m, "/api"));
  CHECK_FALSE(matches_target(m, "/apix/"));
  CHECK_FALSE(matches_target(m, "/api/../admin"));
  CHECK(matches_target(prefix({"/"}), "/anything"));
  CHECK(matches_target(prefix({"/v1"}), "/v10"));
}

TEST_CASE("path matchers never match a path that does not normalise", "[rules]") {
  CHECK_FALSE(matches_target(prefix({"/"}), "/%zz"));
  CHECK_FALSE(matches_target(path({"/%zz"}), "/%zz"));
  CHECK_FALSE(matches_target(path_regex("."), "/%zz"));
  CHECK_FALSE(matches_target(prefix({"/"}), "*"));
  CHECK(matches_target(not_(prefix({"/"})), "/%zz"));
}

TEST_CASE("path_regex searches the normalised path", "[rules]") {
  Match m = path_regex("^/static/.+\\.(css|js)$");
  CHECK(matches_target(m, "/static/a/b.css"));
  CHECK(matches_target(m, "/static/x.js?v=2"));
  CHECK(matches_target(m, "/static/./a/../b.js"));
  CHECK_FALSE(matches_target(m, "/static/.css"));
  CHECK_FALSE(matches_target(m, "/static/a.jsx"));
  CHECK_FALSE(matches_target(m, "/x/static/a.js"));
  // Unanchored patterns search anywhere.
  CHECK(matches_target(path_regex("v[0-9]+"), "/api/v2/x"));
  CHECK_FALSE(matches_target(path_regex("v[0-9]+"), "/api/vx"));
  CHECK(matches_target(path_regex("^/b$"), "/a/../b"));
}

TEST_CASE("method: exact, case-sensitive", "[rules]") {
  TestRequest get("GET", "/", {{"Host", "h"}});
  TestRequest post("POST", "/", {{"Host", "h"}});
  TestRequest lower("get", "/", {{"Host", "h"}});
  CHECK(matches(method({"GET"}), get));
  CHECK_FALSE(matches(method({"GET"}), post));
  CHECK_FALSE(matches(method({"GET"}), lower));
  CHECK(matches(method({"GET", "POST"}), post));
}

TEST_CASE("header: case-insensitive name, any field value may satisfy", "[rules]") {
  Match canary = header("X-Canary", Op::kExact, "1");
  CHECK(matches_header(canary, {{"x-canary", "1"}}));
  CHECK(matches_header(canary, {{"X-CANARY", " 1 "}}));
  CHECK_FALSE(matches_header(canary, {{"x-canary", "0"}}));
  CHECK_FALSE(matches_header(canary, {{"x-canary", "11"}}));
  CHECK_FALSE(matches_header(canary, {{"x-canaryx", "1"}}));
  CHECK_FALSE(matches_header(canary, {}));
  CHECK(matches_header(canary, {{"X-Canary", "0"}, {"Accept", "*/*"}, {"x-canary", "1"}}));
  // Values are compared exactly (case-sensitive).
  CHECK_FALSE(matches_header(header("x-env", Op::kExact, "Prod"), {{"x-env", "prod"}}));
}

TEST_CASE("header: present, absent and regex", "[rules]") {
  CHECK(matches_header(header("x-debug", Op::kPresent), {{"X-Debug", ""}}));
  CHECK_FALSE(matches_header(header("x-debug", Op::kPresent), {{"X-Other", "1"}}));
  CHECK(matches_header(header("x-debug", Op::kAbsent), {{"X-Other", "1"}}));
  CHECK_FALSE(matches_header(header("x-debug", Op::kAbsent), {{"x-debug", "1"}}));
  Match ua = header("User-Agent", Op::kRegex, "^Mozilla/.*Firefox/[0-9]+");
  CHECK(matches_header(ua, {{"user-agent", "Mozilla/5.0 (X11) Gecko Firefox/115.0"}}));
  CHECK_FALSE(matches_header(ua, {{"user-agent", "curl/8.0 Firefox/1"}}));
  CHECK(matches_header(ua, {{"user-agent", "curl/8.0"}, {"User-Agent", "Mozilla/5 Firefox/9"}}));
  CHECK_FALSE(matches_header(ua, {}));
  // The Host header is a header too.
  CHECK(matches_header(header("host", Op::kExact, "example.com"), {}));
}

TEST_CASE("query: names and values percent-decoded, any occurrence", "[rules]") {
  CHECK(matches_target(query("b", Op::kExact, "2"), "/?a=1&b=2"));
  CHECK_FALSE(matches_target(query("b", Op::kExact, "2"), "/?a=2&bb=2"));
  CHECK(matches_target(query("b", Op::kExact, "3"), "/?b=2&b=3"));
  CHECK(matches_target(query("name", Op::kExact, "hello world"), "/?na%6De=hello+world"));
  CHECK(matches_target(query("x y", Op::kExact, "a&b"), "/p?x%20y=a%26b"));
  CHECK(matches_target(query("a", Op::kExact, "%zz"), "/?a=%zz"));
  CHECK(matches_target(query("a", Op::kExact, "1=2"), "/?a=1=2"));
  CHECK(matches_target(query("a", Op::kExact, ""), "/?a"));
  CHECK_FALSE(matches_target(query("A", Op::kExact, "1"), "/?a=1"));
  CHECK_FALSE(matches_target(query("a", Op::kExact, "1"), "/a=1"));
  CHECK(matches_target(query("a", Op::kExact, "1"), "/?&&a=1&"));
}

TEST_CASE("query: present, absent and regex", "[rules]") {
  CHECK(matches_target(query("flag", Op::kPresent), "/?flag"));
  CHECK(matches_target(query("flag", Op::kPresent), "/?x=1&flag="));
  CHECK_FALSE(matches_target(query("flag", Op::kPresent), "/?flags=1"));
  CHECK_FALSE(matches_target(query("flag", Op::kPresent), "/"));
  CHECK(matches_target(query("flag", Op::kAbsent), "/"));
  CHECK(matches_target(query("flag", Op::kAbsent), "/?"));
  CHECK_FALSE(matches_target(query("flag", Op::kAbsent), "/?flag=0"));
  CHECK(matches_target(query("id", Op::kRegex, "^[0-9]+$"), "/?id=x&id=42"));
  CHECK_FALSE(matches_target(query("id", Op::kRegex, "^[0-9]+$"), "/?id=4x2"));
  CHECK(matches_target(query("q", Op::kRegex, "^a b$"), "/?q=a+b"));
}

TEST_CASE("cookie: every Cookie field, exact names", "[rules]") {
  CHECK(matches_header(cookie("b", Op::kExact, "2"), {{"Cookie", "a=1; b=2"}}));
  CHECK(matches_header(cookie("b", Op::kExact, "2"), {{"Cookie", "a=1"}, {"cookie", "b=2"}}));
  CHECK(matches_header(cookie("a", Op::kExact, "1"), {{"Cookie", "a=1;b=2"}}));
  CHECK_FALSE(matches_header(cookie("b", Op::kExact, "2"), {{"Cookie", "a=1; bb=2"}}));
  CHECK_FALSE(matches_header(cookie("B", Op::kExact, "2"), {{"Cookie", "b=2"}}));
  CHECK_FALSE(matches_header(cookie("b", Op::kExact, "2"), {{"X-Cookie", "b=2"}}));
  CHECK(matches_header(cookie("s", Op::kPresent), {{"Cookie", "a=1; s="}}));
  CHECK_FALSE(matches_header(cookie("s", Op::kPresent), {{"Cookie", "a=1"}}));
  CHECK_FALSE(matches_header(cookie("s", Op::kPresent), {}));
  CHECK(matches_header(cookie("s", Op::kAbsent), {{"Cookie", "a=1"}}));
  CHECK_FALSE(matches_header(cookie("s", Op::kAbsent), {{"Cookie", "s=1"}}));
  CHECK(matches_header(cookie("v", Op::kRegex, "^beta-"), {{"Cookie", "v=alpha; v=beta-2"}}));
  CHECK_FALSE(matches_header(cookie("v", Op::kRegex, "^beta-"), {{"Cookie", "v=alpha-beta-2"}}));
}

TEST_CASE("source: IPv4 and IPv6 CIDRs", "[rules]") {
  Match ten = source({"10.0.0.0/8"});
  CHECK(matches_source(ten, "10.1.2.3"));
  CHECK_FALSE(matches_source(ten, "11.0.0.1"));
  CHECK_FALSE(matches_source(ten, "2001:db8::1"));
  Match odd = source({"192.168.0.0/23"});
  CHECK(matches_source(odd, "192.168.1.5"));
  CHECK_FALSE(matches_source(odd, "192.168.2.1"));
  CHECK(matches_source(source({"203.0.113.7"}), "203.0.113.7"));
  CHECK_FALSE(matches_source(source({"203.0.113.7"}), "203.0.113.8"));
  CHECK(matches_source(source({"0.0.0.0/0"}), "198.51.100.1"));

  Match doc = source({"2001:db8::/32"});
  CHECK(matches_source(doc, "2001:db8::1"));
  CHECK(matches_source(doc, "2001:db8:ffff::1"));
  CHECK_FALSE(matches_source(doc, "2001:db9::1"));
  CHECK_FALSE(matches_source(doc, "10.0.0.1"));
  CHECK(matches_source(source({"::1"}), "::1"));
  CHECK_FALSE(matches_source(source({"::1"}), "::2"));
  CHECK(matches_source(source({"fe80::/10"}), "febf::1"));
  CHECK_FALSE(matches_source(source({"fe80::/10"}), "fec0::1"));
  CHECK(matches_source(source({"10.0.0.0/8", "2001:db8::/32"}), "2001:db8::5"));
}

TEST_CASE("source: IPv4-mapped IPv6 clients match IPv4 CIDRs", "[rules]") {
  CHECK(matches_source(source({"10.0.0.0/8"}), "::ffff:10.1.2.3"));
  CHECK_FALSE(matches_source(source({"10.0.0.0/8"}), "::ffff:11.1.2.3"));
  CHECK_FALSE(matches_source(source({"10.0.0.0/8"}), "::10.1.2.3"));
  CHECK(matches_source(source({"::ffff:10.0.0.0/104"}), "10.9.9.9"));
}

TEST_CASE("combinators: all, any, not and a route without match", "[rules]") {
  Match a = host({"example.com"});
  Match b = prefix({"/api/"});
  CHECK(matches_target(all({}), "/"));
  CHECK_FALSE(matches_target(any({}), "/"));
  CHECK(matches_target(all({a, b}), "/api/x"));
  CHECK_FALSE(matches_target(all({a, b}), "/web/x"));
  CHECK(matches_target(any({b, path({"/web/x"})}), "/web/x"));
  CHECK_FALSE(matches_target(any({b, path({"/web/y"})}), "/web/x"));
  CHECK(matches_target(not_(b), "/web/x"));
  CHECK_FALSE(matches_target(not_(b), "/api/x"));
  CHECK(matches_target(all({a, not_(any({b, path({"/x"})}))}), "/y"));
  CHECK_FALSE(matches_target(all({a, not_(any({b, path({"/x"})}))}), "/x"));
  CHECK(matches_target(all({all({a}), all({b, all({})})}), "/api/1"));

  auto config = make_config({{"main", {to_pool(std::nullopt, "b")}}});
  auto rules = compile_or_die(*config);
  TestRequest r("DELETE", "*", {});
  MatchScratch scratch;
  Decision d = rules->decide(0, r.view(), scratch);
  CHECK(d.route == &config->routes["main"].routes[0]);
  CHECK(d.pool == 1);
}
