#include "l4/ctl/realserver.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "l4/abi/l4_abi.h"
#include "l4/ctl/bpf_handle.h"
#include "l4_decap.skel.h"

namespace switchyard::l4 {
namespace {

constexpr const char* kUsage =
    "usage: switchyard realserver --mode dr|tun --vip ADDR [--vip ADDR ...] [--dev IFACE ...] "
    "[--remove]\n"
    "  --mode dr    VIPs on lo, ARP for them suppressed (director on the same L2 segment)\n"
    "  --mode tun   as dr, plus the tc decap program on ingress of every --dev (required)\n"
    "  --vip ADDR   a virtual IP (IPv4 or IPv6, no port); repeat for several\n"
    "  --dev IFACE  the interface the director's packets arrive on; repeat for several\n"
    "  --remove     undo: remove the VIPs from lo and the decap program from the devices\n";

// The tc filter's handle and priority: fixed, so that running the command again replaces our
// own filter (and --remove finds it) without touching anyone else's.
constexpr __u32 kTcHandle = 0x5359;  // "SY"
constexpr __u32 kTcPriority = 0x5359;

struct Vip {
  std::string text;
  int family = AF_INET;
  unsigned char addr[16] = {};
};

int usage(const std::string& message) {
  std::fprintf(stderr, "switchyard realserver: %s\n\n%s", message.c_str(), kUsage);
  return 2;
}

// RTM_NEWADDR / RTM_DELADDR of a host address on `ifindex`, as `ip addr add VIP/32 dev lo`.
bool change_address(bool add, const Vip& vip, unsigned ifindex, std::string& error) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) {
    error = std::string("netlink socket: ") + std::strerror(errno);
    return false;
  }
  struct {
    nlmsghdr nh;
    ifaddrmsg ifa;
    char attrs[64];
  } req{};
  const int len = vip.family == AF_INET ? 4 : 16;
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  req.nh.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  req.nh.nlmsg_seq = 1;
  req.ifa.ifa_family = static_cast<unsigned char>(vip.family);
  req.ifa.ifa_prefixlen = static_cast<unsigned char>(len * 8);
  req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  req.ifa.ifa_index = ifindex;
  for (unsigned short type : {IFA_LOCAL, IFA_ADDRESS}) {
    auto* rta =
        reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.nh.nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    std::memcpy(RTA_DATA(rta), vip.addr, static_cast<std::size_t>(len));
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
  }
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), &req, req.nh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    error = std::string("netlink send: ") + std::strerror(errno);
    return false;
  }
  char reply[4096];
  const ssize_t n = ::recv(fd.get(), reply, sizeof reply, 0);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr)))) {
    error = "netlink: short reply";
    return false;
  }
  const auto* nh = reinterpret_cast<const nlmsghdr*>(reply);
  if (nh->nlmsg_type == NLMSG_ERROR) {
    const int err = -reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(nh))->error;
    // Already there (add) or already gone (remove) is the state we want.
    if (err == 0 || (add && err == EEXIST) || (!add && err == EADDRNOTAVAIL)) return true;
    error = std::string(add ? "adding " : "removing ") + vip.text + " on lo: " + std::strerror(err);
    return false;
  }
  return true;
}

bool write_sysctl(const std::string& path, const char* value, std::string& error) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), value, std::strlen(value)) < 0) {
    error = path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool attach_decap(const std::vector<Vip>& vips, const std::string& dev, std::string& error) {
  const unsigned ifindex = ::if_nametoindex(dev.c_str());
  if (ifindex == 0) {
    error = dev + ": " + std::strerror(errno);
    return false;
  }
  SkeletonPtr<l4_decap> skel(l4_decap::open_and_load());
  if (!skel) {
    error = std::string("cannot load the decap program: ") + std::strerror(errno);
    return false;
  }
  for (const Vip& vip : vips) {
    l4_decap_key key{};
    key.family = vip.family == AF_INET ? L4_FAMILY_V4 : L4_FAMILY_V6;
    std::memcpy(key.addr, vip.addr, vip.family == AF_INET ? 4 : 16);
    __u32 one = 1;
    if (bpf_map_update_elem(bpf_map__fd(skel->maps.decap_vips), &key, &one, BPF_ANY) != 0) {
      error = std::string("decap_vips: ") + std::strerror(errno);
      return false;
    }
  }
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex);
  hook.attach_point = BPF_TC_INGRESS;
  if (int rc = bpf_tc_hook_create(&hook); rc != 0 && rc != -EEXIST) {
    error = dev + ": cannot create the clsact qdisc: " + std::strerror(-rc);
    return false;
  }
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.prog_fd = bpf_program__fd(skel->progs.l4_decap);
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  opts.flags = BPF_TC_F_REPLACE;
  if (int rc = bpf_tc_attach(&hook, &opts); rc != 0) {
    error = dev + ": cannot attach the decap program: " + std::strerror(-rc);
    return false;
  }
  return true;  // the tc filter keeps the program (and its map) after skel is destroyed
}

bool detach_decap(const std::string& dev, std::string& error) {
  const unsigned ifindex = ::if_nametoindex(dev.c_str());
  if (ifindex == 0) {
    error = dev + ": " + std::strerror(errno);
    return false;
  }
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex);
  hook.attach_point = BPF_TC_INGRESS;
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  if (int rc = bpf_tc_detach(&hook, &opts); rc != 0 && rc != -ENOENT && rc != -EINVAL) {
    error = dev + ": cannot detach the decap program: " + std::strerror(-rc);
    return false;
  }
  return true;
}

}  // namespace

int realserver_main(int argc, char** argv) {
  std::string mode;
  std::vector<Vip> vips;
  std::vector<std::string> devs;
  bool remove = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--mode" && has_value) {
      mode = argv[++i];
    } else if (a == "--vip" && has_value) {
      Vip vip;
      vip.text = argv[++i];
      if (inet_pton(AF_INET, vip.text.c_str(), vip.addr) == 1) {
        vip.family = AF_INET;
      } else if (inet_pton(AF_INET6, vip.text.c_str(), vip.addr) == 1) {
        vip.family = AF_INET6;
      } else {
        return usage("--vip " + vip.text + " is not an IPv4 or IPv6 address (no port)");
      }
      vips.push_back(vip);
    } else if (a == "--dev" && has_value) {
      devs.emplace_back(argv[++i]);
    } else if (a == "--remove") {
      remove = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      return usage("unknown or incomplete option " + std::string(a));
    }
  }
  if (mode != "dr" && mode != "tun") return usage("--mode must be dr or tun");
  if (vips.empty()) return usage("at least one --vip is required");
  if (mode == "tun" && devs.empty()) {
    return usage("--mode tun needs --dev: the interface the tunnelled packets arrive on");
  }
  libbpf_set_print(nullptr);  // errors are reported below, with context
  std::string error;
  const unsigned lo = ::if_nametoindex("lo");
  bool ok = true;
  auto report = [&] {
    std::fprintf(stderr, "switchyard realserver: %s\n", error.c_str());
    ok = false;
  };
  if (mode == "tun") {
    for (const std::string& dev : devs) {
      if (!(remove ? detach_decap(dev, error) : attach_decap(vips, dev, error))) report();
    }
  }
  for (const Vip& vip : vips) {
    if (!change_address(!remove, vip, lo, error)) report();
  }
  if (!remove) {
    std::vector<std::string> confs = {"all"};
    confs.insert(confs.end(), devs.begin(), devs.end());
    for (const std::string& conf : confs) {
      const std::string base = "/proc/sys/net/ipv4/conf/" + conf + "/";
      // arp_ignore=1: answer ARP only for addresses on the interface asked; arp_announce=2:
      // never use the VIP as ARP source. Together: the VIP on lo stays invisible on the LAN.
      if (!write_sysctl(base + "arp_ignore", "1", error)) report();
      if (!write_sysctl(base + "arp_announce", "2", error)) report();
      if (mode == "tun" && !write_sysctl(base + "rp_filter", "0", error)) report();
    }
  }
  if (ok) {
    std::string list;
    for (const Vip& v : vips) list += (list.empty() ? "" : ", ") + v.text;
    std::printf("realserver %s: %s %s%s\n", mode.c_str(), remove ? "removed" : "ready for",
                list.c_str(), mode == "tun" && !remove ? " (tc decap attached)" : "");
  }
  return ok ? 0 : 1;
}

}  // namespace switchyard::l4
