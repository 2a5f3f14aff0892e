// Builds Ethernet frames for the L4 data-path tests and benchmark, with every checksum computed
// from scratch (not incrementally, as the data path does), so a test that compares the program's
// output with a frame built here checks the program's checksum arithmetic independently.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace switchyard::l4::test {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;

inline Mac mac(std::uint8_t last, std::uint8_t fifth = 0) {
  return Mac{0x02, 0, 0, 0, fifth, last};
}

struct Ip {
  int family = AF_INET;
  std::uint8_t bytes[16] = {};
  std::size_t size() const { return family == AF_INET ? 4 : 16; }
};

inline Ip ip(const std::string& text) {
  Ip a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes) == 1) return a;
  a.family = AF_INET6;
  if (inet_pton(AF_INET6, text.c_str(), a.bytes) == 1) return a;
  throw std::invalid_argument("bad address " + text);
}

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;

// A transport-level description of one packet.
struct Flow {
  std::string src;
  std::string dst;
  std::uint16_t sport = 40000;
  std::uint16_t dport = 80;
  std::uint8_t proto = IPPROTO_TCP;
  std::uint8_t tcp_flags = kSyn;
  std::string payload = "hello";
  std::uint8_t tos = 0;
  bool udp_no_checksum = false;  // IPv4 UDP with checksum 0
};

inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

// Ones' complement sum of big-endian 16-bit words (an odd last byte is padded with zero).
inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2)
    acc += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) acc += static_cast<std::uint32_t>(p[n - 1] << 8);
  return acc;
}

inline std::uint16_t fold(std::uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<std::uint16_t>(~acc & 0xffff);
}

// TCP/UDP header + payload with its checksum over the pseudo-header.
inline Bytes transport(const Flow& f) {
  const Ip s = ip(f.src), d = ip(f.dst);
  Bytes seg;
  if (f.proto == IPPROTO_TCP) {
    seg.assign(20, 0);
    put16(seg, 0, f.sport);
    put16(seg, 2, f.dport);
    seg[4] = 0x12;  // sequence number, arbitrary but fixed
    seg[7] = 0x34;
    seg[12] = 5 << 4;  // data offset: 5 words
    seg[13] = f.tcp_flags;
    put16(seg, 14, 64240);  // window
  } else {
    seg.assign(8, 0);
    put16(seg, 0, f.sport);
    put16(seg, 2, f.dport);
  }
  seg.insert(seg.end(), f.payload.begin(), f.payload.end());
  if (f.proto == IPPROTO_UDP) put16(seg, 4, static_cast<std::uint16_t>(seg.size()));
  if (f.proto == IPPROTO_UDP && f.udp_no_checksum && s.family == AF_INET) return seg;
  std::uint32_t acc = sum16(s.bytes, s.size());
  acc = sum16(d.bytes, d.size(), acc);
  acc += f.proto;
  acc += static_cast<std::uint32_t>(seg.size());
  acc = sum16(seg.data(), seg.size(), acc);
  std::uint16_t c = fold(acc);
  if (f.proto == IPPROTO_UDP && c == 0) c = 0xffff;
  put16(seg, f.proto == IPPROTO_TCP ? 16 : 6, c);
  return seg;
}

// An IP header (IPv4: no options, id 0, DF clear; IPv6: no extension headers) around `payload`.
inline Bytes ip_packet(const Ip& s, const Ip& d, std::uint8_t proto, const Bytes& payload,
                       std::uint8_t tos = 0, std::uint8_t ttl = 64) {
  Bytes h;
  if (s.family == AF_INET) {
    h.assign(20, 0);
    h[0] = 0x45;
    h[1] = tos;
    put16(h, 2, static_cast<std::uint16_t>(20 + payload.size()));
    h[8] = ttl;
    h[9] = proto;
    std::memcpy(&h[12], s.bytes, 4);
    std::memcpy(&h[16], d.bytes, 4);
    put16(h, 10, fold(sum16(h.data(), 20)));
  } else {
    h.assign(40, 0);
    h[0] = static_cast<std::uint8_t>(0x60 | tos >> 4);
    h[1] = static_cast<std::uint8_t>((tos & 0xf) << 4);
    put16(h, 4, static_cast<std::uint16_t>(payload.size()));
    h[6] = proto;
    h[7] = ttl;
    std::memcpy(&h[8], s.bytes, 16);
    std::memcpy(&h[24], d.bytes, 16);
  }
  h.insert(h.end(), payload.begin(), payload.end());
  return h;
}

inline Bytes ethernet(const Mac& dst, const Mac& src, std::uint16_t type, const Bytes& payload) {
  Bytes f(dst.begin(), dst.end());
  f.insert(f.end(), src.begin(), src.end());
  f.push_back(static_cast<std::uint8_t>(type >> 8));
  f.push_back(static_cast<std::uint8_t>(type));
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

inline std::uint16_t ethertype(int family) {
  return family == AF_INET ? 0x0800 : 0x86dd;
}

// A complete frame for `f`.
inline Bytes frame(const Flow& f, const Mac& dst, const Mac& src, std::uint8_t ttl = 64) {
  const Ip s = ip(f.src), d = ip(f.dst);
  return ethernet(dst, src, ethertype(s.family),
                  ip_packet(s, d, f.proto, transport(f), f.tos, ttl));
}

// `inner` (a frame) carried in an outer IP header from outer_src to outer_dst, as VS/TUN sends it:
// protocol IPIP (4) for IPv4 inside, IPv6 (41) for IPv6 inside; TTL 64; the inner TOS copied.
inline Bytes tunnelled(const Bytes& inner, const std::string& outer_src,
                       const std::string& outer_dst, const Mac& dst, const Mac& src) {
  const Bytes inner_ip(inner.begin() + 14, inner.end());
  const bool inner_v4 = (inner_ip[0] >> 4) == 4;
  const std::uint8_t tos =
      inner_v4 ? inner_ip[1]
               : static_cast<std::uint8_t>((inner_ip[0] & 0xf) << 4 | inner_ip[1] >> 4);
  const Ip s = ip(outer_src), d = ip(outer_dst);
  return ethernet(dst, src, ethertype(s.family),
                  ip_packet(s, d, inner_v4 ? 4 : 41, inner_ip, tos, 64));
}

}  // namespace switchyard::l4::test
