#include "rules/request_key.h"

#include <netinet/in.h>

#include <cstring>

#include "rules/hash.h"
#include "rules/request_context.h"

namespace switchyard::rules {
namespace {

// Address bytes of the client (IPv4-mapped IPv6 counts as IPv4, so a dual-stack listener hashes
// a client the same way whichever family it arrived on).
std::size_t address_bytes(const sockaddr* sa, std::uint8_t out[16], std::uint16_t& port) {
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::memcpy(out, &in->sin_addr, 4);
    port = in->sin_port;
    return 4;
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  port = in6->sin6_port;
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    std::memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
    return 4;
  }
  std::memcpy(out, in6->sin6_addr.s6_addr, 16);
  return 16;
}

std::uint64_t hash_bytes(const std::uint8_t* p, std::size_t n, std::uint64_t extra) {
  return stable_hash(std::string_view(reinterpret_cast<const char*>(p), n)) ^ mix64(extra);
}

std::uint64_t source_hash(const sockaddr* client, bool with_port) {
  std::uint8_t a[16];
  std::uint16_t port = 0;
  std::size_t n = address_bytes(client, a, port);
  return hash_bytes(a, n, with_port ? port + 1u : 0u);
}

}  // namespace

std::uint64_t masked_source_hash(const sockaddr* client, int v4_bits, int v6_bits) {
  std::uint8_t a[16];
  std::uint16_t port = 0;
  std::size_t n = address_bytes(client, a, port);
  int bits = n == 4 ? v4_bits : v6_bits;
  for (std::size_t i = 0; i < n; ++i) {
    int keep = bits - static_cast<int>(i) * 8;
    if (keep >= 8) continue;
    a[i] = keep <= 0 ? 0 : static_cast<std::uint8_t>(a[i] & (0xff << (8 - keep)));
  }
  return hash_bytes(a, n, static_cast<std::uint64_t>(bits));
}

void pool_keys(const config::Pool& pool, config::HashKey::On default_on, const RequestView& req,
               MatchScratch& scratch, PoolKeys& out) {
  using On = config::HashKey::On;
  out = PoolKeys{};
  const config::Persistence& p = pool.persistence;
  if (p.kind == config::Persistence::Kind::kSource && req.client) {
    out.source = masked_source_hash(req.client, p.netmask_v4, p.netmask_v6);
    out.has_source = true;
  }
  On on = pool.hash.on == On::kDefault ? default_on : pool.hash.on;
  bool needs_context = p.kind == config::Persistence::Kind::kCookie || on == On::kHeader ||
                       on == On::kCookie || on == On::kUrl;
  if (on == On::kDefault && !needs_context) return;
  if (!needs_context) {
    out.hash = req.client ? source_hash(req.client, on == On::kSourcePort) : 0;
    out.has_hash = true;
    return;
  }
  RequestContext ctx;
  ctx.init(req, scratch);
  if (p.kind == config::Persistence::Kind::kCookie) {
    for_each_cookie(ctx, p.cookie, [&](std::string_view v) {
      out.cookie = v;
      return true;
    });
  }
  switch (on) {
    case On::kDefault:
      return;
    case On::kSource:
    case On::kSourcePort:
      out.hash = req.client ? source_hash(req.client, on == On::kSourcePort) : 0;
      break;
    case On::kUrl: {
      // The normalised path (what routes matched) and the query: equal URLs, equal servers.
      std::uint64_t h = stable_hash(ctx.path_ok ? ctx.path : ctx.raw_path);
      out.hash = ctx.has_query ? h ^ mix64(stable_hash(ctx.query)) : h;
      break;
    }
    case On::kHeader:
    case On::kCookie: {
      // A request without the value hashes by client address, so it still spreads.
      bool found = false;
      auto take = [&](std::string_view v) {
        out.hash = stable_hash(v);
        found = true;
        return true;
      };
      if (on == On::kHeader) {
        std::string& lower = scratch.work;
        lower.assign(pool.hash.name);
        for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        for_each_header(ctx, lower, take);
      } else {
        for_each_cookie(ctx, pool.hash.name, take);
      }
      if (!found) out.hash = req.client ? source_hash(req.client, false) : 0;
      break;
    }
  }
  out.has_hash = true;
}

}  // namespace switchyard::rules
