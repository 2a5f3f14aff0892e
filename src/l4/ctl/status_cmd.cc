#include "l4/ctl/status_cmd.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "l4/abi/l4_abi.h"
#include "l4/ctl/bpf_handle.h"

namespace switchyard::l4 {
namespace {

constexpr const char* kStatNames[L4_STAT_MAX] = {
    "pass",        "conn_hit",    "conn_new",   "no_real",      "defer_tc",    "tc_kernel",
    "reverse_nat", "unsupported", "encap_fail", "conn_expired", "rescheduled", "tc_forwarded",
};

std::string address(const __u32 addr[4], __u8 family, __u16 port_be) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == L4_FAMILY_V4 ? AF_INET : AF_INET6, addr, text, sizeof text);
  const unsigned port = ntohs(port_be);
  return family == L4_FAMILY_V4 ? std::string(text) + ":" + std::to_string(port)
                                : "[" + std::string(text) + "]:" + std::to_string(port);
}

const char* mode_name(__u8 mode) {
  return mode == L4_MODE_DR ? "dr" : mode == L4_MODE_TUN ? "tun" : "nat";
}

l4_counters sum(int fd, __u32 key, unsigned cpus) {
  std::vector<l4_counters> per_cpu(cpus);
  l4_counters total{};
  if (bpf_map_lookup_elem(fd, &key, per_cpu.data()) != 0) return total;
  for (const l4_counters& c : per_cpu) {
    total.packets += c.packets;
    total.bytes += c.bytes;
    total.new_flows += c.new_flows;
    total.drops += c.drops;
  }
  return total;
}

}  // namespace

int l4_main(int argc, char** argv) {
  std::string pin_path = "/sys/fs/bpf/switchyard";
  std::string_view sub = argc > 0 ? argv[0] : "";
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--pin-path" && i + 1 < argc) {
      pin_path = argv[++i];
    } else {
      sub = "";
      break;
    }
  }
  if (sub != "status") {
    std::fputs(
        "usage: switchyard l4 status [--pin-path DIR]\n"
        "  prints the services, real servers and counters pinned under DIR\n"
        "  (l4.pin_path; default /sys/fs/bpf/switchyard)\n",
        stderr);
    return 2;
  }
  libbpf_set_print(nullptr);
  auto open = [&](const char* name) {
    return UniqueFd(bpf_obj_get((pin_path + "/" + name).c_str()));
  };
  UniqueFd services = open("services"), reals = open("reals"), vs_stats = open("vs_stats"),
           real_stats = open("real_stats"), stats = open("stats");
  if (!services || !reals || !vs_stats || !real_stats || !stats) {
    std::fprintf(stderr, "switchyard l4: no director state under %s: %s\n", pin_path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const int cpus_found = libbpf_num_possible_cpus();
  const unsigned cpus = cpus_found > 0 ? static_cast<unsigned>(cpus_found) : 1;
  std::map<__u32, std::pair<l4_vs_key, l4_service>> by_id;
  l4_vs_key key{}, next{};
  void* prev = nullptr;
  for (int guard = 0; guard <= L4_MAX_SERVICES; ++guard) {
    if (bpf_map_get_next_key(services.get(), prev, &next) != 0) break;
    l4_service value{};
    if (bpf_map_lookup_elem(services.get(), &next, &value) == 0) by_id[value.id] = {next, value};
    key = next;
    prev = &key;
  }
  std::map<__u32, std::vector<std::pair<__u32, l4_real>>> reals_of;
  for (__u32 id = 0; id < L4_MAX_REALS; ++id) {
    l4_real r{};
    if (bpf_map_lookup_elem(reals.get(), &id, &r) == 0 && (r.flags & L4_REAL_F_IN_USE)) {
      reals_of[r.service_id].push_back({id, r});
    }
  }
  std::printf("%-6s %-44s %4s %12s %14s %10s %8s\n", "proto", "virtual service / real server",
              "mode", "packets", "bytes", "new flows", "drops");
  for (const auto& [id, entry] : by_id) {
    const auto& [vk, vs] = entry;
    const l4_counters c = sum(vs_stats.get(), id, cpus);
    std::printf(
        "%-6s %-44s %4s %12llu %14llu %10llu %8llu\n", vk.proto == IPPROTO_UDP ? "udp" : "tcp",
        address(vk.addr, vk.family, vk.port).c_str(), "", (unsigned long long)c.packets,
        (unsigned long long)c.bytes, (unsigned long long)c.new_flows, (unsigned long long)c.drops);
    for (const auto& [rid, r] : reals_of[id]) {
      const l4_counters rc = sum(real_stats.get(), rid, cpus);
      std::string name = "  -> " + address(r.addr, r.family, r.port);
      if (!(r.flags & L4_REAL_F_AVAILABLE)) name += " (no new flows)";
      std::printf("%-6s %-44s %4s %12llu %14llu %10llu %8s\n", "", name.c_str(), mode_name(r.mode),
                  (unsigned long long)rc.packets, (unsigned long long)rc.bytes,
                  (unsigned long long)rc.new_flows, "");
    }
  }
  std::printf("\n");
  std::vector<__u64> per_cpu(cpus);
  for (__u32 i = 0; i < L4_STAT_MAX; ++i) {
    __u64 total = 0;
    if (bpf_map_lookup_elem(stats.get(), &i, per_cpu.data()) == 0) {
      for (__u64 v : per_cpu) total += v;
    }
    std::printf("%s %llu\n", kStatNames[i], (unsigned long long)total);
  }
  return 0;
}

}  // namespace switchyard::l4
