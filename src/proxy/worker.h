// One proxy worker: a thread with its own io_uring, its own SO_REUSEPORT listening sockets, its
// own upstream connection pools and counters. Workers share nothing mutable with each other; the
// control plane talks to a worker only through request_shutdown() (an atomic and an eventfd).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/counter.h"
#include "l4/ctl/flow_steering.h"
#include "proxy/access_log.h"
#include "proxy/deadline.h"
#include "proxy/ring.h"
#include "proxy/snapshot.h"
#include "proxy/stats.h"
#include "proxy/tls/server_context.h"
#include "splice/pipe_pool.h"
#include "splice/sockmap.h"
#include "upstream/pool.h"

namespace switchyard::proxy {

class IdleConnection;
class Session;
class UpstreamConn;
class AgentLink;

// TCP handoff: the L4 director's flow steering (l4/ctl/flow_steering.h), replaced by the control
// plane after every L4 sync; workers load it once per handoff. Null without handoff services.
struct SteeringSlot {
  std::atomic<std::shared_ptr<const l4::FlowSteering>> current;
};

// A buffer for a request or response head (Worker::take_head_buffer). Mapped on its own rather
// than taken from malloc: after a burst of requests the buffers beyond the worker's free list go
// back to the kernel at once, instead of leaving 32 KiB holes in the heap that small long-lived
// objects (idle connections) are then carved from, which keeps those pages resident (issue 5:
// with 200 requests in flight while 5 000 idle connections were opened, that was more than half
// of the memory they cost). From operator new[] instead under ASan (which checks heap bounds,
// not mappings) or if mmap fails.
struct HeadBufferRelease {
  std::size_t mapped = 0;  // length of the mapping; 0: from operator new[]
  void operator()(char* p) const;
};
using HeadBuffer = std::unique_ptr<char[], HeadBufferRelease>;

// Per-worker runtime of a configured pool: its balancer, idle keep-alive connections and the
// requests queued for a server below max_connections. Kept across reloads while the pool's
// servers and scheduler are unchanged (weights, drain and limits are taken over in place), so idle
// connections, in-flight counts and passive health survive; otherwise retired (connections
// returning to it are closed).
struct PoolRuntime {
  std::shared_ptr<const config::Config> owner;  // keeps *cfg alive
  const config::Pool* cfg = nullptr;
  upstream::Balancer balancer;
  config::HashKey::On default_key;               // the scheduler's default hash key
  std::vector<std::vector<UpstreamConn*>> idle;  // per server, most recently used last
  bool retired = false;
  std::shared_ptr<const tls::ClientContext> tls;  // servers speak TLS (null: plain)
  // Per-pool timeouts (the pool's own or the global ones); lists owned by the worker.
  DeadlineList* connect_timeouts = nullptr;
  DeadlineList* response_timeouts = nullptr;
  DeadlineList* queue_timeouts = nullptr;
  // Requests waiting for a server (intrusive FIFO through Session::queue_prev_/queue_next_).
  Session* queue_head = nullptr;
  Session* queue_tail = nullptr;
  std::uint32_t queued = 0;
  // This worker's statistics slots for the pool and its servers (set on every snapshot).
  PoolCounters* stats = nullptr;
  std::vector<ServerCounters*> server_stats;  // pool servers' order

  // Passive health for the balancer plus the server's failure counters.
  void report(int server, upstream::Outcome outcome, Clock::time_point now);
  ServerCounters* server_counters(int server) const {
    return server >= 0 && static_cast<std::size_t>(server) < server_stats.size()
               ? server_stats[static_cast<std::size_t>(server)]
               : nullptr;
  }

  PoolRuntime(std::shared_ptr<const config::Config> owner, const config::Pool& pool,
              std::shared_ptr<upstream::PoolState> state, unsigned worker);
};

// What requests of one snapshot see on this worker.
struct WorkerView {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::shared_ptr<PoolRuntime>> pools;  // config.pools order (= Decision::pool)

  const config::Config& config() const { return *snapshot->config; }
  // Route table of the named listener; -1 if the listener is not in this snapshot.
  int table_for(std::string_view listener) const;
};

// A listening socket of this worker. Never freed while the worker runs (few exist; reloads that
// drop one keep the object so sessions and the cancelled accept can still refer to it).
struct ListenerRuntime {
  std::string name;
  std::string bind;
  int fd = -1;
  class AcceptOp* accept = nullptr;
  bool accept_paused = false;         // out of file descriptors: accept re-armed by the next tick
  ListenerCounters* stats = nullptr;  // this worker's slot (set on every snapshot)
  std::shared_ptr<const tls::ServerContext> tls;  // null: plain HTTP
  bool tcp = false;  // `mode: tcp`: connections are tunnelled to `pool` (no HTTP)
  std::string pool;  // tcp: the pool's name
  std::vector<config::Listener::SniRoute> sni;  // tcp: pools by TLS server name (config.h)
  bool websocket = true;  // http: Upgrade requests are forwarded and tunnelled after a 101
};

// Written only by the owning worker (core::Counter: relaxed single-writer), read by the control
// plane for /metrics and the admin API.
struct WorkerCounters {
  core::Counter accepted;
  core::Counter rejected_over_limit;
  core::Counter requests;
  core::Counter upstream_connects;
  core::Counter upstream_reuses;
  core::Counter retries;
  core::Counter tls_handshakes;
  core::Counter tls_resumptions;
  core::Counter tls_handshake_failures;
  core::Counter queued;
  core::Counter queue_timeouts;
  core::Counter copy_bytes;         // body and head bytes moved through userspace buffers
  core::Counter splice_bytes;       // body bytes moved socket -> pipe -> socket by splice(2)
  core::Counter sockmap_bytes;      // tunnel bytes the kernel redirected (BPF sockmap)
  core::Counter tunnels;            // tunnels started (tcp listeners, WebSocket)
  core::Counter tunnels_sockmap;    // of which forwarded by the sockmap engine
  core::Counter tunnels_splice;     // of which spliced through pipes (the rest copy)
  core::Gauge tunnels_open;         // tunnels open now
  core::Counter handoffs;           // connections handed to a real server's agent (TCP handoff)
  core::Counter handoff_fallbacks;  // handoffs that failed: the request was proxied instead
  // Published every tick (see Worker::tick).
  core::Gauge connections;   // client connections open
  core::Gauge upstreams;     // upstream connections open (idle and busy)
  core::Gauge free_buffers;  // provided receive buffers not in use
};

class Worker {
 public:
  // `listen_fds[i]` is this worker's socket for config.listeners[i] (ownership moves here).
  Worker(int id, std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Worker thread: sets up the ring; returns an error message (empty on success).
  std::string init();
  // Worker thread: serves until shutdown completes.
  void run();
  // Any thread: begin graceful shutdown (stop accepting, finish in-flight requests).
  void request_shutdown();
  // Any thread: switch to `snapshot`. `listen_fds[i]` is a new socket for listener i of the new
  // config, or -1 to keep this worker's socket of the listener with the same name and address.
  // Listeners absent from the new config are closed. The worker applies it between completions.
  void publish(std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds);

  AccessLogQueue& access_log() { return access_log_; }
  int id() const { return id_; }

  // --- used by sessions and connections (worker thread only) ---
  Ring& ring() { return ring_; }
  BufferRing& buffers() { return buffers_; }
  const config::Config& config() const { return view_->config(); }
  const std::shared_ptr<const WorkerView>& view() const { return view_; }
  rules::MatchScratch& scratch() { return scratch_; }
  Clock::time_point now() const { return now_; }
  bool draining() const { return draining_; }
  WorkerCounters& counters() { return counters_; }
  bool access_log_enabled() const { return view_->config().access_log.enabled; }
  // Empty pipes for splicing bodies, reused from body to body (splice/pipe_pool.h).
  splice::PipePool& pipes() { return pipes_; }

  DeadlineList client_header_timeouts;
  DeadlineList client_idle_timeouts;
  DeadlineList client_body_timeouts;
  DeadlineList upstream_idle_timeouts;
  DeadlineList tunnel_idle_timeouts;
  // The sockmap engine for tunnels, or null (BPF unavailable, or splice.sockmap: false).
  const splice::SockmapEngine* sockmap() const {
    return view_->config().splice.sockmap ? sockmap_.get() : nullptr;
  }
  // Before run(): the engine loaded at start-up (shared by all workers; read-only).
  void set_sockmap(std::shared_ptr<const splice::SockmapEngine> e) { sockmap_ = std::move(e); }
  // TCP handoff: this worker's control channel to the agent at `agent` (opened on first use,
  // reopened with a new key after a reload changed it), the current flow steering, and a
  // process-unique id for the next offer.
  AgentLink& agent_link(const config::SocketAddress& agent, const std::string& key);
  std::shared_ptr<const l4::FlowSteering> steering() const {
    return steering_ ? steering_->current.load() : nullptr;
  }
  void set_steering(std::shared_ptr<SteeringSlot> slot) { steering_ = std::move(slot); }
  std::uint64_t next_handoff_id() {
    return (static_cast<std::uint64_t>(id_) << 48) | ++handoff_seq_;
  }
  // A list for `duration` (per-pool timeouts), created on first use and kept for the worker's
  // life; every such list is expired on each tick.
  DeadlineList& timeouts_for(std::chrono::milliseconds duration);

  // A server of `pool` may have room again: let its first queued request try (after the current
  // completion is handled, not from inside it).
  void wake_queue(PoolRuntime& pool);
  // A TLS session has decrypted input buffered: deliver it after the current completion.
  void defer_tls_read(Session* s) { tls_ready_.push_back(s); }
  void defer_upstream_tls(UpstreamConn* c) { upstream_tls_ready_.push_back(c); }

  // A receive could not get a buffer (ENOBUFS); retry it when buffers come back.
  void wait_for_buffer(class RecvOp* op) { starved_.push_back(op); }

  // Session bookkeeping.
  void session_closed(Session* s);

  // ---- Idle client connections (proxy/idle_connection.h; defined in idle_connection.cc).
  // Client connections open: sessions plus idle connections (limits.max_connections, gauges).
  std::size_t connections() const { return sessions_.size() + idle_open_; }
  // A Session (not registered in sessions_). `parked`: the idle connection it takes over (socket
  // already set up); then a parked Session of the same listener is reused if there is one.
  Session* new_session(ListenerRuntime& l, int fd, const IdleConnection* parked = nullptr);
  // Holds `fd` (owned from now on) as an idle connection waiting for bytes until `timeouts`
  // expires. `peer` null: a connection just accepted (see IdleConnection).
  void hold_idle(ListenerRuntime& l, int fd, const sockaddr* peer, bool splice_ready,
                 DeadlineList& timeouts);
  // Bytes arrived on `c`: a registered Session now owns its socket, and `c` is freed.
  Session* resume(IdleConnection& c);
  // A Session parked its connection (hold_idle) and is done: unregistered, and kept for reuse
  // (or freed) after the current completions; the connection still counts.
  void session_parked(Session* s);
  // From IdleConnection: closed (off the list, no longer counted), then freed.
  void idle_closed(IdleConnection* c);
  void idle_freed(IdleConnection* c);
  // Buffers for request/response heads, recycled between sessions.
  HeadBuffer take_head_buffer();
  void give_head_buffer(HeadBuffer b, std::size_t size);
  std::size_t head_buffer_size() const { return head_buffer_size_; }

  void on_accept(ListenerRuntime& l, int res, std::uint32_t flags);
  // An idle upstream connection that cannot be kept: retired pool or pool full.
  bool can_pool(const UpstreamConn& c) const;

 private:
  friend class ControlOp;
  friend class AcceptOp;
  void arm_accept(ListenerRuntime& l);
  void arm_control_read();
  void on_control();
  void begin_drain();
  void tick();
  void apply(std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds);
  void close_listener(ListenerRuntime& l);
  void run_woken();

  int id_;
  std::shared_ptr<const WorkerView> view_;
  rules::MatchScratch scratch_;
  Ring ring_;  // declared before everything that submits to it or is registered with it
  BufferRing buffers_;
  std::vector<std::unique_ptr<ListenerRuntime>> listeners_;  // current, in config order
  std::vector<std::unique_ptr<ListenerRuntime>> retired_listeners_;
  std::vector<Session*> sessions_;  // all live sessions (index kept in the session)
  std::vector<class RecvOp*> starved_;
  std::vector<Session*> dead_;       // closed this iteration, deleted after completions are handled
  std::vector<Session*> woken_;      // dequeued this iteration; retry their pick after completions
  std::vector<Session*> tls_ready_;  // TLS sessions with buffered input to deliver
  std::vector<UpstreamConn*> upstream_tls_ready_;
  std::vector<std::unique_ptr<DeadlineList>> extra_timeouts_;
  std::vector<HeadBuffer> free_head_buffers_;
  // Idle connections: the open ones (intrusive list), their number, and the objects alive
  // (closing ones included, whose cancelled receive has not completed yet).
  IdleConnection* idle_head_ = nullptr;
  std::size_t idle_open_ = 0;
  std::size_t idle_live_ = 0;
  std::vector<Session*> parked_sessions_;  // parked this iteration
  // Parked Sessions kept for reuse (Session::reuse); dropped on every reload, so that none
  // carries settings of an older snapshot (its parsers' limits) to a new connection.
  std::vector<Session*> free_sessions_;
  bool snapshot_changed_ = false;  // this iteration: its parked Sessions are not kept either
  std::vector<void*> free_idle_;   // storage of freed IdleConnections
  void keep_parked_sessions();
  void drop_free_sessions();
  void unlink_idle(IdleConnection* c);
  // Closes the idle connections of listener `only` (all of them if null).
  void close_idle(const ListenerRuntime* only);
  void free_storage();
  std::size_t head_buffer_size_ = 0;
  Clock::time_point last_head_buffer_take_{};  // see kMaxFreeHeadBuffersBusy
  AccessLogQueue access_log_;
  std::shared_ptr<const splice::SockmapEngine> sockmap_;
  std::shared_ptr<SteeringSlot> steering_;
  std::vector<std::unique_ptr<AgentLink>> agent_links_;  // never freed while the worker runs
  std::uint64_t handoff_seq_ = 0;
  WorkerCounters counters_;
  // A pipe per body being spliced; up to 64 empty ones are kept (2 descriptors each).
  splice::PipePool pipes_{1024 * 1024, 64};
  Clock::time_point now_;
  Clock::time_point drain_deadline_;
  Clock::time_point next_tick_;
  int control_fd_ = -1;  // eventfd
  // Kept open so that, out of file descriptors, one can be freed to accept a waiting connection
  // and refuse it (503) instead of leaving it hanging in the listen queue.
  int reserve_fd_ = -1;
  Clock::time_point fd_limit_logged_{};  // last "out of file descriptors" warning
  Clock::time_point accept_resume_{};    // paused accepts are re-armed from then on
  void refuse_over_fd_limit(ListenerRuntime& l, int err);
  std::uint64_t control_value_ = 0;
  std::unique_ptr<class ControlOp> control_op_;
  std::atomic<bool> shutdown_requested_{false};
  // Reload hand-off from the control plane: taken only on reload, never per request.
  std::mutex publish_mutex_;
  std::shared_ptr<const Snapshot> published_;
  std::vector<int> published_fds_;
  bool draining_ = false;

 public:
  int live_upstreams_ = 0;  // UpstreamConn objects alive (closing ones included)

 private:
  friend class Session;
};

}  // namespace switchyard::proxy
