// l4_bench: cost of the director's XDP program per packet, through BPF_PROG_TEST_RUN with
// `repeat` (the kernel runs the program that many times on the same frame and reports the mean
// time per run). One row per forwarding mode, for an established flow (the steady state: one
// service lookup, one flow-table hit, one FIB lookup, the rewrite) and a few other paths.
//
//   sudo build/l4_bench [--repeat N] [--rounds R]
//
// Runs in a private network namespace (tests/bpf/test_net.h) pinned to CPU 0; needs root.
// The figure excludes the driver and the stack (no real NIC here), which is what "ns/packet in
// test-run" means in BENCHMARKS.md; the end-to-end veth figures come from bench/l4_bench_e2e.py.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../tests/bpf/packet_builder.h"
#include "../tests/bpf/test_net.h"
#include "config/config_loader.h"
#include "core/log.h"
#include "l4/ctl/director.h"

namespace {

using namespace switchyard;
using namespace switchyard::l4::test;

// BPF_PROG_TEST_RUN's repeat runs the program again on the frame the previous run produced. A
// NAT service whose real server is the VIP's own address:port rewrites the frame into itself,
// so every repetition is the full established-flow NAT path (lookups, rewrite with checksum
// updates, FIB lookup, MACs); DR only changes MACs, which repeats as well. TUN grows the frame
// each run, so it (and new flows) are measured one run per call instead, minus the per-call
// timer overhead calibrated on DR (measured both ways).
constexpr const char* kConfig = R"(
l4:
  interfaces: [t0]
  xdp_mode: generic
  pin_path: /sys/fs/bpf/sy-bench
  connections: { size: 4194304 }
  services:
    - { name: nat, vip: 10.0.0.17:80, mode: nat, servers: [10.0.0.17:80] }
    - { name: nat6, vip: "[fd00::11]:80", mode: nat, servers: ["[fd00::11]:80"] }
    - { name: dr, vip: 192.0.2.2:80, mode: dr, servers: [10.0.0.18:80] }
    - { name: tun, vip: 192.0.2.4:80, mode: tun, servers: [10.0.0.18:80] }
    - { name: rr, vip: 192.0.2.10:80, scheduler: rr,
        servers: [10.0.0.17:80, 10.0.0.18:80, 10.0.0.19:80] }
    - { name: mh, vip: 192.0.2.11:80, scheduler: mh,
        servers: [10.0.0.17:80, 10.0.0.18:80, 10.0.0.19:80] }
)";

struct Result {
  int verdict = -1;
  double ns = -1;  // mean per run
};

Result run(int prog, const Bytes& in, unsigned repeat) {
  Bytes out(in.size() + 128);
  xdp_md ctx{};
  ctx.data_end = static_cast<__u32>(in.size());
  ctx.ingress_ifindex = static_cast<__u32>(test_ifindex("t0"));
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = in.data();
  opts.data_size_in = static_cast<__u32>(in.size());
  opts.data_out = out.data();
  opts.data_size_out = static_cast<__u32>(out.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.repeat = repeat;
  Result r;
  if (bpf_prog_test_run_opts(prog, &opts) != 0) return r;
  r.verdict = static_cast<int>(opts.retval);
  r.ns = static_cast<double>(opts.duration);  // the kernel reports ns per run
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  unsigned repeat = 1000000, rounds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeat" && i + 1 < argc) {
      repeat = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = static_cast<unsigned>(std::stoul(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: l4_bench [--repeat N] [--rounds R]\n");
      return 2;
    }
  }
  core::init_logging(spdlog::level::warn);
  if (std::string why = enter_test_net(); !why.empty()) {
    std::fprintf(stderr, "l4_bench: %s\n", why.c_str());
    return 1;
  }
  std::system(
      "ip neigh replace 10.0.0.17 lladdr 02:00:00:00:00:11 dev t0 nud permanent; "
      "ip neigh replace 10.0.0.18 lladdr 02:00:00:00:00:12 dev t0 nud permanent; "
      "ip neigh replace 10.0.0.19 lladdr 02:00:00:00:00:13 dev t0 nud permanent");
  config::LoadResult loaded = config::load_string(kConfig, "bench.yaml");
  if (!loaded.ok()) {
    for (const auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    return 1;
  }
  std::string error;
  l4::Availability up;
  for (const auto& s : loaded.config->l4->services) up.emplace_back(s.servers.size(), true);
  auto director = l4::Director::start(*loaded.config->l4, up, error);
  if (!director) {
    std::fprintf(stderr, "l4_bench: %s\n", error.c_str());
    return 1;
  }
  const int prog = director->program_fd();
  const Mac dir = mac(0x01), router = mac(0xfe);
  auto tcp = [](const char* src, const char* dst, std::uint16_t sport, std::uint8_t flags,
                std::size_t payload) {
    Flow f;
    f.src = src;
    f.dst = dst;
    f.sport = sport;
    f.tcp_flags = flags;
    f.payload.assign(payload, 'p');
    return f;
  };
  auto fail = [&](const char* what, int verdict) {
    const l4::Status st = director->status(*loaded.config->l4);
    std::fprintf(stderr, "l4_bench: %s: verdict %d; global counters:", what, verdict);
    for (std::uint64_t c : st.global) std::fprintf(stderr, " %llu", (unsigned long long)c);
    std::fprintf(stderr, "\n");
    std::exit(1);
  };
  // Established flow, many runs per call.
  auto repeated = [&](const Bytes& frame, int verdict, const char* what) {
    Result first = run(prog, frame, 1);  // schedules the flow
    if (first.verdict != verdict) fail(what, first.verdict);
    std::vector<double> ns;
    for (unsigned r = 0; r < rounds; ++r) {
      Result res = run(prog, frame, repeat);
      if (res.verdict != verdict) fail(what, res.verdict);
      ns.push_back(res.ns);
    }
    return median(ns);
  };
  // One run per call on a fresh copy of make(i): mean over `calls`.
  const unsigned calls = std::max(1000u, repeat / 10);
  auto single = [&](const std::function<Bytes(unsigned)>& make, int verdict, const char* what) {
    std::vector<double> ns;
    for (unsigned r = 0; r < rounds; ++r) {
      double sum = 0;
      for (unsigned i = 0; i < calls; ++i) {
        Result res = run(prog, make(r * calls + i), 1);
        if (res.verdict != verdict) fail(what, res.verdict);
        sum += res.ns;
      }
      ns.push_back(sum / calls);
    }
    return median(ns);
  };

  Flow reply = tcp("10.0.0.17", "198.51.100.7", 80, kAck, 6);
  reply.dport = 40000;
  const Bytes nat64 = frame(tcp("198.51.100.7", "10.0.0.17", 40000, kAck, 6), dir, router);
  const Bytes nat1500 = frame(tcp("198.51.100.7", "10.0.0.17", 40001, kAck, 1460), dir, router);
  const Bytes nat6 = frame(tcp("2001:db8:c::7", "fd00::11", 40000, kAck, 6), dir, router);
  const Bytes dr = frame(tcp("198.51.100.7", "192.0.2.2", 40000, kAck, 6), dir, router);
  const Bytes tun = frame(tcp("198.51.100.7", "192.0.2.4", 40000, kAck, 6), dir, router);
  const Bytes pass = frame(tcp("198.51.100.7", "192.0.2.99", 40000, kAck, 6), dir, router);

  struct Line {
    std::string name;
    double ns;
    const char* how;
  };
  std::vector<Line> lines;
  lines.push_back({"NAT  IPv4 TCP established, 64 B", repeated(nat64, XDP_TX, "nat"), "repeat"});
  lines.push_back(
      {"NAT  IPv4 TCP established, 1514 B", repeated(nat1500, XDP_TX, "nat1500"), "repeat"});
  run(prog, nat64, 1);  // makes sure the reply's nat_rev entry exists
  lines.push_back({"NAT  IPv4 reply (reverse NAT)",
                   repeated(frame(reply, dir, mac(0x11)), XDP_TX, "reply"), "repeat"});
  lines.push_back({"NAT  IPv6 TCP established", repeated(nat6, XDP_TX, "nat6"), "repeat"});
  const double dr_repeat = repeated(dr, XDP_TX, "dr");
  lines.push_back({"DR   IPv4 TCP established", dr_repeat, "repeat"});
  lines.push_back({"not a VIP (XDP_PASS)", repeated(pass, XDP_PASS, "pass"), "repeat"});
  // Per-call timer overhead: the same DR path, one run per call.
  const double dr_single = single([&](unsigned) { return dr; }, XDP_TX, "dr single");
  const double overhead = std::max(0.0, dr_single - dr_repeat);
  lines.push_back({"TUN  IPv4 in IPv4 established",
                   single([&](unsigned) { return tun; }, XDP_TX, "tun") - overhead, "single"});
  // Every call a client never seen before: a flow-table insert (and a NAT reply entry) each time.
  auto new_client = [&](const char* vip, unsigned i) {
    char src[32];
    std::snprintf(src, sizeof src, "%u.%u.%u.%u", 20 + (i >> 24) % 200, (i >> 16) & 255,
                  (i >> 8) & 255, i & 255);
    return frame(tcp(src, vip, 40000, kSyn, 0), dir, router);
  };
  lines.push_back(
      {"NAT  new flow, rr (SYN)",
       single([&](unsigned i) { return new_client("192.0.2.10", i); }, XDP_TX, "rr new") - overhead,
       "single"});
  lines.push_back({"NAT  new flow, mh (SYN)",
                   single([&](unsigned i) { return new_client("192.0.2.11", i + (1u << 28)); },
                          XDP_TX, "mh new") -
                       overhead,
                   "single"});

  std::printf("%-36s %10s %10s  %s\n", "path (CPU 0, generic test-run)", "ns/packet", "Mpps/core",
              "method");
  for (const Line& l : lines) {
    std::printf("%-36s %10.1f %10.2f  %s\n", l.name.c_str(), l.ns, l.ns > 0 ? 1000.0 / l.ns : 0,
                l.how);
  }
  std::printf(
      "\nrepeat: median of %u calls x %u runs; single: median of %u x mean of %u "
      "one-run calls, minus %.1f ns per-call timer overhead (DR measured both ways)\n",
      rounds, repeat, rounds, calls, overhead);
  return 0;
}
