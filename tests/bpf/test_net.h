// A private network for BPF_PROG_TEST_RUN of the director program, shared by tests/bpf/ and
// bench/l4_bench.cc.
//
// The program's forwarding step asks the kernel's FIB and neighbour table (bpf_fib_lookup), so
// the expected output bytes depend on routes and MACs. enter_test_net() therefore moves the
// calling process into a NEW network and mount namespace (unshare) and builds a fixed topology
// there: nothing on the host is touched, and everything disappears when the process exits.
//
//   t0 (02:00:00:00:00:01) 10.0.0.1/24 fd00::1/64   <- packets "arrive" here (ingress ifindex)
//     neighbours 10.0.0.11-.13 / fd00::11-12 (real servers), 10.0.0.254 / fd00::fe (router)
//     clients 198.51.100.0/24 and 2001:db8:c::/64 via the router
//   t2 (02:00:00:00:01:01) 10.0.1.1/24                <- a second inside interface
//     neighbour 10.0.1.21
// Real server i on t0 has MAC 02:00:00:00:00:<i>; the router 02:00:00:00:00:fe.
#pragma once

#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace switchyard::l4::test {

// Returns an empty string when the namespace is ready, else why not (the caller skips).
inline std::string enter_test_net() {
  static std::string result = []() -> std::string {
    if (::geteuid() != 0) return "needs root (network namespaces, BPF)";
    if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return "unshare(CLONE_NEWNET) failed";
    // Our mounts must not propagate back to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return "mount private";
    ::mkdir("/sys/fs/bpf", 0700);
    if (::mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0) return "cannot mount bpffs";
    // Pin to one CPU: per-CPU state (rr cursors, counters) then behaves as on one core.
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ::sched_setaffinity(0, sizeof one, &one);
    const char* script = R"(set -e
exec >/dev/null 2>&1
ip link set lo up
ip link add t0 address 02:00:00:00:00:01 type veth peer name t1 address 02:00:00:00:00:02
ip link add t2 address 02:00:00:00:01:01 type veth peer name t3 address 02:00:00:00:01:02
for d in t0 t1 t2 t3; do ip link set $d up; done
ip addr add 10.0.0.1/24 dev t0
ip addr add 10.0.1.1/24 dev t2
ip -6 addr add fd00::1/64 dev t0 nodad
for i in 11 12 13; do ip neigh replace 10.0.0.$i lladdr 02:00:00:00:00:$i dev t0 nud permanent; done
ip neigh replace 10.0.0.254 lladdr 02:00:00:00:00:fe dev t0 nud permanent
ip neigh replace 10.0.1.21 lladdr 02:00:00:00:01:21 dev t2 nud permanent
ip -6 neigh replace fd00::11 lladdr 02:00:00:00:00:11 dev t0 nud permanent
ip -6 neigh replace fd00::12 lladdr 02:00:00:00:00:12 dev t0 nud permanent
ip -6 neigh replace fd00::fe lladdr 02:00:00:00:00:fe dev t0 nud permanent
ip route add 198.51.100.0/24 via 10.0.0.254
ip -6 route add 2001:db8:c::/64 via fd00::fe
sysctl -w net.ipv4.ip_forward=1
sysctl -w net.ipv6.conf.all.forwarding=1
)";
    if (std::system(script) != 0) return "cannot build the test network (iproute2 missing?)";
    return "";
  }();
  return result;
}

inline int test_ifindex(const char* name) {
  return static_cast<int>(::if_nametoindex(name));
}

}  // namespace switchyard::l4::test
