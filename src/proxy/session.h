// A client connection and the upstream connection serving its current request.
//
// Session drives one HTTP/1.1 exchange at a time (pipelined requests wait in its buffer and are
// answered in order) with both directions streaming at once: request body client -> upstream,
// response upstream -> client. Bodies move through BufferRing buffers without copies; only heads
// are copied, into the session's head buffers, where the parser's spans point.
//
// Worker thread only. A Session frees itself (via the worker) once closed and every operation it
// issued has completed; an UpstreamConn likewise.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>

#include "http/message_parser.h"
#include "proxy/deadline.h"
#include "proxy/io_ops.h"
#include "proxy/tls/tls_stream.h"
#include "proxy/worker.h"
#include "rules/request_key.h"
#include "splice/body_pump.h"
#include "splice/pipe_pool.h"
#include "splice/splice_socket.h"
#include "splice/tunnel.h"

namespace switchyard::proxy {

class IdleConnection;
class Session;

class UpstreamConn {
 public:
  UpstreamConn(Worker& w, PoolRuntime& pool, int server);

  // Starts a non-blocking connect; the result goes to the attached session.
  void connect();
  void attach(Session* s) { owner_ = s; }
  // Arms a receive unless one is pending; its completion goes to the owner (or closes an idle
  // connection the server gave up on).
  void ensure_recv();
  // Parks the connection in its pool's idle list, keeping a receive armed to notice a close.
  void release_to_pool();
  // Closes the connection once its operations complete.
  void close();

  // TLS to the server: encrypts `plain` now and sends it; the owner hears on_upstream_send with
  // the plaintext total once the ciphertext is out (unless detach_app_send() came first).
  bool tls() const { return tls_ != nullptr; }
  void send_app(const SendOp& plain);
  void detach_app_send() { app_waiting_ = false; }
  // From the worker: buffered decrypted bytes may be delivered now.
  void on_tls_ready();

  int fd() const { return fd_; }
  int server() const { return server_; }
  PoolRuntime& pool() { return *pool_; }
  bool reused() const { return reused_; }
  void set_reused() { reused_ = true; }
  // The last receive left bytes in the socket (IORING_CQE_F_SOCK_NONEMPTY): another receive
  // would complete at once.
  bool more_queued() const { return more_queued_; }
  const config::SocketAddress& address() const { return pool_->cfg->servers[server_].address; }

 private:
  static void on_connect(void* self, int res, std::uint32_t flags);
  static void on_recv(void* self, int res, std::uint32_t flags);
  static void on_idle_timeout(void* self, int tag);
  static void on_tls_send(void* self, int res, std::uint32_t flags);
  void maybe_free();
  void start_tls();
  void tls_pump();
  void tls_flush();
  void complete_app(int res);

  Worker& w_;
  PoolRuntime* pool_;
  int server_;
  int fd_ = -1;
  Session* owner_ = nullptr;
  bool idle_ = false;
  bool closing_ = false;
  bool reused_ = false;
  bool more_queued_ = false;
  bool splice_ready_ = false;  // prepared by splice::prepare_splice_socket
  int inflight_ = 0;
  Clock::time_point connect_start_{};  // for the connect latency histogram
  SimpleOp connect_op_;
  RecvOp recv_;
  Deadline idle_timer_;
  // TLS (pools with `tls:`), as on the client side.
  std::unique_ptr<tls::TlsStream> tls_;
  std::unique_ptr<char[]> plain_;
  std::string tls_out_;
  SendOp tls_send_;
  std::size_t app_total_ = 0;
  bool handshaking_ = false;
  bool app_pending_ = false;  // an application send waits for tls_send_
  bool sending_app_ = false;  // tls_send_ carries it
  bool app_waiting_ = false;  // the owner waits to hear about it
  bool tls_deferred_ = false;
  friend class Worker;
  friend class Session;
};

class Session {
 public:
  // `parked`: the idle connection this session takes over (Worker::resume), or null for a
  // connection just accepted (then start() follows).
  Session(Worker& w, ListenerRuntime& listener, int fd, const IdleConnection* parked = nullptr);
  ~Session();

  void start();
  // Graceful shutdown: close now if idle between requests, else after the current response.
  void drain();
  // Shutdown deadline passed: close regardless.
  void abort() { close(); }

  // From the worker: queued for a server of a full pool (see PoolRuntime::queue_head).
  void leave_queue();
  void on_dequeued();
  // From the worker: buffered TLS input may be delivered now (see read_client()).
  void on_tls_ready();
  // From the worker, instead of start(): the first bytes on a parked connection (ring buffer
  // `bid`, now ours to recycle).
  void resume(const char* data, std::size_t n, int bid);
  // From the worker: a Session that parked its own connection takes over another parked
  // connection of the same listener (then resume()). It is as next_request() left it for a
  // keep-alive connection's next request; reuse() resets what belongs to the connection. A
  // member added for a whole connection must be reset there too.
  void reuse(int fd, const IdleConnection& parked);

  // From UpstreamConn.
  void on_upstream_connected(int res);
  // Response bytes (res > 0; in ring buffer `bid`, or in the connection's TLS buffer when bid < 0),
  // EOF (0) or an error (< 0).
  void on_upstream_data(int res, const char* data, int bid);

  std::size_t index = 0;  // position in the worker's session list
  ListenerRuntime& listener() const { return listener_; }

 private:
  enum class ReqState { kHead, kConnect, kBody, kDone };
  enum class RespState { kNone, kHead, kInterim, kBody, kDone, kLocal };
  enum Timer { kClientTimer, kUpstreamTimer, kSendTimer };

  static void on_client_recv_cb(void* self, int res, std::uint32_t flags);
  static void on_client_send_cb(void* self, int res, std::uint32_t flags);
  static void on_upstream_send_cb(void* self, int res, std::uint32_t flags);
  static void on_tls_send_cb(void* self, int res, std::uint32_t flags);
  static void on_timer(void* self, int tag);

  void on_client_recv(int res, std::uint32_t flags);
  void on_client_send(int res);
  void on_upstream_send(int res);
  void on_client_timeout();
  void on_upstream_timeout();

  void read_client();
  void recv_client_socket();
  void on_client_data(const char* data, std::size_t n, int bid);
  void recycle(int bid);
  // Head buffers (in_, rin_) for the current request; given back when the connection idles.
  void ensure_buffers();
  void release_buffers();
  // TLS: drive the handshake, then decrypt what arrived; send what OpenSSL produced.
  void tls_pump();
  void tls_flush();
  void on_tls_send(int res);
  void advance_request_head();
  void on_request_head(std::size_t head_end);
  void handle_request_body(const char* data, std::size_t len, int bid);
  void use_pool(int pool_index);
  void start_upstream(bool allow_idle = true);
  upstream::Balancer::Pick pick_server();
  void no_server(bool full);
  void build_upstream_head();
  void send_request_head();
  void submit_upstream_send();
  bool up_sending() const { return up_send_.in_flight() || up_tls_send_; }
  // A send to the client is outstanding: client_send_ itself, or (TLS) its plaintext waiting to
  // be encrypted and sent, or the ciphertext carrying it in flight on tls_send_.
  bool client_sending() const {
    return client_send_.in_flight() || tls_app_pending_ || tls_sending_app_;
  }
  void upstream_failed(upstream::Outcome outcome);
  bool may_retry() const;
  void advance_response();
  void send_response_head();
  void handle_response_body(const char* data, std::size_t len, int bid);
  void read_ahead();
  bool gather_piece(const char* data, std::size_t len, int bid);
  void add_held_to_send();
  void finish_exchange();
  void next_request();
  // Between requests with nothing buffered or in flight on a plain listener: hands the socket to
  // an IdleConnection and goes to the worker's free list (proxy/idle_connection.h). False if it
  // must stay.
  bool park();
  void adopt_peer(const IdleConnection& parked);
  void respond_configured(const config::Respond& r);
  void respond_redirect(int status);
  void send_local();
  void submit_client_send();
  void adopt_view();
  std::size_t max_head_bytes() const;
  const config::Config& cfg() const { return view_->config(); }
  void fail(int status);
  void close();
  void release_upstream(bool reusable);
  void log_access();

  // ---- Tunnels (splice/tunnel.h): `mode: tcp` listeners and HTTP Upgrade (WebSocket). The
  // session hands both sockets to a Tunnel and stays alive (counted as a connection, drained and
  // aborted as usual) until the tunnel reports done; the server stays "in use" for the pool's
  // scheduler and max_connections until then.
  // `pool` empty: the listener's (or, with `sni:`, the one its ClientHello names).
  void start_tcp(std::string_view pool = {});
  bool wants_upgrade() const;
  std::string_view upgrade_value(const http::Head& h, const char* base) const;
  void start_upgrade();
  void start_tunnel(std::string to_upstream, std::string to_client);
  static void on_tunnel_done(void* self);

  // ---- Tunnels fixed by a request (session_tunnels.cc): CONNECT to a route with `connect`, and
  // routes with `per_connection`. The route's pool gives a fresh connection; once it is
  // connected the session answers (CONNECT: 200) or forwards the request head (per-connection)
  // and hands both sockets to a Tunnel as above.
  enum class FixedTunnel { kNone, kConnect, kPerConnection };
  void on_connect_request();
  bool per_connection_route() const;
  void start_fixed_tunnel();
  FixedTunnel fixed_ = FixedTunnel::kNone;
  // `mode: tcp` listeners with `sni:`: the client's first bytes are read into in_ until its
  // ClientHello shows the server name, which picks the pool; they go to the server first.
  void start_sni_peek();
  void on_sni_data(const char* data, std::size_t n, int bid);
  std::string take_peeked();
  bool sni_peeking_ = false;
  std::unique_ptr<splice::Tunnel> tunnel_;
  PoolRuntime* tunnel_pool_ = nullptr;
  int tunnel_server_ = -1;
  const config::SocketAddress* tunnel_address_ = nullptr;
  bool tunnel_done_ = false;
  bool upgrade_ = false;  // this request is forwarded as an upgrade request
  // ---- TCP handoff (docs/handoff.md): a route marked `handoff` moves the client's connection
  // to the chosen server's agent instead of proxying it. The socket is frozen (TCP_REPAIR) and
  // offered; on Ready the flow is steered to the server, the local socket closed silently and Go
  // sent; on Failed, a lost link or the handoff timeout the socket is resumed and the request
  // proxied as usual. handoff_ exists only while an offer is outstanding.
  struct PendingHandoff {
    class AgentLink* link;
    std::uint64_t id;
    int server;
    sockaddr_storage local;  // the VIP:port the client connected to
  };
  bool try_handoff();
  static void on_handoff_answer_cb(void* self, bool ready, std::string_view why);
  void on_handoff_answer(bool ready, std::string_view why);
  // Takes the socket out of repair mode and proxies the request (`why` is logged).
  void handoff_fallback(std::string_view why);
  void end_handoff();
  std::unique_ptr<PendingHandoff> handoff_;
  void count_request();
  void maybe_free();
  static void dechunk_sink(void* self, const char* data, std::size_t len);

  // ---- Splicing bodies (splice/body_pump.h). A body with a known Content-Length of at least
  // splice.min_body, between plain TCP sockets, moves socket -> pipe -> socket once the head and
  // the body bytes read with it have been sent: request bodies client -> upstream, response
  // bodies upstream -> client. The pump runs when io_uring reports the socket it waits for ready
  // (a single-shot poll); timeouts are those of the copy path.
  enum class Dir { kRequest, kResponse };
  struct BodySplice {
    BodySplice(void* owner, OpHandler on_poll) : poll(owner, on_poll) {}
    splice::BodyPump pump;
    splice::Pipe pipe;  // from the worker's pool while active
    SimpleOp poll;
    bool wanted = false;   // start once the head's send completes
    bool active = false;   // moving bytes (pipe held)
    bool polling = false;  // `poll` in flight (perhaps being removed)
  };
  BodySplice& splice_of(Dir d) { return d == Dir::kRequest ? req_splice_ : resp_splice_; }
  bool splice_eligible(const http::Head& h) const;
  bool start_splice(Dir d, std::uint64_t length);
  void run_splice(Dir d);
  void stop_splice(Dir d);
  static void on_req_poll_cb(void* self, int res, std::uint32_t flags);
  static void on_resp_poll_cb(void* self, int res, std::uint32_t flags);
  void on_splice_poll(Dir d);

  Worker& w_;
  ListenerRuntime& listener_;
  int fd_;
  sockaddr_storage peer_{};
  std::shared_ptr<const WorkerView> view_;  // the snapshot this request runs on
  int table_ = -1;                          // the listener's route table in view_
  rules::Decision decision_;
  std::string location_;                     // redirect target
  std::string target_;                       // rewritten request-target
  std::size_t head_cap_ = 0;                 // size of in_ and rin_
  char client_[INET6_ADDRSTRLEN + 8] = "-";  // "ip:port"
  std::size_t client_ip_len_ = 0;

  // Request side. in_ holds the current request head, then body bytes read with it, then any
  // bytes of the next (pipelined) request from next_start_.
  http::MessageParser req_;
  HeadBuffer in_;
  std::size_t in_len_ = 0;
  std::size_t in_parsed_ = 0;
  std::size_t head_end_ = 0;
  std::size_t next_start_ = 0;  // where the next request starts in in_ (valid once kDone)
  ReqState req_state_ = ReqState::kHead;
  bool client_keep_alive_ = true;
  bool request_is_head_ = false;
  bool connecting_ = false;
  std::string up_head_;  // request head as sent upstream (kept for a retry)
  std::uint64_t tried_ = 0;
  int attempts_ = 0;          // servers tried for this request
  bool replayable_ = false;   // the whole request (head and body) is still in in_
  bool stale_retry_ = false;  // already re-sent once after a reused connection closed
  bool fallback_used_ = false;
  int last_failure_status_ = 503;  // answer when every server was tried: 503 connect, 502 reset
  PoolRuntime* pool_ = nullptr;
  rules::PoolKeys keys_;    // hash/persistence keys for pool_ (cookie view not kept)
  int cookie_server_ = -1;  // server named by the request's persistence cookie
  std::string set_cookie_;  // Set-Cookie field to add to the response
  // Queued for a server (intrusive list of pool_'s queue).
  PoolRuntime* queued_in_ = nullptr;
  Session* queue_prev_ = nullptr;
  Session* queue_next_ = nullptr;
  UpstreamConn* up_ = nullptr;
  std::uint64_t bytes_in_ = 0;
  Clock::time_point request_start_;
  Clock::time_point upstream_sent_{};  // request head handed to the upstream (latency metric)

  // Response side. rin_ holds the response head, then body bytes read with it.
  http::MessageParser resp_;
  HeadBuffer rin_;
  std::size_t rin_len_ = 0;
  std::size_t rin_parsed_ = 0;
  RespState resp_state_ = RespState::kNone;
  bool response_started_ = false;  // response head sent (or sending) to the client
  bool upstream_reusable_ = true;
  bool dechunk_ = false;
  bool close_after_response_ = false;
  std::string out_;        // response head / local response
  std::string dechunked_;  // de-chunked body piece for HTTP/1.0 clients
  int status_ = 0;
  std::uint64_t bytes_out_ = 0;
  std::uint64_t response_bytes_seen_ = 0;
  // Response body pieces read ahead while the previous ones are being sent (see read_ahead),
  // each in its own ring buffer; sent together, in one send, once that send is done.
  struct HeldPiece {
    const char* data = nullptr;
    std::size_t len = 0;
    int bid = -1;
  };
  static constexpr unsigned kMaxHeld = SendOp::kMaxRanges;
  HeldPiece held_[kMaxHeld];
  unsigned held_count_ = 0;

  // Operations in flight (each counted in inflight_).
  RecvOp client_recv_;
  SendOp client_send_;
  SendOp up_send_;
  // Ring buffers to recycle when client_send_ completes (the pieces it sends).
  int client_send_bids_[kMaxHeld] = {};
  unsigned client_send_bid_count_ = 0;
  int up_send_bid_ = -1;
  bool up_tls_send_ = false;
  // start_upstream() waiting for a cancelled send on up_send_ to complete.
  enum class DeferredStart { kNone, kAny, kFresh };
  DeferredStart deferred_start_ =
      DeferredStart::kNone;  // up_send_'s bytes were handed to a TLS connection
  int inflight_ = 0;
  bool closing_ = false;
  bool freed_ = false;
  bool draining_ = false;

  // TLS (null for plain listeners). Ciphertext out goes through tls_out_ and tls_send_; an
  // application send (client_send_) completes when the ciphertext carrying it has been sent.
  std::unique_ptr<tls::TlsStream> tls_;
  std::unique_ptr<char[]> plain_;  // decrypted client bytes (stands in for a ring buffer)
  std::string tls_out_;
  SendOp tls_send_;
  std::size_t tls_plain_total_ = 0;  // size of the application send being encrypted
  bool tls_app_pending_ = false;     // an application send waits for tls_send_
  bool tls_sending_app_ = false;     // tls_send_ carries the application send
  bool tls_read_deferred_ = false;
  std::string client_cert_fields_;  // X-Client-Verify / X-Client-Cert-Subject for upstream

  Deadline client_timer_;
  Deadline upstream_timer_;
  Deadline send_timer_;  // a send to the client must progress within timeouts.client_idle

  BodySplice req_splice_;
  BodySplice resp_splice_;
  std::uint64_t spliced_bytes_ = 0;   // of this exchange (in bytes_in_/bytes_out_ too)
  bool req_parser_stale_ = false;     // a spliced request body bypassed req_: reset it
  bool client_splice_ready_ = false;  // fd_ prepared by splice::prepare_splice_socket
  friend class UpstreamConn;
};

}  // namespace switchyard::proxy
