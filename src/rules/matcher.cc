#include "rules/matcher.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "rules/uri_chars.h"

namespace switchyard::rules {

namespace {

using Kind = config::Match::Kind;
using Op = config::ValueTest::Op;

std::string lower_copy(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

template <class Fn>
bool test_values(const Matcher& m, Fn&& for_each) {
  switch (m.op) {
    case Op::kPresent:
      return for_each([](std::string_view) { return true; });
    case Op::kAbsent:
      return !for_each([](std::string_view) { return true; });
    case Op::kExact:
      return for_each([&](std::string_view v) { return v == m.value; });
    case Op::kRegex:
      return for_each([&](std::string_view v) { return RE2::PartialMatch(v, *m.regex); });
  }
  return false;
}

bool compile_regex(const std::string& pattern, std::unique_ptr<RE2>& out, std::string& error) {
  out = std::make_unique<RE2>(pattern, regex_options());
  if (out->ok()) return true;
  error = "invalid regular expression \"" + pattern + "\": " + out->error();
  return false;
}

// The address as 16 bytes of IPv6, IPv4 mapped to ::ffff:a.b.c.d; false for other families.
bool as_v6(int family, const std::uint8_t* bytes, std::uint8_t out[16]) {
  if (family == AF_INET6) {
    std::memcpy(out, bytes, 16);
    return true;
  }
  if (family == AF_INET) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, bytes, 4);
    return true;
  }
  return false;
}

}  // namespace

RE2::Options regex_options() {
  RE2::Options o;
  o.set_log_errors(false);
  return o;
}

bool HostPatterns::matches(std::string_view host) const {
  if (host.empty()) return false;
  if (any) return true;
  for (const std::string& e : exact) {
    if (host == e) return true;
  }
  for (const std::string& s : suffixes) {
    if (host.size() > s.size() && host.ends_with(s)) return true;
  }
  return false;
}

HostPatterns compile_host_patterns(const std::vector<std::string>& patterns) {
  HostPatterns h;
  for (const std::string& p : patterns) {
    std::string lp = lower_copy(p);
    if (!lp.empty() && lp.back() == '.') lp.pop_back();  // as the request host
    if (lp == "*") {
      h.any = true;
    } else if (lp.starts_with("*.")) {
      h.suffixes.push_back(lp.substr(1));
    } else {
      h.exact.push_back(std::move(lp));
    }
  }
  return h;
}

std::string normalize_path_pattern(std::string_view pattern) {
  std::string out;
  append_normalised_escapes(pattern, out, /*strict=*/false);
  return out;
}

bool address_in(const sockaddr* client, const Cidr& cidr) {
  if (client == nullptr) return false;
  const std::uint8_t* bytes;
  int family = client->sa_family;
  if (family == AF_INET) {
    bytes = reinterpret_cast<const std::uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(client)->sin_addr);
  } else if (family == AF_INET6) {
    bytes = reinterpret_cast<const std::uint8_t*>(
        &reinterpret_cast<const sockaddr_in6*>(client)->sin6_addr);
  } else {
    return false;
  }
  // Compare in the IPv6 space so an IPv4 client on a dual-stack socket (::ffff:a.b.c.d) and an
  // IPv4 CIDR meet, whichever of the two is written which way.
  std::uint8_t addr[16], net[16];
  if (!as_v6(family, bytes, addr) || !as_v6(cidr.family, cidr.address, net)) return false;
  int bits = cidr.prefix_length + (cidr.family == AF_INET ? 96 : 0);
  int whole = bits / 8;
  if (std::memcmp(addr, net, whole) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (addr[whole] & mask) == (net[whole] & mask);
}

bool Matcher::matches(const RequestContext& ctx) const {
  switch (kind) {
    case Kind::kAll:
      for (const Matcher& c : children) {
        if (!c.matches(ctx)) return false;
      }
      return true;
    case Kind::kAny:
      for (const Matcher& c : children) {
        if (c.matches(ctx)) return true;
      }
      return false;
    case Kind::kNot:
      return !children.empty() && !children.front().matches(ctx);
    case Kind::kHost:
      return hosts.matches(ctx.host);
    case Kind::kPath:
      if (!ctx.path_ok) return false;
      for (const std::string& p : strings) {
        if (ctx.path == p) return true;
      }
      return false;
    case Kind::kPathPrefix:
      if (!ctx.path_ok) return false;
      for (const std::string& p : strings) {
        if (ctx.path.starts_with(p)) return true;
      }
      return false;
    case Kind::kPathRegex:
      return ctx.path_ok && RE2::PartialMatch(ctx.path, *regex);
    case Kind::kMethod:
      for (const std::string& m : strings) {
        if (ctx.method == m) return true;
      }
      return false;
    case Kind::kHeader:
      return test_values(*this, [&](auto&& fn) { return for_each_header(ctx, name, fn); });
    case Kind::kQuery:
      return test_values(*this, [&](auto&& fn) { return for_each_query_param(ctx, name, fn); });
    case Kind::kCookie:
      return test_values(*this, [&](auto&& fn) { return for_each_cookie(ctx, name, fn); });
    case Kind::kSource:
      for (const Cidr& c : cidrs) {
        if (address_in(ctx.req->client, c)) return true;
      }
      return false;
  }
  return false;
}

bool compile_match(const config::Match& m, Matcher& out, std::string& error) {
  out.kind = m.kind;
  switch (m.kind) {
    case Kind::kAll:
    case Kind::kAny:
    case Kind::kNot:
      out.children.resize(m.children.size());
      for (std::size_t i = 0; i < m.children.size(); ++i) {
        if (!compile_match(m.children[i], out.children[i], error)) return false;
      }
      return true;
    case Kind::kHost:
      out.hosts = compile_host_patterns(m.patterns);
      return true;
    case Kind::kPath:
    case Kind::kPathPrefix:
      for (const std::string& p : m.patterns) out.strings.push_back(normalize_path_pattern(p));
      return true;
    case Kind::kPathRegex:
      if (m.patterns.empty()) {
        error = "path_regex without a pattern";
        return false;
      }
      return compile_regex(m.patterns.front(), out.regex, error);
    case Kind::kMethod:
      out.strings = m.patterns;
      return true;
    case Kind::kHeader:
    case Kind::kQuery:
    case Kind::kCookie:
      out.name = m.kind == Kind::kHeader ? lower_copy(m.name) : m.name;
      out.op = m.test.op;
      out.value = m.test.value;
      return m.test.op != Op::kRegex || compile_regex(m.test.value, out.regex, error);
    case Kind::kSource:
      for (const config::Cidr& c : m.cidrs) {
        Cidr cc;
        cc.family = c.family;
        std::memcpy(cc.address, c.address, sizeof cc.address);
        int max_bits = c.family == AF_INET ? 32 : 128;
        cc.prefix_length = c.prefix_length < 0 ? 0 : std::min(c.prefix_length, max_bits);
        out.cidrs.push_back(cc);
      }
      return true;
  }
  error = "unknown match kind";
  return false;
}

bool compile_conjunction(const std::vector<const config::Match*>& parts, Matcher& out,
                         std::string& error) {
  out.kind = Kind::kAll;
  out.children.resize(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (!compile_match(*parts[i], out.children[i], error)) return false;
  }
  return true;
}

}  // namespace switchyard::rules
