// Steering single TCP connections through the L4 data path, for TCP handoff (src/handoff/).
//
// The L7 proxy accepts a connection on a handoff service's VIP (the data path passes new flows of
// such services to the local stack), reads a request, picks a server and hands the connection to
// that server's agent. From then on the client's packets must reach that server before this
// host's TCP stack sees them: steer() writes the flow's conns entry naming the service's binding
// for that server, exactly what the data path would have written had it scheduled the flow there,
// so it is forwarded DR or TUN like any L4 flow (and expires, and counts, like one).
//
// Immutable once built (a Director builds a new one on every sync); steer() and unsteer() are one
// map syscall each and safe from any thread, so workers call them directly.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "l4/abi/l4_abi.h"

namespace switchyard::l4 {

class FlowSteering {
 public:
  struct Target {
    l4_vs_key service;  // the handoff service's VIP:port:tcp
    __u32 addr[4];      // a server of it (network order, IPv4 in word 0)
    __u8 family;
    __u32 real_id;
    __u32 gen;
  };
  // `conns`: the data path's flow table. `jiffies_at`/`ns_at`: one reading of the data path's
  // clock (bpf_jiffies64, CLOCK_MONOTONIC ns) and its rate, to date the entries.
  FlowSteering(core::UniqueFd conns, std::vector<Target> targets, std::uint64_t jiffies_at,
               std::uint64_t ns_at, std::uint32_t hz);

  // Sends the flow client -> vip (a connection accepted on vip) to `server` (its port ignored).
  // False with `error` when vip:port is no handoff service, or `server` is not one of its.
  bool steer(const sockaddr_storage& client, const sockaddr_storage& vip,
             const sockaddr_storage& server, std::string& error) const;
  // Forgets the flow (a handoff abandoned after steer()).
  void unsteer(const sockaddr_storage& client, const sockaddr_storage& vip) const;

  bool empty() const { return targets_.empty(); }

 private:
  std::uint64_t jiffies_now() const;

  core::UniqueFd conns_;
  std::vector<Target> targets_;
  std::uint64_t jiffies_at_, ns_at_;
  std::uint32_t hz_;
};

}  // namespace switchyard::l4
