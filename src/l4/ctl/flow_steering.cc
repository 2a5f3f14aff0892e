#include "l4/ctl/flow_steering.h"

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace switchyard::l4 {
namespace {

// Address words and port (network order) of a socket address; false for other families.
bool split(const sockaddr_storage& a, __u32 (&addr)[4], __u16& port, __u8& family) {
  std::memset(addr, 0, sizeof addr);
  if (a.ss_family == AF_INET) {
    const auto& s4 = reinterpret_cast<const sockaddr_in&>(a);
    std::memcpy(addr, &s4.sin_addr, 4);
    port = s4.sin_port;
    family = L4_FAMILY_V4;
    return true;
  }
  if (a.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(a);
    std::memcpy(addr, &s6.sin6_addr, 16);
    port = s6.sin6_port;
    family = L4_FAMILY_V6;
    return true;
  }
  return false;
}

bool flow_key(const sockaddr_storage& client, const sockaddr_storage& vip, l4_flow_key& key) {
  key = {};
  __u8 cf = 0, vf = 0;
  if (!split(client, key.src, key.sport, cf) || !split(vip, key.dst, key.dport, vf) || cf != vf) {
    return false;
  }
  key.proto = IPPROTO_TCP;
  key.family = cf;
  return true;
}

}  // namespace

FlowSteering::FlowSteering(core::UniqueFd conns, std::vector<Target> targets,
                           std::uint64_t jiffies_at, std::uint64_t ns_at, std::uint32_t hz)
    : conns_(std::move(conns)),
      targets_(std::move(targets)),
      jiffies_at_(jiffies_at),
      ns_at_(ns_at),
      hz_(hz) {}

std::uint64_t FlowSteering::jiffies_now() const {
  // bpf_ktime_get_ns() is CLOCK_MONOTONIC: extrapolate from the reading the Director took. Off by
  // a jiffy or two, against flow timeouts of minutes.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::uint64_t ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
                           static_cast<std::uint64_t>(ts.tv_nsec);
  // One second early: an entry dated ahead of the data path's clock would look expired to it
  // (its age is computed unsigned).
  return jiffies_at_ + (ns - ns_at_) * hz_ / 1'000'000'000u - hz_;
}

bool FlowSteering::steer(const sockaddr_storage& client, const sockaddr_storage& vip,
                         const sockaddr_storage& server, std::string& error) const {
  l4_flow_key key;
  if (!flow_key(client, vip, key)) {
    error = "client and VIP addresses of different families";
    return false;
  }
  __u32 server_addr[4];
  __u16 server_port = 0;
  __u8 server_family = 0;
  if (!split(server, server_addr, server_port, server_family)) {
    error = "server address of an unknown family";
    return false;
  }
  for (const Target& t : targets_) {
    if (t.service.family != key.family || t.service.port != key.dport ||
        std::memcmp(t.service.addr, key.dst, sizeof key.dst) != 0 || t.family != server_family ||
        std::memcmp(t.addr, server_addr, sizeof t.addr) != 0) {
      continue;
    }
    l4_conn conn{};
    conn.atime = jiffies_now();
    conn.real_id = t.real_id;
    conn.real_gen = t.gen;
    conn.state = L4_CONN_ACTIVE;
    if (bpf_map_update_elem(conns_.get(), &key, &conn, BPF_ANY) != 0) {
      error = fmt::format("cannot write the flow table: {}", std::strerror(errno));
      return false;
    }
    return true;
  }
  error = "no l4 handoff service has this VIP and server";
  return false;
}

void FlowSteering::unsteer(const sockaddr_storage& client, const sockaddr_storage& vip) const {
  l4_flow_key key;
  if (flow_key(client, vip, key)) bpf_map_delete_elem(conns_.get(), &key);
}

}  // namespace switchyard::l4
