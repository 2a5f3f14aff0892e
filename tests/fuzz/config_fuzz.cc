// Fuzz target: the YAML configuration loader (config::load_string) and what the proxy builds from
// a configuration it accepted. Oracles:
//   - never a crash, hang or sanitizer report on any input; a refusal always has diagnostics
//     with positions inside the file;
//   - whatever ends up on the wire is well formed: header edits, `respond` headers, health check
//     requests and redirect templates hold no CR/LF/NUL (no header injection from a config),
//     and every `respond` answer parses as exactly one HTTP response;
//   - a configuration the loader accepts compiles into a RuleSet (the loader promises it).
//
// Input: the YAML text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config_loader.h"
#include "fuzz_support.h"
#include "http/error_page.h"
#include "http/message_parser.h"
#include "rules/rule_set.h"

namespace {

using switchyard::fuzz::escape;
using switchyard::fuzz::is_token;
namespace config = switchyard::config;

bool clean(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

void check_header(const config::Header& h, const char* what) {
  FUZZ_CHECK(is_token(h.name),
             std::string(what) + " header name is not a token: " + escape(h.name));
  for (char c : h.value) {
    FUZZ_CHECK(switchyard::fuzz::is_field_char(static_cast<unsigned char>(c)),
               std::string(what) + " header value with a control character: " + escape(h.value));
  }
}

void check_edits(const config::HeaderEdits& e) {
  for (const auto& h : e.set) check_header(h, "set");
  for (const auto& h : e.add) check_header(h, "add");
  for (const auto& n : e.remove)
    FUZZ_CHECK(is_token(n), "remove name is not a token: " + escape(n));
}

// The answer written for `r` parses as one complete response.
void check_respond(const config::Respond& r) {
  FUZZ_CHECK(r.status >= 100 && r.status <= 599, "respond status out of range");
  for (const auto& h : r.headers) check_header(h, "respond");
  for (bool head : {false, true}) {
    std::string out;
    switchyard::http::write_respond(r, true, head, out);
    switchyard::http::MessageParser p(switchyard::http::MessageParser::Kind::kResponse, 10000);
    p.reset(out.data());
    p.set_request_was_head(head);
    switchyard::fuzz::Splitter whole(0);
    auto parsed = switchyard::fuzz::drive(p, out, 0, whole);
    bool interim = r.status / 100 == 1;
    FUZZ_CHECK(parsed.head_complete, "respond answer does not parse: " + escape(out) + " (" +
                                         std::string(p.error_reason()) + ")");
    FUZZ_CHECK(interim || (parsed.message_complete && parsed.message_end == out.size()),
               "respond answer is not exactly one response: " + escape(out));
    if (!head && !interim) FUZZ_CHECK(parsed.body == r.body, "respond body changed on the wire");
  }
}

void check_match(const config::Match& m, int depth) {
  FUZZ_CHECK(depth < 1000, "match nesting without bound");
  for (const auto& c : m.children) check_match(c, depth + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  config::LoadResult r = config::load_string(yaml, "fuzz.yaml");
  if (!r.ok()) {
    FUZZ_CHECK(!r.diagnostics.empty(), "refused without a diagnostic");
    std::size_t lines = 1;
    for (char c : yaml) lines += c == '\n';
    for (const auto& d : r.diagnostics) {
      FUZZ_CHECK(!d.message.empty(), "empty diagnostic");
      FUZZ_CHECK(d.line >= 0 && static_cast<std::size_t>(d.line) <= lines + 1 && d.column >= 0,
                 "diagnostic outside the file: " + d.to_string());
      (void)d.to_string();
    }
    return 0;
  }
  FUZZ_CHECK(r.diagnostics.empty(), "accepted with diagnostics");
  const config::Config& c = *r.config;
  for (const auto& [name, table] : c.routes) {
    for (const config::Route& route : table.routes) {
      check_edits(route.request_headers);
      check_edits(route.response_headers);
      if (route.respond) check_respond(*route.respond);
      if (route.fallback_respond) check_respond(*route.fallback_respond);
      if (route.match) check_match(*route.match, 0);
      if (route.redirect) {
        const config::Redirect& rd = *route.redirect;
        for (const auto* part : {&rd.scheme, &rd.host, &rd.path, &rd.query}) {
          if (*part) FUZZ_CHECK(clean(**part), "redirect template with CR/LF/NUL");
        }
      }
      if (route.rewrite.kind != config::PathRewrite::Kind::kNone) {
        FUZZ_CHECK(
            route.rewrite.to.find_first_of(std::string_view(" \t\r\n\0", 5)) == std::string::npos,
            "rewrite replacement would break the request line: " + escape(route.rewrite.to));
      }
    }
  }
  for (const auto& [name, pool] : c.pools) {
    if (pool.health && pool.health->kind == config::HealthCheck::Kind::kHttp) {
      const config::HealthCheck& hc = *pool.health;
      FUZZ_CHECK(is_token(hc.method), "health check method is not a token: " + escape(hc.method));
      FUZZ_CHECK(!hc.path.empty() &&
                     hc.path.find_first_of(std::string_view(" \r\n\0\t", 5)) == std::string::npos,
                 "health check path would break the request line: " + escape(hc.path));
      FUZZ_CHECK(clean(hc.host) && hc.host.find(' ') == std::string::npos,
                 "health check Host with CR/LF/NUL/space: " + escape(hc.host));
    }
    if (pool.persistence.kind == config::Persistence::Kind::kCookie) {
      FUZZ_CHECK(is_token(pool.persistence.cookie), "persistence cookie name is not a token");
    }
  }
  std::string error;
  auto rules = switchyard::rules::RuleSet::compile(c, error);
  FUZZ_CHECK(rules != nullptr,
             "the loader accepted a configuration the rules compiler refuses: " + error);
  return 0;
}
