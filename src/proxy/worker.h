// One proxy worker: a thread with its own io_uring, its own SO_REUSEPORT listening sockets, its
// own upstream connection pools and counters. Workers share nothing mutable with each other; the
// control plane talks to a worker only through request_shutdown() (an atomic and an eventfd).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/access_log.h"
#include "proxy/deadline.h"
#include "proxy/ring.h"
#include "upstream/pool.h"

namespace switchyard::proxy {

class Session;
class UpstreamConn;

// Per-worker runtime of a configured pool: its balancer and idle keep-alive connections.
struct PoolRuntime {
  const config::Pool* cfg = nullptr;
  upstream::Balancer balancer;
  std::vector<std::vector<UpstreamConn*>> idle;  // per server, most recently used last

  explicit PoolRuntime(const config::Pool& pool)
      : cfg(&pool), balancer(pool), idle(pool.servers.size()) {}
};

// What a listener does with a request. (Route matching arrives with the rules engine; today the
// first route of the listener's table applies to every request.)
struct ListenerRuntime {
  const config::Listener* cfg = nullptr;
  int fd = -1;
  PoolRuntime* pool = nullptr;               // forward here, or
  const config::Respond* respond = nullptr;  // answer this
  class AcceptOp* accept = nullptr;
};

struct WorkerCounters {
  std::uint64_t accepted = 0;
  std::uint64_t rejected_over_limit = 0;
  std::uint64_t requests = 0;
  std::uint64_t upstream_connects = 0;
  std::uint64_t upstream_reuses = 0;
};

class Worker {
 public:
  // `listen_fds[i]` is this worker's socket for config.listeners[i] (ownership moves here).
  Worker(int id, std::shared_ptr<const config::Config> config, std::vector<int> listen_fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Worker thread: sets up the ring; returns an error message (empty on success).
  std::string init();
  // Worker thread: serves until shutdown completes.
  void run();
  // Any thread: begin graceful shutdown (stop accepting, finish in-flight requests).
  void request_shutdown();

  AccessLogQueue& access_log() { return access_log_; }
  int id() const { return id_; }

  // --- used by sessions and connections (worker thread only) ---
  Ring& ring() { return ring_; }
  BufferRing& buffers() { return buffers_; }
  const config::Config& config() const { return *config_; }
  Clock::time_point now() const { return now_; }
  bool draining() const { return draining_; }
  WorkerCounters& counters() { return counters_; }
  bool access_log_enabled() const { return config_->access_log.enabled; }

  DeadlineList client_header_timeouts;
  DeadlineList client_idle_timeouts;
  DeadlineList client_body_timeouts;
  DeadlineList upstream_connect_timeouts;
  DeadlineList upstream_response_timeouts;
  DeadlineList upstream_idle_timeouts;

  // A receive could not get a buffer (ENOBUFS); retry it when buffers come back.
  void wait_for_buffer(class RecvOp* op) { starved_.push_back(op); }

  // Session bookkeeping.
  void session_closed(Session* s);
  // Buffers for request/response heads, recycled between sessions.
  std::unique_ptr<char[]> take_head_buffer();
  void give_head_buffer(std::unique_ptr<char[]> b);
  std::size_t head_buffer_size() const { return head_buffer_size_; }

  void on_accept(ListenerRuntime& l, int res, std::uint32_t flags);

 private:
  friend class ControlOp;
  friend class AcceptOp;
  void arm_accept(ListenerRuntime& l);
  void arm_control_read();
  void on_control();
  void begin_drain();
  void tick();

  int id_;
  std::shared_ptr<const config::Config> config_;
  Ring ring_;  // declared before everything that submits to it or is registered with it
  BufferRing buffers_;
  std::vector<std::unique_ptr<PoolRuntime>> pools_;
  std::vector<ListenerRuntime> listeners_;
  std::vector<int> listen_fds_;
  std::vector<Session*> sessions_;  // all live sessions (index kept in the session)
  std::vector<class RecvOp*> starved_;
  std::vector<Session*> dead_;  // closed this iteration, deleted after completions are handled
  std::vector<class AcceptOp*> accept_ops_;
  std::vector<std::unique_ptr<char[]>> free_head_buffers_;
  std::size_t head_buffer_size_ = 0;
  AccessLogQueue access_log_;
  WorkerCounters counters_;
  Clock::time_point now_;
  Clock::time_point drain_deadline_;
  Clock::time_point next_tick_;
  int control_fd_ = -1;  // eventfd
  std::uint64_t control_value_ = 0;
  std::unique_ptr<class ControlOp> control_op_;
  std::atomic<bool> shutdown_requested_{false};
  bool draining_ = false;

 public:
  int live_upstreams_ = 0;  // UpstreamConn objects alive (closing ones included)

 private:
  friend class Session;
};

}  // namespace switchyard::proxy
