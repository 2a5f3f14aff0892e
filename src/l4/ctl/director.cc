#include "l4/ctl/director.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "l4/ctl/sched_rows.h"
#include "l4_lb.skel.h"

namespace switchyard::l4 {
namespace {

// Maps whose contents must survive a control-plane restart: the flow tables, and what their
// entries refer to (real ids and their generations, service ids), plus the counters so that
// they count across restarts. `rows` and `cursors` are rebuilt on every start.
constexpr const char* kPinnedMaps[] = {"services", "reals",      "conns", "nat_rev",
                                       "vs_stats", "real_stats", "stats"};

constexpr const char* kBpffsRoot = "/sys/fs/bpf";

// Our tc filter's identity on each interface: fixed, so a restart replaces a filter left by a
// crashed run instead of stacking a second one ("L4").
constexpr __u32 kTcHandle = 0x4c34;
constexpr __u32 kTcPriority = 0x4c34;

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

int libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  char line[1024];
  std::vsnprintf(line, sizeof line, format, args);
  std::string_view text(line);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  // bpf_tc_hook_create on an interface that already has clsact (ours from before, or someone
  // else's, which we share) fails with EEXIST; the kernel's message for it is not a problem.
  if (level == LIBBPF_WARN && text.find("Exclusivity flag on") == std::string_view::npos) {
    spdlog::warn("libbpf: {}", text);
  } else {
    spdlog::debug("libbpf: {}", text);
  }
  return 0;
}

struct Endpoint {
  std::uint8_t family = L4_FAMILY_V4;
  std::uint32_t addr[4] = {};
  std::uint16_t port = 0;  // network order
};

Endpoint endpoint_of(const config::SocketAddress& a) {
  Endpoint e;
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
    e.family = L4_FAMILY_V4;
    e.addr[0] = in->sin_addr.s_addr;
    e.port = in->sin_port;
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    e.family = L4_FAMILY_V6;
    std::memcpy(e.addr, &in6->sin6_addr, 16);
    e.port = in6->sin6_port;
  }
  return e;
}

l4_vs_key vs_key_of(const config::L4Service& s) {
  const Endpoint e = endpoint_of(s.vip);
  l4_vs_key k{};
  std::memcpy(k.addr, e.addr, sizeof k.addr);
  k.port = e.port;
  k.proto = static_cast<__u8>(s.protocol);
  k.family = e.family;
  return k;
}

template <class T>
std::string bytes_of(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::uint8_t mode_code(config::L4Mode m) {
  switch (m) {
    case config::L4Mode::kDr:
      return L4_MODE_DR;
    case config::L4Mode::kTun:
      return L4_MODE_TUN;
    default:
      return L4_MODE_NAT;
  }
}

// Identity of a (service, server) binding: the VIP key, the server's address and port, and the
// mode. A flow entry stays valid exactly as long as this identity keeps its real id.
std::string binding_key(const std::string& vs_key, const std::uint32_t addr[4], std::uint16_t port,
                        std::uint8_t mode) {
  std::string k = vs_key;
  k.append(reinterpret_cast<const char*>(addr), 16);
  k.append(reinterpret_cast<const char*>(&port), sizeof port);
  k.push_back(static_cast<char>(mode));
  return k;
}

// The source address the kernel would use towards `server`: the outer source of TUN packets, so
// the real server's reverse-path filter and any firewall see the director's own address.
bool tunnel_source(const config::SocketAddress& server, std::uint32_t out[4]) {
  UniqueFd fd(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), server.sa(), server.length) != 0) return false;
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0) return false;
  std::memset(out, 0, 16);
  if (local.ss_family == AF_INET) {
    out[0] = reinterpret_cast<sockaddr_in*>(&local)->sin_addr.s_addr;
  } else {
    std::memcpy(out, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, 16);
  }
  return true;
}

// DR rewrites only the MAC, which bpf_fib_lookup takes from the kernel's neighbour table; a
// datagram to the discard port makes the kernel resolve (and keep resolving) the server's MAC.
void resolve_neighbour(const config::SocketAddress& server) {
  UniqueFd fd(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return;
  sockaddr_storage to = server.storage;
  if (to.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&to)->sin_port = htons(9);
  } else {
    reinterpret_cast<sockaddr_in6*>(&to)->sin6_port = htons(9);
  }
  (void)::sendto(fd.get(), "", 0, 0, reinterpret_cast<sockaddr*>(&to), server.length);
}

std::string driver_of(const std::string& ifname) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return {};
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(fd.get(), SIOCETHTOOL, &ifr) != 0) return {};
  return info.driver;
}

// The data path asks the kernel's FIB for next hops (bpf_fib_lookup), and the kernel answers only
// for interfaces that forward; the packets XDP leaves to the kernel need forwarding as well. A
// director forwards by definition, so this turns it on for the interfaces it serves, and says so.
void ensure_forwarding(const std::string& ifname, bool ipv6) {
  for (const char* family : {"ipv4", "ipv6"}) {
    if (std::string_view(family) == "ipv6" && !ipv6) continue;
    const std::string path =
        std::string("/proc/sys/net/") + family + "/conf/" + ifname + "/forwarding";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    char value = 0;
    if (!fd || ::read(fd.get(), &value, 1) != 1 || value != '0') continue;
    if (::pwrite(fd.get(), "1", 1, 0) == 1) {
      spdlog::info(
          "l4: enabled {} forwarding on {} (net.{}.conf.{}.forwarding=1): the data "
          "path routes through the kernel's FIB",
          family, ifname, family, ifname);
    } else {
      spdlog::warn(
          "l4: {} forwarding is off on {} and cannot be turned on ({}): VIP packets "
          "will reach the kernel instead of being forwarded",
          family, ifname, errno_text(errno));
    }
  }
}

bool is_bpffs(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

bool make_dirs(const std::string& path, std::string& error) {
  for (std::size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      error = "cannot create " + part + ": " + errno_text(errno);
      return false;
    }
  }
  return true;
}

// Pinning needs bpffs. Many hosts (this project's CI included) do not mount it, so a pin path
// under /sys/fs/bpf mounts it there, as systemd would have.
bool ensure_pin_dir(const std::string& dir, std::string& error) {
  const std::string root = kBpffsRoot;
  if (dir.rfind(root + "/", 0) == 0 && !is_bpffs(root)) {
    if (::mount("bpf", kBpffsRoot, "bpf", 0, "mode=0700") != 0) {
      error = "bpffs is not mounted at /sys/fs/bpf and mounting it failed: " + errno_text(errno);
      return false;
    }
    spdlog::info("l4: mounted bpffs at {}", kBpffsRoot);
  }
  if (!make_dirs(dir, error)) return false;
  if (!is_bpffs(dir)) {
    error = "l4.pin_path " + dir + " is not on a bpffs file system (mount -t bpf bpf DIR)";
    return false;
  }
  return true;
}

// A map pinned by an earlier run with another layout or size (e.g. l4.connections changed)
// cannot be reused; libbpf would refuse the whole load. Replace it, saying what is lost.
void drop_incompatible_pin(bpf_map* map, const std::string& path) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) return;
  bpf_map_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return;
  if (info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
      info.value_size == bpf_map__value_size(map) &&
      info.max_entries == bpf_map__max_entries(map) && info.map_flags == bpf_map__map_flags(map)) {
    return;
  }
  spdlog::warn(
      "l4: pinned map {} has another size or layout ({} entries, want {}); replacing it{}", path,
      info.max_entries, bpf_map__max_entries(map),
      std::string(bpf_map__name(map)) == "conns" ? ": established flows are forgotten" : "");
  ::unlink(path.c_str());
}

const char* xdp_mode_name(config::L4::XdpMode m) {
  switch (m) {
    case config::L4::XdpMode::kNative:
      return "native";
    case config::L4::XdpMode::kGeneric:
      return "generic";
    default:
      return "auto";
  }
}

}  // namespace

Director::Director() : skel_(nullptr, &l4_lb::destroy) {}

Director::~Director() {
  for (const auto& [ifname, link] : links_) {
    spdlog::info("l4: XDP detached from {}", ifname);
  }
  links_.clear();  // closing a link detaches its program
  tc_.clear();
  skel_.reset();  // pinned maps stay in bpffs for the next start
}

std::unique_ptr<Director> Director::start(const config::L4& l4, const Availability& available,
                                          std::string& error) {
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(libbpf_log); });

  std::unique_ptr<Director> d(new Director());
  d->pin_path_ = l4.pin_path;
  d->xdp_mode_ = l4.xdp_mode;
  d->connections_ = l4.connections;
  const int cpus = libbpf_num_possible_cpus();
  d->cpus_ = cpus > 0 ? static_cast<unsigned>(cpus) : 1;
  if (!ensure_pin_dir(l4.pin_path, error)) return nullptr;

  d->skel_.reset(l4_lb::open());
  if (!d->skel_) {
    error = "cannot open the L4 BPF object: " + errno_text(errno);
    return nullptr;
  }
  l4_lb* skel = d->skel_.get();
  bpf_map__set_max_entries(skel->maps.conns, l4.connections);
  bpf_map__set_max_entries(skel->maps.nat_rev, l4.connections);
  for (const char* name : kPinnedMaps) {
    bpf_map* map = bpf_object__find_map_by_name(skel->obj, name);
    const std::string path = l4.pin_path + "/" + name;
    drop_incompatible_pin(map, path);
    bpf_map__set_pin_path(map, path.c_str());
  }
  if (int rc = l4_lb::load(skel); rc != 0) {
    error = "cannot load the L4 BPF program: " + errno_text(rc) +
            " (needs root or CAP_BPF+CAP_NET_ADMIN; run with -v for the verifier log)";
    return nullptr;
  }
  if (!d->calibrate_hz(error)) return nullptr;
  const __u32 zero = 0;
  l4_globals g{};
  auto to_jiffies = [&](config::Millis ms) {
    return static_cast<__u64>(ms.count()) * d->hz_ / 1000;
  };
  g.tcp_timeout = to_jiffies(l4.tcp_timeout);
  g.tcp_fin_timeout = to_jiffies(l4.tcp_fin_timeout);
  g.udp_timeout = to_jiffies(l4.udp_timeout);
  g.hz = d->hz_;
  if (bpf_map_update_elem(bpf_map__fd(skel->maps.globals), &zero, &g, BPF_ANY) != 0) {
    error = "cannot write the L4 globals: " + errno_text(errno);
    return nullptr;
  }
  if (!d->restore_ids(error)) return nullptr;
  if (!d->sync(l4, available, error)) return nullptr;
  if (!d->attach(l4, error)) return nullptr;  // the destructor detaches what was attached
  return d;
}

bool Director::read_clock(std::uint64_t& jiffies, std::uint64_t& ns) const {
  std::uint64_t frame[2] = {};
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = frame;
  opts.data_size_in = sizeof frame;
  opts.data_out = frame;
  opts.data_size_out = sizeof frame;
  opts.repeat = 1;
  if (bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.l4_clock), &opts) != 0) return false;
  jiffies = frame[0];
  ns = frame[1];
  return true;
}

std::uint64_t Director::jiffies() const {
  std::uint64_t j = 0, ns = 0;
  read_clock(j, ns);
  return j;
}

bool Director::calibrate_hz(std::string& error) {
  // Two readings >= 50 ms apart; HZ is a kernel build option, one of a few values.
  std::uint64_t j0 = 0, n0 = 0, j1 = 0, n1 = 0;
  if (!read_clock(j0, n0)) {
    error = "cannot run the L4 clock program: " + errno_text(errno);
    return false;
  }
  j1 = j0;
  n1 = n0;
  for (int i = 0; i < 100 && n1 - n0 < 50'000'000; ++i) {
    ::usleep(10'000);
    if (!read_clock(j1, n1)) {
      error = "cannot run the L4 clock program: " + errno_text(errno);
      return false;
    }
  }
  const double measured =
      static_cast<double>(j1 - j0) * 1e9 / static_cast<double>(std::max<std::uint64_t>(1, n1 - n0));
  // The nearest of the values the kernel can be built with (CONFIG_HZ), if within 20 %: a
  // wrong HZ makes the dates userspace writes (handoff steering) drift off the data path's clock.
  hz_ = static_cast<std::uint32_t>(measured + 0.5);
  double best = 0.2;
  for (std::uint32_t candidate : {100u, 250u, 300u, 1000u}) {
    const double off = std::abs(measured - candidate) / candidate;
    if (off < best) {
      best = off;
      hz_ = candidate;
    }
  }
  if (hz_ == 0) hz_ = 100;
  spdlog::info("l4: kernel HZ {} (measured {:.1f})", hz_, measured);
  return true;
}

bool Director::restore_ids(std::string& error) {
  l4_lb* skel = skel_.get();
  const int services_fd = bpf_map__fd(skel->maps.services);
  const int reals_fd = bpf_map__fd(skel->maps.reals);
  service_used_.assign(L4_MAX_SERVICES, false);
  reals_.assign(L4_MAX_REALS, l4_real{});
  std::map<std::uint32_t, std::string> key_of_service;
  l4_vs_key key{}, next{};
  void* prev = nullptr;
  for (std::size_t guard = 0; guard <= L4_MAX_SERVICES; ++guard) {
    if (bpf_map_get_next_key(services_fd, prev, &next) != 0) break;
    l4_service value{};
    if (bpf_map_lookup_elem(services_fd, &next, &value) == 0 && value.id < L4_MAX_SERVICES) {
      service_ids_[bytes_of(next)] = value.id;
      service_used_[value.id] = true;
      key_of_service[value.id] = bytes_of(next);
    }
    key = next;
    prev = &key;
  }
  std::size_t restored = 0;
  for (std::uint32_t id = 0; id < L4_MAX_REALS; ++id) {
    l4_real r{};
    if (bpf_map_lookup_elem(reals_fd, &id, &r) != 0) {
      error = "cannot read the pinned reals map: " + errno_text(errno);
      return false;
    }
    reals_[id] = r;
    if (!(r.flags & L4_REAL_F_IN_USE)) continue;
    auto svc = key_of_service.find(r.service_id);
    if (svc == key_of_service.end()) {
      // Its service is gone: nothing can refer to it any more except stale flows, which the
      // missing IN_USE flag now rejects.
      reals_[id].flags = 0;
      bpf_map_update_elem(reals_fd, &id, &reals_[id], BPF_ANY);
      continue;
    }
    real_ids_[binding_key(svc->second, r.addr, r.port, r.mode)] = id;
    ++restored;
  }
  if (!service_ids_.empty()) {
    spdlog::info("l4: restored {} services and {} real servers pinned under {}",
                 service_ids_.size(), restored, pin_path_);
  }
  return true;
}

void Director::zero_percpu(int map_fd, std::uint32_t key, std::size_t value_size) {
  const std::size_t stride = (value_size + 7) / 8 * 8;
  std::vector<char> zeros(stride * cpus_, 0);
  bpf_map_update_elem(map_fd, &key, zeros.data(), BPF_ANY);
}

bool Director::sync(const config::L4& l4, const Availability& available, std::string& error,
                    const std::vector<std::vector<std::uint64_t>>* active) {
  l4_lb* skel = skel_.get();
  const int services_fd = bpf_map__fd(skel->maps.services);
  const int reals_fd = bpf_map__fd(skel->maps.reals);
  const int rows_fd = bpf_map__fd(skel->maps.rows);
  bool ok = true;
  auto fail = [&](std::string message) {
    if (ok) error = std::move(message);
    ok = false;
  };

  if (l4.pin_path != pin_path_ || l4.xdp_mode != xdp_mode_ || l4.connections != connections_) {
    spdlog::warn("l4: pin_path, xdp_mode and connections.size change only at restart");
  }

  // 1. Ids for every service and binding; reals written before any row can name them.
  std::set<std::string> wanted_services, wanted_reals;
  std::set<std::uint32_t> claimed;  // real ids taken in this pass
  for (const auto& [key, id] : real_ids_) claimed.insert(id);
  struct Planned {
    std::size_t service;  // index in l4.services
    std::uint32_t id;
    l4_vs_key key;
    std::vector<RowServer> row_servers;
  };
  std::vector<Planned> planned;
  std::vector<FlowSteering::Target> handoff_targets;
  for (std::size_t s = 0; s < l4.services.size(); ++s) {
    const config::L4Service& svc = l4.services[s];
    const l4_vs_key vk = vs_key_of(svc);
    const std::string vkb = bytes_of(vk);
    wanted_services.insert(vkb);
    auto found = service_ids_.find(vkb);
    std::uint32_t sid;
    if (found != service_ids_.end()) {
      sid = found->second;
    } else {
      auto free_slot = std::find(service_used_.begin(), service_used_.end(), false);
      if (free_slot == service_used_.end()) {
        fail("too many l4 services");
        continue;
      }
      sid = static_cast<std::uint32_t>(free_slot - service_used_.begin());
      service_used_[sid] = true;
      service_ids_[vkb] = sid;
      zero_percpu(bpf_map__fd(skel->maps.vs_stats), sid, sizeof(l4_counters));
      zero_percpu(bpf_map__fd(skel->maps.cursors), sid, sizeof(__u32));
    }
    Planned plan{s, sid, vk, {}};
    for (std::size_t i = 0; i < svc.servers.size(); ++i) {
      const config::L4Server& server = svc.servers[i];
      const Endpoint e = endpoint_of(server.address);
      const std::uint8_t mode = mode_code(server.mode);
      const std::string bkey = binding_key(vkb, e.addr, e.port, mode);
      wanted_reals.insert(bkey);
      std::uint32_t rid;
      bool fresh = false;
      if (auto it = real_ids_.find(bkey); it != real_ids_.end()) {
        rid = it->second;
      } else {
        rid = L4_MAX_REALS;
        for (std::uint32_t id = 0; id < L4_MAX_REALS; ++id) {
          if (!(reals_[id].flags & L4_REAL_F_IN_USE) && !claimed.count(id)) {
            rid = id;
            break;
          }
        }
        if (rid == L4_MAX_REALS) {
          fail("too many l4 real servers");
          continue;
        }
        claimed.insert(rid);
        real_ids_[bkey] = rid;
        fresh = true;
        zero_percpu(bpf_map__fd(skel->maps.real_stats), rid, sizeof(l4_counters));
      }
      l4_real r{};
      std::memcpy(r.addr, e.addr, sizeof r.addr);
      r.port = e.port;
      r.family = e.family;
      r.mode = mode;
      r.service_id = sid;
      // A new binding on a recycled id gets a new generation, so flows recorded for whatever
      // used the id before are rescheduled instead of reaching this server.
      r.gen = fresh ? reals_[rid].gen + 1 : reals_[rid].gen;
      bool up = s < available.size() && i < available[s].size() && available[s][i];
      if (server.mode == config::L4Mode::kTun && !tunnel_source(server.address, r.tun_src)) {
        spdlog::warn("l4: service {}: no route to tun server {}; it takes no new flows", svc.name,
                     server.address.text);
        up = false;
      }
      if (server.mode == config::L4Mode::kDr) resolve_neighbour(server.address);
      r.flags = L4_REAL_F_IN_USE | (svc.reschedule_down ? L4_REAL_F_RESCHEDULE_DOWN : 0);
      if (up && server.weight > 0) {
        r.flags |= L4_REAL_F_AVAILABLE;
        plan.row_servers.push_back({rid, server.weight, server.address.text});
      }
      if (std::memcmp(&r, &reals_[rid], sizeof r) != 0) {
        if (bpf_map_update_elem(reals_fd, &rid, &r, BPF_ANY) != 0) {
          fail("cannot write the reals map: " + errno_text(errno));
          continue;
        }
        reals_[rid] = r;
      }
      if (svc.handoff) {
        FlowSteering::Target t{vk, {}, e.family, rid, r.gen};
        std::memcpy(t.addr, e.addr, sizeof t.addr);
        handoff_targets.push_back(t);
      }
    }
    planned.push_back(std::move(plan));
  }

  // 2. Rows into the inactive half, then flip each service in one update.
  for (Planned& plan : planned) {
    const std::size_t s = plan.service;
    const config::L4Service& svc = l4.services[s];
    const Scheduler sched = scheduler_from_name(svc.scheduler).value_or(Scheduler::kRr);
    std::vector<std::uint64_t> counts;
    if (active != nullptr && s < active->size()) {
      // Counts of the servers that are in the row, in row_servers order.
      for (const RowServer& rs : plan.row_servers) {
        for (std::size_t i = 0; i < svc.servers.size(); ++i) {
          if (svc.servers[i].address.text == rs.key && i < (*active)[s].size()) {
            counts.push_back((*active)[s][i]);
            break;
          }
        }
      }
    }
    const std::vector<std::uint32_t> row = build_row(
        sched, plan.row_servers, counts.size() == plan.row_servers.size() ? &counts : nullptr);
    l4_service current{};
    const bool exists = bpf_map_lookup_elem(services_fd, &plan.key, &current) == 0;
    l4_service next{};
    next.id = plan.id;
    next.pick = pick_for(sched, svc.hash_port);
    next.flags = static_cast<__u8>((svc.reschedule_down ? L4_VS_F_RESCHEDULE_DOWN : 0) |
                                   (svc.handoff ? L4_VS_F_HANDOFF : 0));
    next.slots = static_cast<__u32>(row.size());
    const __u32 base = plan.id * L4_ROWS_PER_SERVICE;
    next.row = exists && current.row == base ? base + 1 : base;
    const std::size_t taking = plan.row_servers.size();
    if (auto [it, inserted] = logged_.try_emplace(svc.name, taking);
        inserted || it->second != taking) {
      it->second = taking;
      spdlog::info("l4: service {} ({} {}): {} of {} servers take new flows", svc.name,
                   svc.protocol == IPPROTO_UDP ? "udp" : "tcp", svc.vip.text, taking,
                   svc.servers.size());
    }
    if (exists && current.id == plan.id) {
      // Unchanged row and settings: leave the active row alone (no write at all).
      std::vector<std::uint32_t> installed(current.slots);
      bool same = current.pick == next.pick && current.flags == next.flags &&
                  current.slots == next.slots && current.row >= base &&
                  current.row < base + L4_ROWS_PER_SERVICE;
      for (__u32 i = 0; same && i < current.slots; ++i) {
        __u32 index = current.row * L4_RING_SIZE + i;
        __u32 value = 0;
        same = bpf_map_lookup_elem(rows_fd, &index, &value) == 0 && value == row[i];
      }
      if (same) continue;
    }
    std::vector<__u32> keys(row.size());
    for (std::size_t i = 0; i < row.size(); ++i) {
      keys[i] = next.row * L4_RING_SIZE + static_cast<__u32>(i);
    }
    __u32 count = static_cast<__u32>(row.size());
    if (count > 0 && bpf_map_update_batch(rows_fd, keys.data(), row.data(), &count, nullptr) != 0) {
      // Older kernels lack batch updates on arrays: one element at a time.
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (bpf_map_update_elem(rows_fd, &keys[i], &row[i], BPF_ANY) != 0) {
          fail("cannot write a scheduling row: " + errno_text(errno));
          break;
        }
      }
    }
    if (bpf_map_update_elem(services_fd, &plan.key, &next, BPF_ANY) != 0) {
      fail("cannot write the services map: " + errno_text(errno));
      continue;
    }
  }

  // 3. Removals, after nothing points at them any more.
  for (auto it = service_ids_.begin(); it != service_ids_.end();) {
    if (wanted_services.count(it->first)) {
      ++it;
      continue;
    }
    l4_vs_key k{};
    std::memcpy(&k, it->first.data(), sizeof k);
    bpf_map_delete_elem(services_fd, &k);
    service_used_[it->second] = false;
    it = service_ids_.erase(it);
  }
  for (auto it = real_ids_.begin(); it != real_ids_.end();) {
    if (wanted_reals.count(it->first)) {
      ++it;
      continue;
    }
    const std::uint32_t rid = it->second;
    l4_real r = reals_[rid];
    r.flags = 0;  // flows still naming it are rescheduled; gen is kept for the next owner
    if (bpf_map_update_elem(reals_fd, &rid, &r, BPF_ANY) == 0) reals_[rid] = r;
    it = real_ids_.erase(it);
  }

  // 4. Handoff steering for what is installed now (workers keep the previous one until they
  // pick this up; its real ids stay valid or carry a stale generation the data path rejects).
  {
    std::uint64_t j = 0, ns = 0;
    core::UniqueFd conns(::fcntl(bpf_map__fd(skel->maps.conns), F_DUPFD_CLOEXEC, 0));
    if (conns && read_clock(j, ns)) {
      steering_ = std::make_shared<const FlowSteering>(std::move(conns),
                                                       std::move(handoff_targets), j, ns, hz_);
    } else {
      fail("cannot set up handoff steering: " + errno_text(errno));
    }
  }

  // 5. Interfaces (only once started: start() attaches after its first sync).
  if (!links_.empty() || !attach_modes_.empty()) {
    for (auto it = links_.begin(); it != links_.end();) {
      if (std::find(l4.interfaces.begin(), l4.interfaces.end(), it->first) != l4.interfaces.end()) {
        ++it;
        continue;
      }
      spdlog::info("l4: XDP detached from {}", it->first);
      attach_modes_.erase(it->first);
      tc_.erase(it->first);
      it = links_.erase(it);
    }
    std::string attach_error;
    if (!attach(l4, attach_error)) fail(attach_error);
  }
  return ok;
}

bool Director::attach(const config::L4& l4, std::string& error) {
  bool ipv6 = false;
  for (const config::L4Service& svc : l4.services) {
    ipv6 = ipv6 || svc.vip.family() == AF_INET6;
    for (const config::L4Server& s : svc.servers) ipv6 = ipv6 || s.address.family() == AF_INET6;
  }
  for (const std::string& ifname : l4.interfaces) {
    if (links_.count(ifname)) continue;
    ensure_forwarding(ifname, ipv6);
    if (!attach_one(ifname, xdp_mode_, error)) return false;
  }
  return true;
}

bool Director::attach_one(const std::string& ifname, config::L4::XdpMode mode, std::string& error) {
  const unsigned ifindex = ::if_nametoindex(ifname.c_str());
  if (ifindex == 0) {
    error = "l4: interface " + ifname + ": " + errno_text(errno);
    return false;
  }
  const int prog_fd = bpf_program__fd(skel_->progs.l4_director);
  auto link = [&](__u32 flags) {
    bpf_link_create_opts opts{};
    opts.sz = sizeof opts;
    opts.flags = flags;
    return UniqueFd(bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &opts));
  };
  std::string why_generic;
  UniqueFd fd;
  const char* used = "native";
  if (mode == config::L4::XdpMode::kAuto && driver_of(ifname) == "veth") {
    // Native XDP on veth drops traffic unless the peer also runs XDP: generic is what works.
    why_generic = "veth: native XDP needs a program on the peer too";
  } else if (mode != config::L4::XdpMode::kGeneric) {
    fd = link(XDP_FLAGS_DRV_MODE);
    if (!fd && mode == config::L4::XdpMode::kNative) {
      error = "l4: cannot attach XDP to " + ifname + " in native mode: " + errno_text(errno);
      return false;
    }
    if (!fd) why_generic = "native XDP unavailable: " + errno_text(errno);
  } else {
    why_generic = "as configured";
  }
  if (!fd) {
    used = "generic";
    fd = link(XDP_FLAGS_SKB_MODE);
    if (!fd) {
      error = "l4: cannot attach XDP to " + ifname + ": " + errno_text(errno) +
              (errno == EBUSY || errno == EEXIST ? " (another XDP program is attached)" : "");
      return false;
    }
  }
  // The tc half: takes the packets XDP defers (aggregates, unknown next-hop MAC).
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex);
  hook.attach_point = BPF_TC_INGRESS;
  if (int rc = bpf_tc_hook_create(&hook); rc != 0 && rc != -EEXIST) {
    error = "l4: cannot create the clsact qdisc on " + ifname + ": " + errno_text(rc);
    return false;
  }
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.prog_fd = bpf_program__fd(skel_->progs.l4_director_tc);
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  opts.flags = BPF_TC_F_REPLACE;
  if (int rc = bpf_tc_attach(&hook, &opts); rc != 0) {
    error = "l4: cannot attach the tc program to " + ifname + ": " + errno_text(rc);
    return false;
  }
  tc_[ifname] = TcFilter(static_cast<int>(ifindex), kTcHandle, kTcPriority);
  if (why_generic.empty()) {
    spdlog::info("l4: XDP attached to {} in native (driver) mode", ifname);
  } else {
    spdlog::info("l4: XDP attached to {} in generic (SKB) mode ({}; xdp_mode: {})", ifname,
                 why_generic, xdp_mode_name(mode));
  }
  links_[ifname] = std::move(fd);
  attach_modes_[ifname] = used;
  return true;
}

int Director::program_fd() const {
  return bpf_program__fd(skel_->progs.l4_director);
}

int Director::map_fd(const char* name) const {
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
  return map ? bpf_map__fd(map) : -1;
}

std::vector<std::vector<std::uint64_t>> Director::active_flows(const config::L4& l4) const {
  std::vector<std::vector<std::uint64_t>> counts(l4.services.size());
  std::map<std::uint32_t, std::pair<std::size_t, std::size_t>> where;  // real id -> (s, i)
  for (std::size_t s = 0; s < l4.services.size(); ++s) {
    const config::L4Service& svc = l4.services[s];
    counts[s].assign(svc.servers.size(), 0);
    const std::string vkb = bytes_of(vs_key_of(svc));
    for (std::size_t i = 0; i < svc.servers.size(); ++i) {
      const Endpoint e = endpoint_of(svc.servers[i].address);
      auto it = real_ids_.find(binding_key(vkb, e.addr, e.port, mode_code(svc.servers[i].mode)));
      if (it != real_ids_.end()) where[it->second] = {s, i};
    }
  }
  const int fd = bpf_map__fd(skel_->maps.conns);
  const std::uint64_t now = jiffies();
  const std::uint64_t tcp_timeout = static_cast<std::uint64_t>(l4.tcp_timeout.count()) * hz_ / 1000;
  const std::uint64_t udp_timeout = static_cast<std::uint64_t>(l4.udp_timeout.count()) * hz_ / 1000;
  constexpr __u32 kBatch = 4096;
  std::vector<l4_flow_key> keys(kBatch);
  std::vector<l4_conn> values(kBatch);
  std::uint64_t token = 0;
  bool first = true;
  // Bounded by the table size: each batch returns at least one entry or ends the walk.
  for (std::uint64_t seen = 0; seen <= connections_;) {
    __u32 n = kBatch;
    std::uint64_t next_token = 0;
    const int rc = bpf_map_lookup_batch(fd, first ? nullptr : &token, &next_token, keys.data(),
                                        values.data(), &n, nullptr);
    const int err = errno;
    for (__u32 k = 0; k < n; ++k) {
      const l4_conn& c = values[k];
      const std::uint64_t timeout = keys[k].proto == IPPROTO_UDP ? udp_timeout : tcp_timeout;
      if (c.state != L4_CONN_ACTIVE || now - c.atime > timeout) continue;
      auto it = where.find(c.real_id);
      if (it == where.end() || reals_[c.real_id].gen != c.real_gen) continue;
      ++counts[it->second.first][it->second.second];
    }
    seen += n;
    if (rc != 0 || n == 0) {
      if (err != ENOENT && rc != 0) spdlog::debug("l4: flow table walk: {}", errno_text(err));
      break;
    }
    token = next_token;
    first = false;
  }
  return counts;
}

Status Director::status(const config::L4& l4) const {
  Status st;
  l4_lb* skel = skel_.get();
  auto sum = [&](int fd, std::uint32_t key) {
    std::vector<l4_counters> per_cpu(cpus_);
    Counters c;
    if (bpf_map_lookup_elem(fd, &key, per_cpu.data()) != 0) return c;
    for (const l4_counters& v : per_cpu) {
      c.packets += v.packets;
      c.bytes += v.bytes;
      c.new_flows += v.new_flows;
      c.drops += v.drops;
    }
    return c;
  };
  for (const config::L4Service& svc : l4.services) {
    ServiceStatus ss;
    ss.name = svc.name;
    const l4_vs_key vk = vs_key_of(svc);
    const std::string vkb = bytes_of(vk);
    l4_service value{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.services), &vk, &value) == 0) {
      ss.id = value.id;
      ss.slots = value.slots;
      ss.counters = sum(bpf_map__fd(skel->maps.vs_stats), value.id);
    }
    for (const config::L4Server& server : svc.servers) {
      RealStatus rs;
      rs.address = server.address.text;
      rs.mode = server.mode;
      const Endpoint e = endpoint_of(server.address);
      auto it = real_ids_.find(binding_key(vkb, e.addr, e.port, mode_code(server.mode)));
      if (it != real_ids_.end()) {
        rs.id = it->second;
        rs.available = (reals_[it->second].flags & L4_REAL_F_AVAILABLE) != 0;
        rs.counters = sum(bpf_map__fd(skel->maps.real_stats), it->second);
      }
      ss.reals.push_back(std::move(rs));
    }
    st.services.push_back(std::move(ss));
  }
  const int stats_fd = bpf_map__fd(skel->maps.stats);
  std::vector<__u64> per_cpu(cpus_);
  for (__u32 i = 0; i < L4_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(stats_fd, &i, per_cpu.data()) != 0) continue;
    for (__u64 v : per_cpu) st.global[i] += v;
  }
  return st;
}

}  // namespace switchyard::l4
