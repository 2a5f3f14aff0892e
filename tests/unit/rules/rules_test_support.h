// Builders for rules tests: requests as parsed heads over a buffer, and config model pieces, so
// the tests do not depend on the YAML loader or on llhttp.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "http/message_parser.h"
#include "rules/compiled_rule_set.h"
#include "rules/rule_set.h"

namespace switchyard::rules::testing {

using config::Match;
using Kind = config::Match::Kind;
using Op = config::ValueTest::Op;

class TestRequest {
 public:
  TestRequest(std::string method, std::string target,
              std::vector<std::pair<std::string, std::string>> headers = {},
              const char* client = "192.0.2.1") {
    auto add = [this](const std::string& s) {
      http::Span span{static_cast<std::uint32_t>(buf_.size()),
                      static_cast<std::uint32_t>(s.size())};
      buf_ += s;
      return span;
    };
    head_.method = add(method);
    buf_ += ' ';
    head_.target = add(target);
    buf_ += " HTTP/1.1\r\n";
    for (const auto& [name, value] : headers) {
      http::HeaderSpan h;
      h.name = add(name);
      buf_ += ": ";
      h.value = add(value);
      buf_ += "\r\n";
      head_.headers.push_back(h);
    }
    buf_ += "\r\n";
    set_client(client);
  }

  void set_client(const char* text) {
    std::memset(&client_, 0, sizeof client_);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&client_);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&client_);
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
    }
  }

  RequestView view() const {
    RequestView v;
    v.base = buf_.data();
    v.head = &head_;
    v.client = reinterpret_cast<const sockaddr*>(&client_);
    return v;
  }

  TestRequest(const TestRequest&) = delete;  // the view points into this object

 private:
  std::string buf_;
  http::Head head_;
  sockaddr_storage client_{};
};

inline Match leaf(Kind kind, std::vector<std::string> patterns) {
  Match m;
  m.kind = kind;
  m.patterns = std::move(patterns);
  return m;
}
inline Match host(std::vector<std::string> p) {
  return leaf(Kind::kHost, std::move(p));
}
inline Match path(std::vector<std::string> p) {
  return leaf(Kind::kPath, std::move(p));
}
inline Match prefix(std::vector<std::string> p) {
  return leaf(Kind::kPathPrefix, std::move(p));
}
inline Match path_regex(std::string p) {
  return leaf(Kind::kPathRegex, {std::move(p)});
}
inline Match method(std::vector<std::string> p) {
  return leaf(Kind::kMethod, std::move(p));
}

inline Match valued(Kind kind, std::string name, Op op, std::string value = {}) {
  Match m;
  m.kind = kind;
  m.name = std::move(name);
  m.test.op = op;
  m.test.value = std::move(value);
  return m;
}
inline Match header(std::string n, Op op, std::string v = {}) {
  return valued(Kind::kHeader, std::move(n), op, std::move(v));
}
inline Match query(std::string n, Op op, std::string v = {}) {
  return valued(Kind::kQuery, std::move(n), op, std::move(v));
}
inline Match cookie(std::string n, Op op, std::string v = {}) {
  return valued(Kind::kCookie, std::move(n), op, std::move(v));
}

inline config::Cidr cidr(const std::string& text) {
  config::Cidr c;
  c.text = text;
  std::size_t slash = text.find('/');
  std::string addr = text.substr(0, slash);
  if (inet_pton(AF_INET, addr.c_str(), c.address) == 1) {
    c.family = AF_INET;
    c.prefix_length = 32;
  } else {
    inet_pton(AF_INET6, addr.c_str(), c.address);
    c.family = AF_INET6;
    c.prefix_length = 128;
  }
  if (slash != std::string::npos) c.prefix_length = std::stoi(text.substr(slash + 1));
  return c;
}
inline Match source(std::initializer_list<const char*> cidrs) {
  Match m;
  m.kind = Kind::kSource;
  for (const char* c : cidrs) m.cidrs.push_back(cidr(c));
  return m;
}

inline Match combine(Kind kind, std::vector<Match> children) {
  Match m;
  m.kind = kind;
  m.children = std::move(children);
  return m;
}
inline Match all(std::vector<Match> c) {
  return combine(Kind::kAll, std::move(c));
}
inline Match any(std::vector<Match> c) {
  return combine(Kind::kAny, std::move(c));
}
inline Match not_(Match c) {
  return combine(Kind::kNot, {std::move(c)});
}

inline config::Route to_pool(std::optional<Match> m, std::string pool) {
  config::Route r;
  r.match = std::move(m);
  r.pool = std::move(pool);
  return r;
}
inline config::Route go_to(std::optional<Match> m, std::string table) {
  config::Route r;
  r.match = std::move(m);
  r.go_to = std::move(table);
  return r;
}

// A config with pools "a" .. "e" (indices 0 .. 4) and the given tables.
inline std::unique_ptr<config::Config> make_config(
    std::vector<std::pair<std::string, std::vector<config::Route>>> tables) {
  auto c = std::make_unique<config::Config>();
  c->source_path = "<test>";
  for (const char* p : {"a", "b", "c", "d", "e"}) c->pools[p].name = p;
  for (auto& [name, routes] : tables) {
    config::RouteTable& t = c->routes[name];
    t.name = name;
    t.routes = std::move(routes);
  }
  return c;
}

inline std::unique_ptr<RuleSet> compile_or_die(const config::Config& c,
                                               std::size_t min_indexed = 8) {
  std::string error;
  CompileOptions o;
  o.min_indexed_routes = min_indexed;
  auto rs = compile_rule_set(c, o, error);
  if (!rs) throw std::runtime_error("compile failed: " + error);
  return rs;
}

inline constexpr std::size_t kNeverIndex = std::numeric_limits<std::size_t>::max();

}  // namespace switchyard::rules::testing
