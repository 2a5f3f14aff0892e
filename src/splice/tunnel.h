// A tunnel: two connected sockets (a client and an upstream) whose bytes are forwarded both ways
// until both directions have ended, without looking at them. Used once a connection's route is
// fixed for the rest of its life: `mode: tcp` listeners and HTTP Upgrade (WebSocket).
//
// Three engines:
//  - splice (the default): each direction moves socket -> pipe -> socket with non-blocking
//    splice(2) through a pipe of the worker's PipePool (a BodyPump over an unbounded stream), run
//    when io_uring reports the socket it waits for ready (single-shot POLL_ADD), as for bodies
//    (body_pump.h says why not IORING_OP_SPLICE). The bytes never reach userspace.
//  - sockmap: both sockets go into the BPF sockhash of a SockmapEngine; the kernel redirects
//    each side's bytes to the other and the proxy never copies them. The worker keeps a receive
//    armed on each socket only to see EOF and errors (and the rare bytes the program hands to
//    userspace, see tunnel.bpf.c), which it copies.
//  - copy: io_uring receives into the worker's provided buffers and sends, one buffer in flight
//    per direction (the receive is re-armed once the send completed: back-pressure).
// Which one: sockmap when the worker has a SockmapEngine (splice.sockmap: true, BPF loaded) and
// the kernel takes both sockets; else splice unless `splice.tunnels: copy` (or no pipe could be
// had: out of descriptors); else copy.
//
// Half-close: the redirect does not carry FIN. When one side ends its sending (EOF), the tunnel
// waits until every byte that side sent has been queued on the peer (sockmap: the program's byte
// counter against the peer's acked + unsent bytes; copy: the last send completed; splice: the
// pump drained its pipe after the source's EOF), then shuts the
// peer down for writing. The other direction goes on. Both directions ended -> both closed. An
// error or reset on either side closes both (a reset is passed on as a reset, SO_LINGER 0).
// Idle: no byte moved in either direction for the worker's tunnel idle timeout -> both closed.
//
// Ownership: the Tunnel owns both file descriptors from the constructor on and closes them when
// it is finished. Worker thread only. `done(owner)` is called exactly once, from a completion or
// timer (never from start() or abort()), after both descriptors are closed; the owner may delete
// the Tunnel from inside `done` (nothing touches it afterwards).
#pragma once

#include <cstdint>
#include <string>

#include "proxy/deadline.h"
#include "proxy/io_ops.h"
#include "splice/body_pump.h"
#include "splice/pipe_pool.h"
#include "splice/sockmap.h"

namespace switchyard::proxy {
class Worker;
}

namespace switchyard::splice {

class Tunnel {
 public:
  enum class Engine { kCopy, kSockmap, kSplice };
  using Done = void (*)(void* owner);

  // `to_upstream` / `to_client`: bytes the proxy already read from one side that must reach the
  // other before anything else (e.g. what followed a 101 response head). `sockmap` null: copy.
  Tunnel(proxy::Worker& w, int client_fd, int upstream_fd, std::string to_upstream,
         std::string to_client, const SockmapEngine* sockmap, void* owner, Done done);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  void start();
  // Closes both sides now (shutdown deadline, owner going away). `done` follows once the
  // operations in flight have completed.
  void abort();

  Engine engine() const { return engine_; }
  bool finished() const { return finished_; }
  // Bytes forwarded so far, whatever the engine (client -> upstream, upstream -> client).
  std::uint64_t bytes_to_upstream() const { return dirs_[0].total(); }
  std::uint64_t bytes_to_client() const { return dirs_[1].total(); }
  // Of which moved by the kernel (sockmap), spliced through pipes, and copied through userspace.
  std::uint64_t kernel_bytes() const { return dirs_[0].kernel + dirs_[1].kernel; }
  std::uint64_t spliced_bytes() const { return dirs_[0].spliced + dirs_[1].spliced; }
  std::uint64_t copied_bytes() const { return dirs_[0].user + dirs_[1].user; }
  // How the tunnel ended: true when both directions finished with FIN.
  bool clean() const { return clean_; }

 private:
  // One direction: bytes received on `src` are sent on `dst`.
  struct Dir {
    Dir(Tunnel* t, int index);
    Tunnel* t;
    int index;  // 0: client -> upstream, 1: upstream -> client
    int src = -1;
    int dst = -1;
    std::string pending;  // sent before anything else
    proxy::RecvOp recv;
    proxy::SendOp send;
    proxy::SimpleOp poll;  // sockmap: EOF/error on src; splice: readiness the pump waits
                           // for; after EOF (every engine): errors on src
    int bid = -1;          // ring buffer being sent
    bool sending_pending = false;
    bool sending_passed = false;     // sockmap: bytes the program passed to userspace
    bool watching = false;           // sockmap: `poll` waits for EOF/error on src
    bool eof = false;                // src ended (FIN)
    bool shut = false;               // dst shut down for writing
    std::uint64_t user = 0;          // bytes sent on dst by the proxy (pending and copied)
    std::uint64_t user_at_base = 0;  // `user` when dst_base was taken
    std::uint64_t kernel = 0;        // bytes the BPF program redirected from src to dst
    std::uint64_t dst_base = 0;      // dst's acked + queued bytes when the sockmap took over
    std::uint64_t spliced = 0;       // splice: bytes the pump wrote to dst
    BodyPump pump;                   // splice: src -> pipe -> dst
    Pipe pipe;                       // splice: from the worker's pool until the direction ends
    std::uint64_t total() const { return user + kernel + spliced; }
  };

  static void on_recv_cb(void* self, int res, std::uint32_t flags);
  static void on_send_cb(void* self, int res, std::uint32_t flags);
  static void on_poll_cb(void* self, int res, std::uint32_t flags);
  static void on_timer(void* self, int tag);
  void on_recv(Dir& d, int res, std::uint32_t flags);
  void on_send(Dir& d, int res);
  void on_poll(Dir& d, int res);
  void begin();
  bool start_splice();
  void run_pump(Dir& d);
  void release_pipe(Dir& d);
  void arm_recv(Dir& d);
  void drain_passed(Dir& d);
  void on_eof(Dir& d);
  void try_shutdown(Dir& d);
  void refresh_counters();
  void on_check();
  void publish_kernel_bytes();
  std::uint64_t progress();
  // An error on socket `failed` (0: client, 1: upstream).
  void fail(int err, int failed);
  void finish();
  void maybe_done();
  SockmapEngine::Side side(int i) const { return {cookies_[i], fds_[i]}; }

  proxy::Worker& w_;
  int fds_[2];  // 0: client, 1: upstream
  std::uint64_t cookies_[2] = {0, 0};
  Dir dirs_[2];
  const SockmapEngine* sockmap_;
  Engine engine_ = Engine::kCopy;
  bool in_map_ = false;
  static constexpr int kPredrainRounds = 8;
  int predrain_rounds_ = 0;
  void* owner_;
  Done done_;
  int inflight_ = 0;
  bool closing_ = false;
  bool finished_ = false;
  bool clean_ = false;
  std::uint64_t last_progress_ = 0;
  std::uint64_t counted_kernel_ = 0;  // already added to the worker's sockmap counter
  proxy::Deadline idle_timer_;
  proxy::Deadline drain_timer_;  // re-checks a pending half-close (sockmap)
  proxy::Deadline check_timer_;  // sockmap: counters to metrics, bytes passed to userspace
};

}  // namespace switchyard::splice
