#include "rules/request_context.h"

#include <string>

#include "rules/uri_chars.h"

namespace switchyard::rules {

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// "host:port" / "[v6]:port" -> host; the port never takes part in host matching.
std::string_view strip_port(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  return authority.substr(0, authority.find(':'));
}

// An absolute-form target ("http://host/p"); RFC 9112 §3.2.2: its authority overrides Host.
bool split_absolute_form(std::string_view target, std::string_view& authority,
                         std::string_view& rest) {
  if (target.empty() || target.front() == '/') return false;  // origin-form, the usual case
  std::size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return false;
  for (std::size_t i = 0; i < scheme_end; ++i) {
    char c = target[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return false;
  }
  std::string_view after = target.substr(scheme_end + 3);
  std::size_t end = after.find_first_of("/?#");
  authority = after.substr(0, end);
  std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);
  rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  return true;
}

}  // namespace

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool header_name_equals(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower_b[i]) return false;
  }
  return true;
}

std::string_view decode_query_component(std::string_view in, std::string& out) {
  if (in.find_first_of("%+") == std::string_view::npos) return in;
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void RequestContext::init(const RequestView& r, MatchScratch& s) {
  req = &r;
  base = r.base;
  head = r.head;
  scratch = &s;
  method = head->method.in(base);
  target = head->target.in(base);

  std::string_view authority;
  std::string_view rest;  // path + query (+ fragment) of the target
  bool absolute_form = split_absolute_form(target, authority, rest);
  bool have_authority = absolute_form;
  if (!absolute_form) {
    rest = target;
    for (const http::HeaderSpan& h : head->headers) {
      if (header_name_equals(h.name.in(base), "host")) {
        authority = trim_ows(h.value.in(base));
        have_authority = true;
        break;
      }
    }
  }
  rest = rest.substr(0, rest.find('#'));
  std::size_t qmark = rest.find('?');
  has_query = qmark != std::string_view::npos;
  raw_path = rest.substr(0, qmark);
  query = has_query ? rest.substr(qmark + 1) : std::string_view();
  if (raw_path.empty() && absolute_form) {
    raw_path = "/";  // "http://host" and "http://host?q" mean the root
  }

  host_raw = have_authority ? strip_port(authority) : std::string_view();
  std::string_view h = host_raw;
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);  // "example.com." is example.com
  if (h.size() > kMaxHostLength) h = {};
  for (std::size_t i = 0; i < h.size(); ++i) host_buf[i] = lower(h[i]);
  host = std::string_view(host_buf, h.size());

  path_ok = normalize_path(raw_path, s.path);
  path = path_ok ? std::string_view(s.path) : std::string_view();
}

}  // namespace switchyard::rules
