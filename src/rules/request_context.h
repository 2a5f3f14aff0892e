// The per-request facts every matcher needs (host, normalised path, query, ...), derived once at
// the start of RuleSet::decide and then shared by all matchers, so no matcher re-parses the target.
// Internal to src/rules.
#pragma once

#include <cstddef>
#include <string_view>

#include "rules/rule_set.h"

namespace switchyard::rules {

// Longest host name (RFC 1035: 253 octets; a bracketed IPv6 literal is far shorter). A longer
// Host is not a name any host pattern can match, so it is treated as absent.
inline constexpr std::size_t kMaxHostLength = 255;

struct RequestContext {
  const RequestView* req = nullptr;
  const char* base = nullptr;
  const http::Head* head = nullptr;
  MatchScratch* scratch = nullptr;

  std::string_view method;
  std::string_view target;    // as sent
  std::string_view raw_path;  // path of the target before '?', "/" for "http://h" or "http://h?q"
  std::string_view query;     // after '?', empty if none
  bool has_query = false;     // the target contained '?' (possibly with an empty query)
  std::string_view host_raw;  // authority host as sent, port removed
  std::string_view host;      // host_raw lower-cased, trailing '.' removed (points into host_buf)
  std::string_view path;      // normalised raw_path (points into scratch->path)
  bool path_ok = false;       // raw_path normalised; false: path matchers match nothing

  char host_buf[kMaxHostLength];

  RequestContext() = default;
  RequestContext(const RequestContext&) = delete;  // host points into host_buf
  RequestContext& operator=(const RequestContext&) = delete;

  // Fills every field from `req`. Needs only `scratch.path` (normalised path) and no allocation
  // once that string has grown to the longest path seen.
  void init(const RequestView& r, MatchScratch& s);
};

// Strips spaces and tabs from both ends.
std::string_view trim_ows(std::string_view v);

// Calls fn(value) for every field named `name` (case-insensitive), in arrival order, until fn
// returns true; returns whether it did.
template <class Fn>
bool for_each_header(const RequestContext& ctx, std::string_view name, Fn&& fn);

// Calls fn(value) for every cookie named `name` in every Cookie field until fn returns true.
template <class Fn>
bool for_each_cookie(const RequestContext& ctx, std::string_view name, Fn&& fn);

// Calls fn(value) for every query parameter whose percent-decoded name is `name`, with the value
// percent-decoded ('+' = space; undecodable escapes kept as is). Decoding uses scratch->work, so
// `value` is only valid during the call.
template <class Fn>
bool for_each_query_param(const RequestContext& ctx, std::string_view name, Fn&& fn);

// ---- implementation ----

bool header_name_equals(std::string_view a, std::string_view lower_b);

template <class Fn>
bool for_each_header(const RequestContext& ctx, std::string_view name, Fn&& fn) {
  for (const http::HeaderSpan& h : ctx.head->headers) {
    if (h.name.length != name.size()) continue;
    if (!header_name_equals(h.name.in(ctx.base), name)) continue;
    if (fn(trim_ows(h.value.in(ctx.base)))) return true;
  }
  return false;
}

template <class Fn>
bool for_each_cookie(const RequestContext& ctx, std::string_view name, Fn&& fn) {
  return for_each_header(ctx, "cookie", [&](std::string_view field) {
    while (!field.empty()) {
      std::size_t semi = field.find(';');
      std::string_view pair = trim_ows(field.substr(0, semi));
      std::size_t eq = pair.find('=');
      if (eq != std::string_view::npos && trim_ows(pair.substr(0, eq)) == name &&
          fn(trim_ows(pair.substr(eq + 1)))) {
        return true;
      }
      if (semi == std::string_view::npos) break;
      field.remove_prefix(semi + 1);
    }
    return false;
  });
}

// Decodes a query component into `out` (overwritten). Plain components are returned as is,
// without touching `out`, which is the common case and saves the copy.
std::string_view decode_query_component(std::string_view in, std::string& out);

template <class Fn>
bool for_each_query_param(const RequestContext& ctx, std::string_view name, Fn&& fn) {
  std::string_view q = ctx.query;
  while (true) {
    std::size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (!pair.empty()) {
      std::size_t eq = pair.find('=');
      std::string_view raw_name = pair.substr(0, eq);
      std::string_view raw_value =
          eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      if (decode_query_component(raw_name, ctx.scratch->work) == name &&
          fn(decode_query_component(raw_value, ctx.scratch->work))) {
        return true;
      }
    }
    if (amp == std::string_view::npos) return false;
    q.remove_prefix(amp + 1);
  }
}

}  // namespace switchyard::rules
