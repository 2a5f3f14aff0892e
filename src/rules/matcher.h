// Compiled form of a config::Match tree: host patterns lower-cased and split into exact names and
// wildcard suffixes, path patterns escape-normalised, regexes compiled once. Evaluated against a
// RequestContext with no allocation. Internal to src/rules.
#pragma once

#include <re2/re2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "rules/request_context.h"

namespace switchyard::rules {

// Host patterns of one kHost matcher.
struct HostPatterns {
  std::vector<std::string> exact;     // "example.com", lower-cased
  std::vector<std::string> suffixes;  // "*.example.com" stored as ".example.com"
  bool any = false;                   // a bare "*": any non-empty host

  bool matches(std::string_view lower_host) const;
};

HostPatterns compile_host_patterns(const std::vector<std::string>& patterns);

// Normalises the escapes of a configured path pattern the way normalize_path does for requests
// ("/%7euser" -> "/~user", "%2f" -> "%2F"), so patterns and paths compare in one form. Dot
// segments and slashes are left alone: in a prefix they are not a path of their own.
std::string normalize_path_pattern(std::string_view pattern);

struct Cidr {
  int family = 0;
  std::uint8_t address[16] = {};
  int prefix_length = 0;
};

struct Matcher {
  config::Match::Kind kind = config::Match::Kind::kAll;
  std::vector<Matcher> children;
  HostPatterns hosts;
  std::vector<std::string> strings;  // kPath, kPathPrefix (normalised), kMethod
  std::string name;                  // kHeader (lower-cased), kQuery, kCookie
  config::ValueTest::Op op = config::ValueTest::Op::kPresent;
  std::string value;           // kExact
  std::unique_ptr<RE2> regex;  // kPathRegex, value kRegex
  std::vector<Cidr> cidrs;     // kSource

  bool matches(const RequestContext& ctx) const;
};

// Options for every RE2 the rules compile: no logging to stderr (errors are returned instead).
RE2::Options regex_options();

// Compiles `m` into `out`; false with `error` set if a regex does not compile.
bool compile_match(const config::Match& m, Matcher& out, std::string& error);

// Compiles the conjunction of `parts` (a kAll matcher).
bool compile_conjunction(const std::vector<const config::Match*>& parts, Matcher& out,
                         std::string& error);

// True if the client address lies in `cidr`; IPv4 and IPv4-mapped IPv6 addresses are the same
// address for this purpose.
bool address_in(const sockaddr* client, const Cidr& cidr);

}  // namespace switchyard::rules
