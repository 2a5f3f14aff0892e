// Fuzz target: the rules compiler and matcher (RuleSet::compile/decide, redirects, path
// rewrites, pool keys), through the YAML loader as in production. The input drives a generator
// that writes a configuration (route tables with every matcher and action, strings partly from
// the input), then requests (also from the input) that go through MessageParser first, as in the
// proxy. Oracles:
//   - the indexed matcher (host hash + prefix index) and the plain in-order scan pick the same
//     route for every request;
//   - a redirect answer parses as exactly one response, its Location on one line;
//   - the head forwarded after a rewrite and header edits parses as exactly one request whose
//     target is the rewritten one (origin-form);
//   - no crash or sanitizer report anywhere (RE2, path normalisation, templates, keys).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "config/config_loader.h"
#include "fuzz_support.h"
#include "http/error_page.h"
#include "http/head_writer.h"
#include "http/message_parser.h"
#include "rules/compiled_rule_set.h"
#include "rules/request_key.h"
#include "rules/rule_set.h"

namespace {

using switchyard::fuzz::escape;
using switchyard::http::MessageParser;

// Reads choices from the input; past its end everything is 0.
class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::size_t pick(std::size_t n) { return n ? byte() % n : 0; }
  bool flip() { return byte() & 1; }
  // Up to `max` bytes drawn from `alphabet` (or raw bytes when alphabet is empty).
  std::string text(std::size_t max, std::string_view alphabet) {
    std::size_t len = pick(max + 1);
    std::string s;
    for (std::size_t k = 0; k < len; ++k) {
      std::uint8_t b = byte();
      s.push_back(alphabet.empty() ? static_cast<char>(b) : alphabet[b % alphabet.size()]);
    }
    return s;
  }
  bool empty() const { return i_ >= n_; }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

template <std::size_t N>
std::string choose(Input& in, const char* const (&list)[N], std::size_t max,
                   std::string_view alphabet) {
  std::size_t k = in.pick(N + 1);
  return k < N ? std::string(list[k]) : in.text(max, alphabet);
}

// A YAML double-quoted scalar holding exactly `s`.
std::string q(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", u);
      out += b;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

const char* const kHosts[] = {"example.com", "*.example.com", "a.example.com",
                              "api.test",    "[::1]",         "xn--bcher-kva.example"};
const char* const kPaths[] = {"/", "/api/", "/api", "/v1/", "/static/", "/a/b/c", "/%7Euser/"};
const char* const kRegexes[] = {"^/u/[0-9]+$", "^/api/(.*)$",     "(a|b)+",
                                ".*",          "^/([^/]+)/(.*)$", "\\.(css|js)$"};
const char* const kMethods[] = {"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"};
const char* const kNames[] = {"x-a", "x-user", "cookie", "host", "user-agent", "x-forwarded-for"};
const char* const kValues[] = {"1", "yes", "a b", "", "uid=7; beta=yes", "Mozilla/5.0"};
const char* const kSources[] = {"10.0.0.0/8", "192.0.2.0/24", "::1",
                                "fd00::/8",   "127.0.0.1",    "0.0.0.0/0"};
const char* const kReplaces[] = {"/x\\1", "/\\1/\\2", "/static", "\\1", "/v2/"};
const char* const kTemplates[] = {"{host}",      "www.{host}", "/new{path}",
                                  "{query}&a=1", "https",      "{scheme}"};
constexpr std::string_view kPathChars = "abcxyz019/._-~%?=&+";
constexpr std::string_view kRegexChars = "ab/.*+?()[]^$|\\019-";
constexpr std::string_view kHostChars = "abcxyz019.-*[]:";

void gen_match(Input& in, std::string& y, int depth);

void gen_leaf(Input& in, std::string& y, int depth) {
  switch (in.pick(12)) {
    case 0:
      y += "host: " + q(choose(in, kHosts, 12, kHostChars));
      break;
    case 1:
      y += "path: " + q(choose(in, kPaths, 12, kPathChars));
      break;
    case 2:
      y += "path_prefix: [" + q(choose(in, kPaths, 12, kPathChars)) + ", " +
           q(choose(in, kPaths, 12, kPathChars)) + "]";
      break;
    case 3:
      y += "path_regex: " + q(choose(in, kRegexes, 16, kRegexChars));
      break;
    case 4:
      y += "method: [" + q(choose(in, kMethods, 6, "ABCGETPOS")) + "]";
      break;
    case 5:
    case 6:
    case 7: {
      static const char* const kinds[] = {"header", "query", "cookie"};
      y += std::string(kinds[in.pick(3)]) + ": { " + q(choose(in, kNames, 8, "abx-")) + ": ";
      switch (in.pick(4)) {
        case 0:
          y += q(choose(in, kValues, 8, "ab1 =;"));
          break;
        case 1:
          y += std::string("{ present: ") + (in.flip() ? "true" : "false") + " }";
          break;
        case 2:
          y += "{ exact: " + q(choose(in, kValues, 8, "ab1 =;")) + " }";
          break;
        default:
          y += "{ regex: " + q(choose(in, kRegexes, 12, kRegexChars)) + " }";
      }
      y += " }";
      break;
    }
    case 8:
      y += "source: [" + q(choose(in, kSources, 12, "0123456789./:af")) + "]";
      break;
    case 9:
    case 10:
      if (depth < 3) {
        y += in.flip() ? "any: [" : "all: [";
        std::size_t n = 1 + in.pick(3);
        for (std::size_t k = 0; k < n; ++k) {
          if (k) y += ", ";
          y += "{ ";
          gen_match(in, y, depth + 1);
          y += " }";
        }
        y += "]";
        break;
      }
      [[fallthrough]];
    default:
      if (depth < 3) {
        y += "not: { ";
        gen_match(in, y, depth + 1);
        y += " }";
      } else {
        y += "method: GET";
      }
  }
}

void gen_match(Input& in, std::string& y, int depth) {
  std::size_t n = 1 + in.pick(3);
  for (std::size_t k = 0; k < n; ++k) {
    if (k) y += ", ";
    gen_leaf(in, y, depth);
  }
}

std::string gen_config(Input& in) {
  std::string y =
      "listeners: [{ name: web, bind: 127.0.0.1:0, routes: main }]\n"
      "pools:\n"
      "  a: { servers: [127.0.0.1:9001] }\n"
      "  b: { scheduler: mh, hash: { header: x-user }, servers: [127.0.0.1:9002, 127.0.0.1:9003] "
      "}\n"
      "  c: { persistence: { cookie: srv }, servers: [127.0.0.1:9004] }\n"
      "  d: { scheduler: dh, servers: [127.0.0.1:9005, 127.0.0.1:9006] }\n"
      "routes:\n";
  for (const char* table : {"main", "other"}) {
    y += std::string("  ") + table + ":\n";
    std::size_t routes = 1 + in.pick(14);
    for (std::size_t r = 0; r < routes; ++r) {
      y += "    - ";
      bool matched = in.pick(8) != 0;
      if (matched) {
        y += "match: { ";
        gen_match(in, y, 0);
        y += " }\n      ";
      }
      bool forwards = false;
      switch (in.pick(6)) {
        case 0:
          y += std::string("split: [{ pool: a, weight: ") + std::to_string(in.pick(4)) +
               " }, { pool: b, weight: " + std::to_string(1 + in.pick(9)) + " }]";
          if (in.flip())
            y += std::string("\n      sticky: { ") + (in.flip() ? "cookie" : "header") + ": uid }";
          forwards = true;
          break;
        case 1: {
          static const char* const statuses[] = {"301", "302", "303", "307", "308"};
          y += std::string("redirect: { status: ") + statuses[in.pick(5)];
          if (in.flip()) y += ", scheme: " + q(in.flip() ? "https" : "{scheme}");
          if (in.flip()) y += ", host: " + q(choose(in, kTemplates, 12, "ab.{}host:"));
          if (in.flip()) y += ", path: " + q(choose(in, kTemplates, 12, "/ab{}path"));
          if (in.flip()) y += ", query: " + q(choose(in, kTemplates, 12, "a=&{}query"));
          y += " }";
          break;
        }
        case 2:
          y += "respond: { status: " + std::to_string(200 + in.pick(300)) +
               ", body: " + q(in.text(12, "")) + " }";
          break;
        case 3:
          if (std::string_view(y).find("  other:") == std::string_view::npos) {
            y += "goto: other";
            break;
          }
          [[fallthrough]];
        default:
          y += std::string("pool: ") + "abcd"[in.pick(4)];
          forwards = true;
      }
      if (forwards && in.flip()) {
        if (in.flip()) {
          y += "\n      rewrite: { path_prefix: { from: " + q(choose(in, kPaths, 8, kPathChars)) +
               ", to: " + q(choose(in, kPaths, 8, kPathChars)) + " } }";
        } else {
          y += "\n      rewrite: { path_regex: { pattern: " +
               q(choose(in, kRegexes, 12, kRegexChars)) +
               ", replace: " + q(choose(in, kReplaces, 8, "/\\12ab")) + " } }";
        }
      }
      if (forwards && in.flip()) {
        y += "\n      request_headers: { set: { " + q(choose(in, kNames, 6, "abx-")) + ": " +
             q(choose(in, kValues, 8, "ab1 ")) + " }, remove: [" +
             q(choose(in, kNames, 6, "abx-")) + "] }";
      }
      y += "\n";
    }
  }
  return y;
}

std::string gen_request(Input& in) {
  std::string method = choose(in, kMethods, 6, "GETPOSHADX");
  std::string target;
  switch (in.pick(4)) {
    case 0:
      target =
          "http://" + choose(in, kHosts, 10, "abcxyz.019:") + choose(in, kPaths, 16, kPathChars);
      break;
    default:
      target = choose(in, kPaths, 24, kPathChars);
      if (in.flip()) target += "/" + in.text(16, kPathChars);
  }
  std::string r = method + " " + target + " HTTP/1.1\r\n";
  if (in.pick(8)) r += "Host: " + choose(in, kHosts, 12, "abcxyz.019:[]") + "\r\n";
  std::size_t fields = in.pick(4);
  for (std::size_t k = 0; k < fields; ++k) {
    r += choose(in, kNames, 8, "abx-") + ": " + choose(in, kValues, 12, "ab1 =;uid") + "\r\n";
  }
  return r + "\r\n";
}

// `wire` parses as exactly one message of `kind`; returns the parser for inspection.
void expect_one_message(MessageParser& p, const std::string& wire, bool response,
                        const char* what) {
  p.reset(wire.data());
  switchyard::fuzz::Splitter whole(0);
  auto r = switchyard::fuzz::drive(p, wire, 0, whole);
  FUZZ_CHECK(r.head_complete, std::string(what) + " does not parse (" +
                                  std::string(p.error_reason()) + "): " + escape(wire));
  FUZZ_CHECK(response || (r.message_complete && r.message_end == wire.size()),
             std::string(what) + " is not exactly one message: " + escape(wire));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  std::string yaml = gen_config(in);
  auto loaded = switchyard::config::load_string(yaml, "rules_fuzz.yaml");
  if (!loaded.ok()) return 0;
  const switchyard::config::Config& config = *loaded.config;

  std::string error;
  switchyard::rules::CompileOptions indexed;
  indexed.min_indexed_routes = 1;
  switchyard::rules::CompileOptions scanned;
  scanned.min_indexed_routes = std::numeric_limits<std::size_t>::max();
  auto rs_index = switchyard::rules::compile_rule_set(config, indexed, error);
  FUZZ_CHECK(rs_index != nullptr, "a loaded config does not compile: " + error + "\n" + yaml);
  auto rs_scan = switchyard::rules::compile_rule_set(config, scanned, error);
  FUZZ_CHECK(rs_scan != nullptr, "a loaded config does not compile: " + error);
  int table = rs_index->table_index("main");
  FUZZ_CHECK(table >= 0 && table == rs_scan->table_index("main"), "table index");

  switchyard::rules::MatchScratch scratch;
  MessageParser parser(MessageParser::Kind::kRequest, 100);
  for (int n = 0; n < 8 && !in.empty(); ++n) {
    std::string raw = gen_request(in);
    parser.reset(raw.data());
    switchyard::fuzz::Splitter whole(0);
    auto parsed = switchyard::fuzz::drive(parser, raw, 0, whole);
    if (!parsed.head_complete || !parsed.message_complete) continue;  // the proxy answers 400

    sockaddr_storage ss{};
    if (in.flip()) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr.s6_addr[15] = in.byte();
      a->sin6_addr.s6_addr[0] = in.flip() ? 0xfd : 0;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      std::uint8_t ip[4] = {static_cast<std::uint8_t>(in.flip() ? 10 : 192), 0, 2, in.byte()};
      std::memcpy(&a->sin_addr, ip, 4);
    }
    switchyard::rules::RequestView view{raw.data(), &parser.head(),
                                        reinterpret_cast<const sockaddr*>(&ss), in.flip()};
    auto d1 = rs_index->decide(table, view, scratch);
    auto d2 = rs_scan->decide(table, view, scratch);
    FUZZ_CHECK(d1.route == d2.route,
               "the route index and the scan disagree for " + escape(raw) + "\n" + yaml);
    if (!d1.route) continue;
    if (d1.route->pool) FUZZ_CHECK(d1.pool == d2.pool, "the index and the scan pick other pools");
    if (d1.route->redirect) {
      std::string location;
      rs_index->redirect_location(d1, view, scratch, location);
      std::string out;
      switchyard::http::write_redirect(d1.route->redirect->status, location, true, out);
      MessageParser client(MessageParser::Kind::kResponse, 100);
      expect_one_message(client, out, true, "redirect");
    }
    if (d1.pool >= 0) {
      std::string target;
      bool rewritten = rs_index->rewrite_target(d1, view, scratch, target);
      switchyard::http::RequestForwarding fwd;
      fwd.client_ip = "192.0.2.1";
      fwd.default_host = "127.0.0.1:9001";
      if (rewritten) fwd.target = target;
      if (!d1.route->request_headers.empty()) fwd.edits = &d1.route->request_headers;
      std::string up;
      switchyard::http::write_upstream_request(raw.data(), parser.head(), fwd, up);
      MessageParser origin(MessageParser::Kind::kRequest, 10000);
      expect_one_message(origin, up, false, "forwarded request");
      int hosts = 0;
      for (const auto& f : origin.head().headers) {
        hosts += switchyard::http::iequals(f.name.in(up.data()), "host") ? 1 : 0;
      }
      FUZZ_CHECK(hosts == 1, "the forwarded request has " + std::to_string(hosts) +
                                 " Host fields: " + escape(up));
      if (rewritten) {
        FUZZ_CHECK(origin.head().target.in(up.data()) == target, "rewritten target changed");
        FUZZ_CHECK(!target.empty() && target[0] == '/',
                   "rewritten target is not origin-form: " + escape(target));
      }
      // Pool keys for every pool (schedulers hash these).
      std::size_t k = 0;
      for (const auto& [name, pool] : config.pools) {
        switchyard::rules::PoolKeys keys;
        switchyard::rules::pool_keys(pool, switchyard::config::HashKey::On::kDefault, view, scratch,
                                     keys);
        ++k;
      }
    }
  }
  return 0;
}
