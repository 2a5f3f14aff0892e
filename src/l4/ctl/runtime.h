// The L4 fast path inside `switchyard run`: a Director driven from the control-plane io_context.
//
// It gives every L4 service a PoolState (src/upstream/pool_state.h) so the existing active health
// checker checks the real servers like any pool's servers, then follows their ServerHealth states
// (polling, 200 ms) and installs the resulting availability into the data path. For lc/wlc it
// also feeds flow counts from the flow table every 2 s.
//
// Threads: everything runs on the control-plane thread, the one that runs the io_context given
// to the constructor (timers included). Not thread-safe otherwise.
//
// Lifetime: the io_context must outlive the Runtime. Destroying it cancels its timer and detaches
// the XDP program; the pinned flow state stays for the next start.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "l4/ctl/director.h"
#include "upstream/health_checker.h"
#include "upstream/pool_state.h"

namespace switchyard::l4 {

class Runtime {
 public:
  explicit Runtime(boost::asio::io_context& io);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Makes the data path serve `config->l4`: starts the director on the first config that has l4
  // services, syncs it on later ones (established flows are kept), stops it (detaches) when the
  // services are gone. Returns an error message, empty on success; on a failed first start
  // nothing runs, on a failed sync the previous state partly remains (both are logged by the
  // caller).
  std::string apply(std::shared_ptr<const config::Config> config);

  // Health-check targets for the L4 real servers (services with `health`), to be passed to the
  // HealthChecker together with the pools'. Valid until the next apply().
  std::vector<upstream::HealthChecker::Target> health_targets() const;

  bool running() const { return director_ != nullptr; }
  // TCP handoff: `sink` receives the flow steering of what is installed after every start,
  // sync (reloads and the periodic health/count syncs: each builds a new one) and stop (null).
  using SteeringSink = std::function<void(std::shared_ptr<const FlowSteering>)>;
  void set_steering_sink(SteeringSink sink) { sink_ = std::move(sink); }

 private:
  void schedule_tick();
  void tick();
  Availability availability() const;
  void sync(bool with_counts);

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<const config::Config> config_;
  // One synthetic pool per service ("l4:<name>") owning the checker's view of its servers.
  std::shared_ptr<config::Config> pools_;
  std::vector<std::shared_ptr<upstream::PoolState>> states_;  // per l4 service
  std::unique_ptr<Director> director_;
  Availability last_;
  unsigned ticks_ = 0;
  bool counts_needed_ = false;
  SteeringSink sink_;
  void publish_steering() {
    if (sink_) sink_(director_ ? director_->steering() : nullptr);
  }
};

}  // namespace switchyard::l4
