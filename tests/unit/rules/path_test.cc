#include <catch2/catch.hpp>
#include <string>

#include "rules/rule_set.h"

using switchyard::rules::normalize_path;

namespace {

std::string norm(const std::string& in) {
  std::string out = "garbage";  // overwritten, not appended to
  REQUIRE(normalize_path(in, out));
  return out;
}

bool valid(const std::string& in) {
  std::string out;
  return normalize_path(in, out);
}

}  // namespace

TEST_CASE("normalize_path decodes unreserved escapes", "[rules]") {
  CHECK(norm("/%41") == "/A");
  CHECK(norm("/%7E") == "/~");
  CHECK(norm("/%7euser") == "/~user");
  CHECK(norm("/%61%62%63-%2D%2e%5F%30") == "/abc--._0");
}

TEST_CASE("normalize_path keeps reserved escapes encoded with upper-case hex", "[rules]") {
  CHECK(norm("/a%2fb") == "/a%2Fb");
  CHECK(norm("/a%2Fb") == "/a%2Fb");
  CHECK(norm("/%3f%20%25") == "/%3F%20%25");
  CHECK(norm("/%c3%a9") == "/%C3%A9");
  // An encoded slash is data, not a separator: it does not take part in dot segments.
  CHECK(norm("/a/..%2fb") == "/a/..%2Fb");
}

TEST_CASE("normalize_path resolves dot segments", "[rules]") {
  CHECK(norm("/a/./b/../c") == "/a/c");
  CHECK(norm("/a/b/..") == "/a/");
  CHECK(norm("/a/b/.") == "/a/b/");
  CHECK(norm("/./") == "/");
  CHECK(norm("/a/..") == "/");
  CHECK(norm("/a/b/c/../../d") == "/a/d");
  CHECK(norm("/a/.b/..c/...") == "/a/.b/..c/...");
  // Escaped dots are dots: "%2e%2e" cannot smuggle a ".." past the path rules.
  CHECK(norm("/a/%2e%2E/b") == "/b");
  CHECK(norm("/a/%2e/b") == "/a/b");
}

TEST_CASE("normalize_path never climbs above the root", "[rules]") {
  CHECK(norm("/../a") == "/a");
  CHECK(norm("/..") == "/");
  CHECK(norm("/../../..") == "/");
  CHECK(norm("/a/../../b") == "/b");
}

TEST_CASE("normalize_path merges repeated slashes and keeps the trailing one", "[rules]") {
  CHECK(norm("//a///b") == "/a/b");
  CHECK(norm("/a/b/") == "/a/b/");
  CHECK(norm("/a//") == "/a/");
  CHECK(norm("///") == "/");
  CHECK(norm("/") == "/");
  CHECK(norm("/a//../b") == "/b");
}

TEST_CASE("normalize_path rejects malformed escapes and relative paths", "[rules]") {
  CHECK_FALSE(valid("/%zz"));
  CHECK_FALSE(valid("/%"));
  CHECK_FALSE(valid("/a%4"));
  CHECK_FALSE(valid("/a%4g"));
  CHECK_FALSE(valid(""));
  CHECK_FALSE(valid("a"));
  CHECK_FALSE(valid("*"));
  CHECK_FALSE(valid("a/b"));
  CHECK(valid("/%25"));
}
