// The L4 director: owns the XDP data path (src/l4/bpf/l4_lb.bpf.c) on this host and keeps its
// maps in step with the `l4:` configuration and the health of the real servers.
//
// Ownership and lifetime: a Director owns the loaded BPF object and one BPF link per interface.
// Destroying it detaches the program from every interface (so does process death: links are
// released with their file descriptors). The flow state (services, reals, flow and NAT tables,
// counters) is pinned in bpffs under l4.pin_path and outlives the Director, so the next start
// restores it and established flows keep their real server across a control-plane restart.
//
// Threads: not thread-safe; all calls from one thread (the control-plane thread). The data path
// runs concurrently in the kernel; sync() orders its map writes so that a packet never sees a
// row naming a real that is not written yet (reals first, then rows, then the service flip, then
// removals).
//
// Errors: start() returns null and a message; sync() returns false and a message, having applied
// what it could (each map update is atomic; a failure leaves a consistent mix of old and new).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "l4/abi/l4_abi.h"
#include "l4/ctl/bpf_handle.h"
#include "l4/ctl/flow_steering.h"

struct l4_lb;  // the bpftool skeleton (generated into the build directory)

namespace switchyard::l4 {

// available[s][i]: whether server i of service s may take new flows (its health is not DOWN).
// Same shape as l4.services[s].servers. Weight 0 also keeps a server out of new flows.
using Availability = std::vector<std::vector<bool>>;

struct Counters {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t new_flows = 0;
  std::uint64_t drops = 0;
};

struct RealStatus {
  std::string address;
  config::L4Mode mode = config::L4Mode::kNat;
  bool available = false;
  std::uint32_t id = 0;
  Counters counters;
};

struct ServiceStatus {
  std::string name;
  std::uint32_t id = 0;
  std::uint32_t slots = 0;  // entries of the active row (0 = no server takes new flows)
  Counters counters;
  std::vector<RealStatus> reals;
};

struct Status {
  std::vector<ServiceStatus> services;
  std::array<std::uint64_t, L4_STAT_MAX> global{};  // enum l4_stat
};

class Director {
 public:
  // Loads the program (reusing maps pinned under l4.pin_path; mounting bpffs at /sys/fs/bpf when
  // it is absent), installs `l4` with `available`, then attaches to l4.interfaces. On failure
  // nothing stays attached and `error` says why.
  static std::unique_ptr<Director> start(const config::L4& l4, const Availability& available,
                                         std::string& error);
  ~Director();
  Director(const Director&) = delete;
  Director& operator=(const Director&) = delete;

  // Installs a new configuration or new availability. Flows stay with their real server unless
  // it left the configuration, or is unavailable and its service says on_down: reschedule.
  // `active` (optional, for lc/wlc): flows per server, same shape as `available`.
  // Interfaces are attached/detached to match l4.interfaces; pin_path, xdp_mode and the flow
  // table size only change at restart (logged).
  bool sync(const config::L4& l4, const Availability& available, std::string& error,
            const std::vector<std::vector<std::uint64_t>>* active = nullptr);

  // TCP handoff: steering into the flow table for the handoff services installed by the last
  // sync (a new object after each sync; null before the first).
  std::shared_ptr<const FlowSteering> steering() const { return steering_; }

  // Live flows per server of each service (for lc/wlc), from one pass over the flow table.
  // Same shape as l4.services[s].servers. Costs O(table size); call every second or so.
  std::vector<std::vector<std::uint64_t>> active_flows(const config::L4& l4) const;

  // Counters and state of what is installed now.
  Status status(const config::L4& l4) const;

  // The loaded XDP program and maps by name ("conns", "reals", ...), for tests and benchmarks
  // that drive the data path through BPF_PROG_TEST_RUN. Owned by the Director; -1 if unknown.
  int program_fd() const;
  int map_fd(const char* name) const;

  // The data path's clock: jiffies now, and jiffies per second (measured at start).
  std::uint64_t jiffies() const;
  std::uint32_t hz() const { return hz_; }

  // Interface name -> "native"/"generic", for what is attached now.
  const std::map<std::string, std::string>& attached() const { return attach_modes_; }

 private:
  Director();
  bool restore_ids(std::string& error);
  bool read_clock(std::uint64_t& jiffies, std::uint64_t& ns) const;
  bool calibrate_hz(std::string& error);
  bool attach(const config::L4& l4, std::string& error);
  bool attach_one(const std::string& ifname, config::L4::XdpMode mode, std::string& error);
  void zero_percpu(int map_fd, std::uint32_t key, std::size_t value_size);

  std::unique_ptr<l4_lb, void (*)(l4_lb*)> skel_;
  std::map<std::string, UniqueFd> links_;  // interface -> XDP link
  std::map<std::string, TcFilter> tc_;     // interface -> tc ingress filter (deferred packets)
  std::map<std::string, std::string> attach_modes_;
  std::string pin_path_;
  config::L4::XdpMode xdp_mode_ = config::L4::XdpMode::kAuto;
  std::uint32_t connections_ = 0;
  unsigned cpus_ = 1;
  std::uint32_t hz_ = 0;

  std::map<std::string, std::uint32_t> service_ids_;  // l4_vs_key bytes -> service id
  std::map<std::string, std::uint32_t> real_ids_;     // binding key bytes -> real id
  std::vector<l4_real> reals_;                        // mirror of the reals map
  std::vector<bool> service_used_;
  std::map<std::string, std::size_t> logged_;  // service name -> servers taking new flows
  std::shared_ptr<const FlowSteering> steering_;
};

}  // namespace switchyard::l4
