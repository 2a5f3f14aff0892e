// Table-driven tests of the director's XDP program through BPF_PROG_TEST_RUN: crafted frame in,
// expected verdict and expected frame out (every checksum compared byte for byte), for NAT, DR
// and TUN, IPv4 and IPv6, TCP and UDP; then flow-table stickiness across scheduler, weight,
// health and configuration changes, and counters.
//
// The program is loaded and configured by the real control plane (Director) from YAML read by the
// real config loader, inside a private network namespace (tests/bpf/test_net.h).
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "config/config_loader.h"
#include "l4/abi/l4_abi.h"
#include "l4/ctl/director.h"
#include "l4/ctl/sched_rows.h"
#include "packet_builder.h"
#include "test_net.h"

namespace {

using namespace switchyard;
using namespace switchyard::l4;
using namespace switchyard::l4::test;

const Mac kDirectorMac = mac(0x01);         // t0
const Mac kDirectorMac2 = mac(0x01, 0x01);  // t2
const Mac kRouterMac = mac(0xfe);

Mac real_mac(std::uint8_t last) {
  return mac(last);
}

struct RunResult {
  int verdict = -1;
  Bytes out;
};

RunResult run(int prog_fd, const Bytes& in, const char* ingress = "t0") {
  RunResult r;
  r.out.assign(in.size() + 128, 0);
  xdp_md ctx{};
  ctx.data_end = static_cast<__u32>(in.size());
  ctx.ingress_ifindex = static_cast<__u32>(test_ifindex(ingress));
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = in.data();
  opts.data_size_in = static_cast<__u32>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<__u32>(r.out.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.repeat = 1;
  const int rc = bpf_prog_test_run_opts(prog_fd, &opts);
  REQUIRE(rc == 0);
  r.verdict = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  return r;
}

std::string hex(const Bytes& b) {
  std::ostringstream o;
  for (std::size_t i = 0; i < b.size(); ++i) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    o << buf << ((i + 1) % 16 == 0 ? "\n" : " ");
  }
  return o.str();
}

const char* verdict_name(int v) {
  switch (v) {
    case XDP_ABORTED:
      return "XDP_ABORTED";
    case XDP_DROP:
      return "XDP_DROP";
    case XDP_PASS:
      return "XDP_PASS";
    case XDP_TX:
      return "XDP_TX";
    case XDP_REDIRECT:
      return "XDP_REDIRECT";
  }
  return "?";
}

constexpr const char* kConfig = R"(
l4:
  interfaces: [t0]
  xdp_mode: generic
  pin_path: /sys/fs/bpf/sy-unit
  connections: { size: 4096, tcp_fin_timeout: 2s }
  services:
    - { name: nat4, vip: 192.0.2.1:80, mode: nat, servers: [10.0.0.17:8080] }
    - { name: nat4u, vip: 192.0.2.1:53, protocol: udp, servers: [10.0.0.17:5353] }
    - { name: nat6, vip: "[2001:db8::1]:80", servers: ["[fd00::11]:8080"] }
    - { name: dr4, vip: 192.0.2.2:80, mode: dr, servers: [10.0.0.18:80] }
    - { name: dr4far, vip: 192.0.2.3:80, mode: dr, servers: [10.0.1.33:80] }
    - { name: dr6, vip: "[2001:db8::2]:80", mode: dr, servers: ["[fd00::12]:80"] }
    - { name: tun4, vip: 192.0.2.4:80, mode: tun, servers: [10.0.0.18:80] }
    - { name: tun6in4, vip: "[2001:db8::4]:80", mode: tun, servers: [10.0.0.18:80] }
    - { name: tun4in6, vip: 192.0.2.5:80, mode: tun, servers: ["[fd00::12]:80"] }
    - { name: drnoneigh, vip: 192.0.2.6:80, mode: dr, servers: [10.0.0.99:80] }
    - { name: natnoneigh, vip: 192.0.2.6:81, mode: nat, servers: [10.0.0.99:80] }
    - { name: down, vip: 192.0.2.7:80, servers: [10.0.0.17:80] }
    - { name: rr3, vip: 192.0.2.10:80, scheduler: rr, servers: [10.0.0.17:80, 10.0.0.18:80, 10.0.0.19:80] }
    - { name: mh3, vip: 192.0.2.11:80, scheduler: mh, servers: [10.0.0.17:80, 10.0.0.18:80, 10.0.0.19:80] }
    - { name: wrr, vip: 192.0.2.12:80, scheduler: wrr, servers: [{address: 10.0.0.17:80, weight: 3}, 10.0.0.18:80] }
    - { name: ho4, vip: 192.0.2.20:80, mode: dr, handoff: true, servers: [10.0.0.17:80, 10.0.0.18:80] }
)";

// Real servers 10.0.0.17-19 get neighbour entries with MACs 02:00:00:00:00:11-13 (17 = 0x11), so
// an output frame's last destination-MAC byte names the server it was sent to.

struct Fixture {
  std::unique_ptr<Director> director;
  std::shared_ptr<const config::Config> config;
  int prog = -1;

  static Availability all_up(const config::L4& l4) {
    Availability a;
    for (const auto& s : l4.services) a.emplace_back(s.servers.size(), s.name != "down");
    return a;
  }

  explicit Fixture(const std::string& yaml = kConfig) {
    const std::string why = enter_test_net();
    if (!why.empty()) {
      WARN("skipped: " << why);
      return;
    }
    // Real servers used by the config: MAC 02:00:00:00:00:<decimal last octet as hex byte>.
    std::system(
        "ip neigh replace 10.0.0.17 lladdr 02:00:00:00:00:11 dev t0 nud permanent; "
        "ip neigh replace 10.0.0.18 lladdr 02:00:00:00:00:12 dev t0 nud permanent; "
        "ip neigh replace 10.0.0.19 lladdr 02:00:00:00:00:13 dev t0 nud permanent; "
        "ip neigh replace 10.0.1.33 lladdr 02:00:00:00:01:21 dev t2 nud permanent; "
        "rm -rf /sys/fs/bpf/sy-unit");
    config::LoadResult loaded = config::load_string(yaml, "unit.yaml");
    for (const auto& d : loaded.diagnostics) FAIL(d.to_string());
    REQUIRE(loaded.ok());
    config = loaded.config;
    std::string error;
    director = Director::start(*config->l4, all_up(*config->l4), error);
    INFO(error);
    REQUIRE(director);
    prog = director->program_fd();
  }

  bool ready() const { return director != nullptr; }

  std::uint64_t stat(l4_stat s) const { return director->status(*config->l4).global[s]; }
};

struct Case {
  const char* name;
  Bytes in;
  int verdict;
  Bytes out;  // empty: output must equal input
};

void check_case(int prog, const Case& c, const char* ingress = "t0") {
  INFO(c.name);
  const RunResult r = run(prog, c.in, ingress);
  INFO("verdict " << verdict_name(r.verdict));
  CHECK(r.verdict == c.verdict);
  const Bytes& expected = c.out.empty() ? c.in : c.out;
  INFO("got:\n" << hex(r.out) << "\nexpected:\n" << hex(expected));
  CHECK(r.out == expected);
}

Flow tcp(const std::string& src, const std::string& dst, std::uint16_t sport, std::uint16_t dport,
         std::uint8_t flags = kSyn) {
  Flow f;
  f.src = src;
  f.dst = dst;
  f.sport = sport;
  f.dport = dport;
  f.tcp_flags = flags;
  return f;
}

Flow with_dst(Flow f, const std::string& dst, std::uint16_t dport) {
  f.dst = dst;
  f.dport = dport;
  return f;
}

}  // namespace

TEST_CASE("NAT rewrites destination address and port with correct checksums", "[bpf][nat]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow syn = tcp("198.51.100.7", "192.0.2.1", 40001, 80);
  Flow data = tcp("198.51.100.7", "192.0.2.1", 40001, 80, kAck);
  data.payload = std::string(1000, 'x') + "odd";  // odd length: checksum padding
  Flow udp = tcp("198.51.100.7", "192.0.2.1", 5000, 53);
  udp.proto = IPPROTO_UDP;
  udp.payload = "query";
  Flow udp0 = udp;
  udp0.sport = 5001;
  udp0.udp_no_checksum = true;
  Flow v6 = tcp("2001:db8:c::7", "2001:db8::1", 40002, 80);
  v6.tos = 0xb8;
  const std::vector<Case> cases = {
      {"IPv4 TCP SYN", frame(syn, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(syn, "10.0.0.17", 8080), real_mac(0x11), kDirectorMac)},
      {"IPv4 TCP data, odd payload", frame(data, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(data, "10.0.0.17", 8080), real_mac(0x11), kDirectorMac)},
      {"IPv4 UDP", frame(udp, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(udp, "10.0.0.17", 5353), real_mac(0x11), kDirectorMac)},
      {"IPv4 UDP without checksum keeps 0", frame(udp0, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(udp0, "10.0.0.17", 5353), real_mac(0x11), kDirectorMac)},
      {"IPv6 TCP with traffic class", frame(v6, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(v6, "fd00::11", 8080), real_mac(0x11), kDirectorMac)},
  };
  for (const Case& c : cases) check_case(fx.prog, c);
}

TEST_CASE("NAT replies are rewritten back to the VIP", "[bpf][nat]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow syn = tcp("198.51.100.8", "192.0.2.1", 40100, 80);
  check_case(fx.prog, {"forward SYN", frame(syn, kDirectorMac, kRouterMac), XDP_TX,
                       frame(with_dst(syn, "10.0.0.17", 8080), real_mac(0x11), kDirectorMac)});
  Flow reply = tcp("10.0.0.17", "198.51.100.8", 8080, 40100, kSyn | kAck);
  Flow restored = reply;
  restored.src = "192.0.2.1";
  restored.sport = 80;
  check_case(fx.prog, {"SYN-ACK from the real server", frame(reply, kDirectorMac, real_mac(0x11)),
                       XDP_TX, frame(restored, kRouterMac, kDirectorMac)});
  CHECK(fx.stat(L4_STAT_REVERSE_NAT) == 1);
  // A packet from the server that is not a reply of a known flow is the kernel's.
  Flow stray = reply;
  stray.dport = 40101;
  check_case(fx.prog, {"unrelated packet from the server",
                       frame(stray, kDirectorMac, real_mac(0x11)),
                       XDP_PASS,
                       {}});
}

TEST_CASE("NAT IPv6 replies are rewritten back to the VIP", "[bpf][nat]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow syn = tcp("2001:db8:c::9", "2001:db8::1", 40200, 80);
  check_case(fx.prog, {"forward", frame(syn, kDirectorMac, kRouterMac), XDP_TX,
                       frame(with_dst(syn, "fd00::11", 8080), real_mac(0x11), kDirectorMac)});
  Flow reply = tcp("fd00::11", "2001:db8:c::9", 8080, 40200, kSyn | kAck);
  Flow restored = reply;
  restored.src = "2001:db8::1";
  restored.sport = 80;
  check_case(fx.prog, {"reply", frame(reply, kDirectorMac, real_mac(0x11)), XDP_TX,
                       frame(restored, kRouterMac, kDirectorMac)});
}

TEST_CASE("DR rewrites only the MACs", "[bpf][dr]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow f4 = tcp("198.51.100.7", "192.0.2.2", 40003, 80);
  const Flow far = tcp("198.51.100.7", "192.0.2.3", 40004, 80);
  const Flow f6 = tcp("2001:db8:c::7", "2001:db8::2", 40005, 80);
  const std::vector<Case> cases = {
      {"IPv4, server on the ingress interface: XDP_TX", frame(f4, kDirectorMac, kRouterMac), XDP_TX,
       frame(f4, real_mac(0x12), kDirectorMac)},
      {"IPv4, server behind another interface: redirect", frame(far, kDirectorMac, kRouterMac),
       XDP_REDIRECT, frame(far, mac(0x21, 0x01), kDirectorMac2)},
      {"IPv6", frame(f6, kDirectorMac, kRouterMac), XDP_TX,
       frame(f6, real_mac(0x12), kDirectorMac)},
  };
  for (const Case& c : cases) check_case(fx.prog, c);
}

TEST_CASE("TUN encapsulates in IPIP, 6in4 and 4in6", "[bpf][tun]") {
  Fixture fx;
  if (!fx.ready()) return;
  Flow f4 = tcp("198.51.100.7", "192.0.2.4", 40006, 80);
  f4.tos = 0x10;
  const Flow f6 = tcp("2001:db8:c::7", "2001:db8::4", 40007, 80);
  const Flow f46 = tcp("198.51.100.7", "192.0.2.5", 40008, 80);
  const Bytes in4 = frame(f4, kDirectorMac, kRouterMac);
  const Bytes in6 = frame(f6, kDirectorMac, kRouterMac);
  const Bytes in46 = frame(f46, kDirectorMac, kRouterMac);
  const std::vector<Case> cases = {
      {"IPv4 in IPv4", in4, XDP_TX,
       tunnelled(in4, "10.0.0.1", "10.0.0.18", real_mac(0x12), kDirectorMac)},
      {"IPv6 in IPv4", in6, XDP_TX,
       tunnelled(in6, "10.0.0.1", "10.0.0.18", real_mac(0x12), kDirectorMac)},
      {"IPv4 in IPv6", in46, XDP_TX,
       tunnelled(in46, "fd00::1", "fd00::12", real_mac(0x12), kDirectorMac)},
  };
  for (const Case& c : cases) check_case(fx.prog, c);
}

TEST_CASE("packets the director does not own pass unchanged", "[bpf]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow other = tcp("198.51.100.7", "192.0.2.99", 40009, 80);
  const Flow other_port = tcp("198.51.100.7", "192.0.2.1", 40010, 81);
  Flow udp_on_tcp = tcp("198.51.100.7", "192.0.2.2", 40011, 80);
  udp_on_tcp.proto = IPPROTO_UDP;
  Bytes fragment = frame(tcp("198.51.100.7", "192.0.2.1", 40012, 80), kDirectorMac, kRouterMac);
  fragment[14 + 6] = 0x20;  // MF set; the IPv4 checksum no longer matters to XDP_PASS
  const Bytes whole = frame(other, kDirectorMac, kRouterMac);
  Bytes arp = ethernet(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kRouterMac, 0x0806, Bytes(28, 0));
  Bytes icmp = ethernet(kDirectorMac, kRouterMac, 0x0800,
                        ip_packet(ip("198.51.100.7"), ip("192.0.2.1"), 1, Bytes(8, 0)));
  const std::vector<Case> cases = {
      {"not a VIP", frame(other, kDirectorMac, kRouterMac), XDP_PASS, {}},
      {"VIP, other port", frame(other_port, kDirectorMac, kRouterMac), XDP_PASS, {}},
      {"VIP, other protocol", frame(udp_on_tcp, kDirectorMac, kRouterMac), XDP_PASS, {}},
      {"fragment", fragment, XDP_PASS, {}},
      {"ARP", arp, XDP_PASS, {}},
      {"ICMP to a VIP", icmp, XDP_PASS, {}},
      {"truncated TCP header", Bytes(whole.begin(), whole.begin() + 40), XDP_PASS, {}},
  };
  for (const Case& c : cases) check_case(fx.prog, c);
}

namespace {

std::uint32_t real_id_of(const Fixture& fx, const std::string& service, std::size_t server = 0) {
  for (const auto& s : fx.director->status(*fx.config->l4).services) {
    if (s.name == service) return s.reals.at(server).id;
  }
  FAIL("no service " << service);
  return 0;
}

// What XDP hands to tc: the metadata (struct l4_meta, host order) in front of the frame.
Bytes deferred(const Bytes& frame, std::uint32_t real_id, std::uint16_t kind = L4_META_FORWARD) {
  l4_meta m{};
  m.magic = L4_META_MAGIC;
  m.kind = kind;
  m.real_id = real_id;
  Bytes out(sizeof m);
  std::memcpy(out.data(), &m, sizeof m);
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

}  // namespace

TEST_CASE("no server: drop; what XDP cannot send is deferred to tc unmodified", "[bpf]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow down = tcp("198.51.100.7", "192.0.2.7", 40013, 80);
  const Flow dr = tcp("198.51.100.7", "192.0.2.6", 40014, 80);
  const Flow nat = tcp("198.51.100.7", "192.0.2.6", 40015, 81);
  // 1500 bytes of IP: fits the 1500-byte MTU as it is, not with a 20-byte tunnel header.
  Flow full = tcp("198.51.100.7", "192.0.2.1", 40016, 80, kAck);
  full.payload = std::string(1500 - 20 - 20, 'f');
  Flow big_tun = full;
  big_tun.dst = "192.0.2.4";
  const Bytes dr_in = frame(dr, kDirectorMac, kRouterMac);
  const Bytes nat_in = frame(nat, kDirectorMac, kRouterMac);
  const Bytes tun_in = frame(big_tun, kDirectorMac, kRouterMac);
  const std::vector<Case> cases = {
      {"service without an available server", frame(down, kDirectorMac, kRouterMac), XDP_DROP, {}},
      {"DR server without neighbour entry", dr_in, XDP_PASS,
       deferred(dr_in, real_id_of(fx, "drnoneigh"))},
      {"NAT server without neighbour entry", nat_in, XDP_PASS,
       deferred(nat_in, real_id_of(fx, "natnoneigh"))},
      {"TUN packet too big for the MTU once encapsulated", tun_in, XDP_PASS,
       deferred(tun_in, real_id_of(fx, "tun4"))},
      {"NAT full-size packet: still XDP", frame(full, kDirectorMac, kRouterMac), XDP_TX,
       frame(with_dst(full, "10.0.0.17", 8080), real_mac(0x11), kDirectorMac)},
  };
  for (const Case& c : cases) check_case(fx.prog, c);
  CHECK(fx.stat(L4_STAT_NO_REAL) == 1);
  CHECK(fx.stat(L4_STAT_DEFER_TC) == 3);
}

namespace {

// The real server a frame was sent to, from its destination MAC's last byte (0x11..0x13).
int server_of(const RunResult& r) {
  REQUIRE(r.verdict == XDP_TX);
  return r.out[5];
}

Bytes rr_frame(std::uint16_t sport, std::uint8_t flags = kSyn, const char* vip = "192.0.2.10") {
  return frame(tcp("198.51.100.20", vip, sport, 80, flags), kDirectorMac, kRouterMac);
}

config::L4 edited(const config::L4& l4, const std::function<void(config::L4&)>& edit) {
  config::L4 copy = l4;
  edit(copy);
  return copy;
}

config::L4Service& service(config::L4& l4, const std::string& name) {
  for (auto& s : l4.services) {
    if (s.name == name) return s;
  }
  FAIL("no service " << name);
  return l4.services[0];
}

}  // namespace

TEST_CASE("rr spreads new flows; established flows stick to their server", "[bpf][conn]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::map<int, int> first;  // sport -> server
  for (std::uint16_t sport = 41000; sport < 41006; ++sport) {
    first[sport] = server_of(run(fx.prog, rr_frame(sport)));
  }
  // One CPU, three servers: the per-CPU cursor walks them in order.
  CHECK(first[41000] == 0x11);
  CHECK(first[41001] == 0x12);
  CHECK(first[41002] == 0x13);
  CHECK(first[41003] == 0x11);
  for (int round = 0; round < 3; ++round) {
    for (std::uint16_t sport = 41000; sport < 41006; ++sport) {
      INFO("sport " << sport);
      CHECK(server_of(run(fx.prog, rr_frame(sport, kAck))) == first[sport]);
    }
  }
  CHECK(fx.stat(L4_STAT_CONN_NEW) == 6);
  CHECK(fx.stat(L4_STAT_CONN_HIT) == 18);
}

TEST_CASE("flows survive scheduler, weight and server-set changes", "[bpf][conn]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::map<int, int> first;
  for (std::uint16_t sport = 42000; sport < 42030; ++sport) {
    first[sport] = server_of(run(fx.prog, rr_frame(sport)));
  }
  std::string error;
  // rr -> mh with new weights, and a fourth server added.
  const config::L4 changed = edited(*fx.config->l4, [](config::L4& l4) {
    auto& s = service(l4, "rr3");
    s.scheduler = "mh";
    s.servers[0].weight = 5;
    config::L4Server extra = s.servers[0];
    REQUIRE(config::parse_socket_address("10.0.0.11:80", extra.address).empty());
    s.servers.push_back(extra);
  });
  Availability up = Fixture::all_up(changed);
  REQUIRE(fx.director->sync(changed, up, error));
  for (std::uint16_t sport = 42000; sport < 42030; ++sport) {
    INFO("sport " << sport);
    CHECK(server_of(run(fx.prog, rr_frame(sport, kAck))) == first[sport]);
  }
}

TEST_CASE("a DOWN server takes no new flows; its flows stay (keep) or move (reschedule)",
          "[bpf][conn][health]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::map<int, int> first;
  for (std::uint16_t sport = 43000; sport < 43009; ++sport) {
    first[sport] = server_of(run(fx.prog, rr_frame(sport)));
  }
  config::L4 l4 = *fx.config->l4;
  Availability up = Fixture::all_up(l4);
  std::size_t rr3 = 0;
  while (l4.services[rr3].name != "rr3") ++rr3;
  up[rr3][0] = false;  // 10.0.0.17 (MAC ..:11) goes DOWN
  std::string error;
  REQUIRE(fx.director->sync(l4, up, error));
  for (std::uint16_t sport = 43000; sport < 43009; ++sport) {
    CHECK(server_of(run(fx.prog, rr_frame(sport, kAck))) == first[sport]);  // kept
  }
  for (std::uint16_t sport = 43100; sport < 43120; ++sport) {
    CHECK(server_of(run(fx.prog, rr_frame(sport))) != 0x11);  // no new flows to it
  }
  service(l4, "rr3").reschedule_down = true;
  REQUIRE(fx.director->sync(l4, up, error));
  for (std::uint16_t sport = 43000; sport < 43009; ++sport) {
    const int now = server_of(run(fx.prog, rr_frame(sport, kAck)));
    if (first[sport] == 0x11) {
      CHECK(now != 0x11);
    } else {
      CHECK(now == first[sport]);
    }
  }
}

TEST_CASE("a server removed from the configuration loses its flows to the others", "[bpf][conn]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::map<int, int> first;
  for (std::uint16_t sport = 44000; sport < 44009; ++sport) {
    first[sport] = server_of(run(fx.prog, rr_frame(sport)));
  }
  const config::L4 fewer = edited(*fx.config->l4, [](config::L4& l4) {
    auto& servers = service(l4, "rr3").servers;
    servers.erase(servers.begin() + 1);  // 10.0.0.18 (MAC ..:12)
  });
  std::string error;
  REQUIRE(fx.director->sync(fewer, Fixture::all_up(fewer), error));
  for (std::uint16_t sport = 44000; sport < 44009; ++sport) {
    const int now = server_of(run(fx.prog, rr_frame(sport, kAck)));
    if (first[sport] == 0x12) {
      CHECK(now != 0x12);
    } else {
      CHECK(now == first[sport]);
    }
  }
  // Put it back: a new generation, so the flows that moved stay where they are now.
  REQUIRE(fx.director->sync(*fx.config->l4, Fixture::all_up(*fx.config->l4), error));
  for (std::uint16_t sport = 44000; sport < 44009; ++sport) {
    CHECK(server_of(run(fx.prog, rr_frame(sport, kAck))) != 0x12);
  }
}

TEST_CASE("FIN and RST shorten a flow's lifetime; expired flows are rescheduled", "[bpf][conn]") {
  Fixture fx;
  if (!fx.ready()) return;
  const int conns = fx.director->map_fd("conns");
  REQUIRE(conns >= 0);
  auto key_of = [](std::uint16_t sport) {
    l4_flow_key k{};
    inet_pton(AF_INET, "198.51.100.20", &k.src[0]);
    inet_pton(AF_INET, "192.0.2.10", &k.dst[0]);
    k.sport = htons(sport);
    k.dport = htons(80);
    k.proto = IPPROTO_TCP;
    k.family = L4_FAMILY_V4;
    return k;
  };
  run(fx.prog, rr_frame(45000));
  run(fx.prog, rr_frame(45001));
  l4_conn c{};
  l4_flow_key k = key_of(45000);
  REQUIRE(bpf_map_lookup_elem(conns, &k, &c) == 0);
  CHECK(c.state == L4_CONN_ACTIVE);
  run(fx.prog, rr_frame(45000, kFin | kAck));
  REQUIRE(bpf_map_lookup_elem(conns, &k, &c) == 0);
  CHECK(c.state == L4_CONN_CLOSING);
  k = key_of(45001);
  run(fx.prog, rr_frame(45001, kRst));
  REQUIRE(bpf_map_lookup_elem(conns, &k, &c) == 0);
  CHECK(c.state == L4_CONN_CLOSING);
  // Age the closing flow past tcp_fin_timeout (2s): the next packet schedules it afresh.
  c.atime -= 3ull * fx.director->hz();
  REQUIRE(bpf_map_update_elem(conns, &k, &c, BPF_EXIST) == 0);
  const std::uint64_t expired = fx.stat(L4_STAT_CONN_EXPIRED);
  run(fx.prog, rr_frame(45001, kAck));
  CHECK(fx.stat(L4_STAT_CONN_EXPIRED) == expired + 1);
  REQUIRE(bpf_map_lookup_elem(conns, &k, &c) == 0);
  CHECK(c.state == L4_CONN_ACTIVE);
}

TEST_CASE("wrr follows IPVS's interleaved weighted order", "[bpf][sched]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::vector<int> order;
  for (std::uint16_t sport = 46000; sport < 46008; ++sport) {
    order.push_back(server_of(run(fx.prog, rr_frame(sport, kSyn, "192.0.2.12"))));
  }
  CHECK(order == std::vector<int>{0x11, 0x11, 0x11, 0x12, 0x11, 0x11, 0x11, 0x12});
}

TEST_CASE("mh: the data path picks the Maglev entry of hash(client)", "[bpf][sched][maglev]") {
  Fixture fx;
  if (!fx.ready()) return;
  // Same row as the control plane builds, same hash as the data path (l4_abi.h).
  std::vector<RowServer> servers;
  const char* addrs[] = {"10.0.0.17:80", "10.0.0.18:80", "10.0.0.19:80"};
  std::map<std::uint32_t, int> mac_of_id;
  const Status st = fx.director->status(*fx.config->l4);
  for (const auto& s : st.services) {
    if (s.name != "mh3") continue;
    for (std::size_t i = 0; i < 3; ++i) {
      servers.push_back({s.reals[i].id, 1, addrs[i]});
      mac_of_id[s.reals[i].id] = 0x11 + static_cast<int>(i);
    }
  }
  REQUIRE(servers.size() == 3);
  const std::vector<std::uint32_t> row = maglev_row(servers, L4_RING_SIZE);
  std::map<int, int> per_server;
  for (int c = 0; c < 600; ++c) {
    const std::string client =
        "198.51." + std::to_string(100 + c / 250) + "." + std::to_string(c % 250 + 1);
    const int got = server_of(
        run(fx.prog, frame(tcp(client, "192.0.2.11", 47000, 80), kDirectorMac, kRouterMac)));
    __u32 addr[4] = {};
    inet_pton(AF_INET, client.c_str(), &addr[0]);
    const int want = mac_of_id[row[l4_hash_addr(addr, 0) % row.size()]];
    INFO(client);
    CHECK(got == want);
    ++per_server[got];
  }
  for (const auto& [server, n] : per_server) {
    INFO("server " << server);
    CHECK(n > 150);  // 200 each expected
    CHECK(n < 250);
  }
}

TEST_CASE("per-service and per-server counters count packets, bytes and new flows",
          "[bpf][stats]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Bytes syn = rr_frame(48000);
  const Bytes ack = rr_frame(48000, kAck);
  run(fx.prog, syn);
  for (int i = 0; i < 4; ++i) run(fx.prog, ack);
  const Status st = fx.director->status(*fx.config->l4);
  for (const auto& s : st.services) {
    if (s.name != "rr3") continue;
    CHECK(s.counters.packets == 5);
    CHECK(s.counters.bytes == syn.size() * 5);
    CHECK(s.counters.new_flows == 1);
    CHECK(s.slots == 3);
    CHECK(s.reals[0].counters.packets == 5);
    CHECK(s.reals[1].counters.packets == 0);
    CHECK(s.reals[0].available);
  }
}

TEST_CASE("a restarted director keeps the pinned flows", "[bpf][conn][restart]") {
  Fixture fx;
  if (!fx.ready()) return;
  std::map<int, int> first;
  for (std::uint16_t sport = 49000; sport < 49006; ++sport) {
    first[sport] = server_of(run(fx.prog, rr_frame(sport)));
  }
  fx.director.reset();  // detaches; the flow table stays pinned
  std::string error;
  auto again = Director::start(*fx.config->l4, Fixture::all_up(*fx.config->l4), error);
  INFO(error);
  REQUIRE(again);
  // A fresh rr cursor would send 49000 to the first server again and 49001 to the second...
  // but the flows are known, so every one goes back to its own server.
  for (std::uint16_t sport = 49005; sport >= 49000; --sport) {
    INFO("sport " << sport);
    CHECK(server_of(run(again->program_fd(), rr_frame(sport, kAck))) == first[sport]);
  }
}

namespace {

sockaddr_storage socket_address(const std::string& text) {
  config::SocketAddress a;
  REQUIRE(config::parse_socket_address(text, a).empty());
  sockaddr_storage out{};
  std::memcpy(&out, &a.storage, sizeof out);
  return out;
}

}  // namespace

TEST_CASE("handoff services pass new flows to the stack; steered flows are forwarded",
          "[bpf][handoff]") {
  Fixture fx;
  if (!fx.ready()) return;
  const Flow syn = tcp("198.51.100.7", "192.0.2.20", 40100, 80);
  Flow data = syn;
  data.tcp_flags = 0x18;  // PSH|ACK: the client's next segment after the handoff
  const sockaddr_storage client = socket_address("198.51.100.7:40100");
  const sockaddr_storage vip = socket_address("192.0.2.20:80");

  // The L7 proxy on this host accepts the connection: nothing is scheduled.
  check_case(fx.prog, {"new flow of a handoff service", frame(syn, kDirectorMac, kRouterMac),
                       XDP_PASS, {}});
  check_case(fx.prog, {"still no flow entry", frame(data, kDirectorMac, kRouterMac), XDP_PASS, {}});

  auto steering = fx.director->steering();
  REQUIRE(steering);
  std::string error;
  REQUIRE(steering->steer(client, vip, socket_address("10.0.0.18:8080"), error));
  check_case(fx.prog, {"steered to 10.0.0.18: DR", frame(data, kDirectorMac, kRouterMac), XDP_TX,
                       frame(data, real_mac(0x12), kDirectorMac)});
  // Other clients' connections stay with the proxy.
  const Flow other = tcp("198.51.100.7", "192.0.2.20", 40101, 80);
  check_case(fx.prog, {"another connection", frame(other, kDirectorMac, kRouterMac), XDP_PASS, {}});

  CHECK_FALSE(steering->steer(client, vip, socket_address("10.0.0.19:80"), error));
  CHECK(error.find("no l4 handoff service") != std::string::npos);
  CHECK_FALSE(steering->steer(client, socket_address("192.0.2.2:80"),
                              socket_address("10.0.0.18:80"), error));

  steering->unsteer(client, vip);
  check_case(fx.prog, {"unsteered", frame(data, kDirectorMac, kRouterMac), XDP_PASS, {}});
}
