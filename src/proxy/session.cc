#include "proxy/session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "handoff/tcp_state.h"
#include "http/error_page.h"
#include "http/head_writer.h"
#include "proxy/handoff_link.h"
#include "proxy/idle_connection.h"

namespace switchyard::proxy {
namespace {

void format_address(const sockaddr_storage& ss, char* out, std::size_t cap, std::size_t& ip_len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
  }
  ip_len = std::strlen(ip);
  std::snprintf(out, cap, "%s:%d", ip, port);
}

// Answer when no route of the listener's table matches.
const config::Respond kNoRoute{404, {{"Content-Type", "text/plain"}}, "404 Not Found: no route\n"};

bool is_idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// UpstreamConn

UpstreamConn::UpstreamConn(Worker& w, PoolRuntime& pool, int server)
    : w_(w),
      pool_(&pool),
      server_(server),
      connect_op_(this, &UpstreamConn::on_connect),
      recv_(this, &UpstreamConn::on_recv),
      idle_timer_(this, 0, &UpstreamConn::on_idle_timeout),
      tls_send_(this, &UpstreamConn::on_tls_send) {
  ++w_.live_upstreams_;
}

void UpstreamConn::connect() {
  const config::SocketAddress& addr = address();
  fd_ = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    int err = errno;
    ++inflight_;
    on_connect(this, -err, 0);
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ++inflight_;
  io_uring_sqe* sqe = w_.ring().sqe(&connect_op_);
  io_uring_prep_connect(sqe, fd_, addr.sa(), addr.length);
  connect_start_ = Clock::now();
  ++w_.counters().upstream_connects;
}

void UpstreamConn::on_connect(void* self, int res, std::uint32_t) {
  auto* c = static_cast<UpstreamConn*>(self);
  --c->inflight_;
  if (c->closing_) return c->maybe_free();
  if (res >= 0) {
    if (ServerCounters* s = c->pool_->server_counters(c->server_)) {
      s->connect.observe(Clock::now() - c->connect_start_);
    }
  }
  if (res >= 0 && c->pool_->tls) return c->start_tls();
  if (c->owner_) c->owner_->on_upstream_connected(res);
}

void UpstreamConn::ensure_recv() {
  if (recv_.in_flight() || closing_ || tls_deferred_) return;
  if (tls_ && !handshaking_ && tls_->has_buffered_input()) {
    // Decrypted bytes are waiting: deliver them from the worker loop (kept alive meanwhile).
    tls_deferred_ = true;
    ++inflight_;
    w_.defer_upstream_tls(this);
    return;
  }
  ++inflight_;
  recv_.submit(w_, fd_);
}

// ---- TLS to the server: the same memory-BIO scheme as for clients (see Session::tls_pump).

void UpstreamConn::start_tls() {
  SSL* ssl = pool_->tls->new_ssl(address());
  if (!ssl) {
    if (owner_) owner_->on_upstream_connected(-ENOMEM);
    return;
  }
  tls_ = std::make_unique<tls::TlsStream>(ssl, /*server=*/false);
  handshaking_ = true;
  tls_pump();
}

void UpstreamConn::on_tls_ready() {
  --inflight_;
  tls_deferred_ = false;
  if (closing_) return maybe_free();
  tls_pump();
}

void UpstreamConn::tls_pump() {
  if (handshaking_) {
    tls::TlsStream::Result r = tls_->handshake();
    tls_flush();
    if (r == tls::TlsStream::Result::kWantRead) return ensure_recv();
    handshaking_ = false;
    if (r != tls::TlsStream::Result::kOk) {
      spdlog::warn("upstream {} TLS handshake failed: {}", address().text, tls_->error());
      if (owner_) owner_->on_upstream_connected(-EPROTO);
      return;
    }
    if (owner_) owner_->on_upstream_connected(0);
    return;
  }
  if (!plain_) plain_ = std::make_unique_for_overwrite<char[]>(w_.buffers().buffer_size());
  std::size_t n = 0;
  tls::TlsStream::Result r = tls_->read(plain_.get(), w_.buffers().buffer_size(), n);
  if (tls_->has_output()) tls_flush();
  if (!owner_) {
    // Idle: session tickets and the like are fine; anything else ends the connection.
    if (r == tls::TlsStream::Result::kWantRead) return ensure_recv();
    return close();
  }
  switch (r) {
    case tls::TlsStream::Result::kOk:
      return owner_->on_upstream_data(static_cast<int>(n), plain_.get(), -1);
    case tls::TlsStream::Result::kWantRead:
      return ensure_recv();
    case tls::TlsStream::Result::kClosed:
      return owner_->on_upstream_data(0, nullptr, -1);
    case tls::TlsStream::Result::kError:
      spdlog::warn("upstream {} TLS error: {}", address().text, tls_->error());
      return owner_->on_upstream_data(-EPROTO, nullptr, -1);
  }
}

void UpstreamConn::send_app(const SendOp& plain) {
  app_total_ = plain.total();
  app_waiting_ = true;
  if (!tls_->write(plain.iov(), plain.iovcnt())) {
    spdlog::warn("upstream {} TLS write failed: {}", address().text, tls_->error());
    return complete_app(-EIO);
  }
  app_pending_ = true;
  tls_flush();
}

void UpstreamConn::complete_app(int res) {
  if (!app_waiting_) return;
  app_waiting_ = false;
  if (owner_) owner_->on_upstream_send(res);
}

void UpstreamConn::tls_flush() {
  if (tls_send_.in_flight() || closing_) return;
  tls_out_.clear();
  tls_->take_output(tls_out_);
  if (tls_out_.empty()) {
    if (app_pending_) {
      app_pending_ = false;
      complete_app(static_cast<int>(app_total_));
    }
    return;
  }
  sending_app_ = app_pending_;
  app_pending_ = false;
  tls_send_.clear();
  tls_send_.add(tls_out_.data(), tls_out_.size());
  ++inflight_;
  tls_send_.submit(w_, fd_);
}

void UpstreamConn::on_tls_send(void* self, int res, std::uint32_t) {
  auto* c = static_cast<UpstreamConn*>(self);
  --c->inflight_;
  bool app = c->sending_app_;
  c->sending_app_ = false;
  if (c->closing_) return c->maybe_free();
  if (app) c->complete_app(res < 0 ? res : static_cast<int>(c->app_total_));
  if (c->closing_) return;
  if (res < 0 && !c->owner_) return c->close();
  if (c->tls_->has_output() || c->app_pending_) c->tls_flush();
}

void UpstreamConn::on_recv(void* self, int res, std::uint32_t flags) {
  auto* c = static_cast<UpstreamConn*>(self);
  --c->inflight_;
  if (c->tls_ && !c->closing_ && res > 0) {
    c->tls_->feed(c->w_.buffers().data(RecvOp::buffer_id(flags)), static_cast<std::size_t>(res));
    c->w_.buffers().recycle(RecvOp::buffer_id(flags));
    return c->tls_pump();
  }
  if (c->tls_ && c->handshaking_ && !c->closing_) {
    // The server hung up (or failed) during the handshake.
    if (RecvOp::has_buffer(flags)) c->w_.buffers().recycle(RecvOp::buffer_id(flags));
    c->handshaking_ = false;
    if (c->owner_) c->owner_->on_upstream_connected(res < 0 ? res : -ECONNRESET);
    return;
  }
  if (c->closing_ || !c->owner_) {
    // Idle: the server closed the connection (or sent bytes nobody asked for). Either way it can
    // no longer carry a request.
    if (RecvOp::has_buffer(flags)) c->w_.buffers().recycle(RecvOp::buffer_id(flags));
    if (!c->closing_) return c->close();  // frees the connection once nothing is in flight
    return c->maybe_free();
  }
  int bid = RecvOp::has_buffer(flags) ? RecvOp::buffer_id(flags) : -1;
  c->more_queued_ = res > 0 && (flags & IORING_CQE_F_SOCK_NONEMPTY) != 0;
  const char* data =
      res > 0 && bid >= 0 ? c->w_.buffers().data(static_cast<std::uint16_t>(bid)) : nullptr;
  c->owner_->on_upstream_data(res, data, bid);
}

void UpstreamConn::release_to_pool() {
  owner_ = nullptr;
  idle_ = true;
  pool_->idle[server_].push_back(this);
  w_.upstream_idle_timeouts.arm(idle_timer_, w_.now());
  ensure_recv();
}

void UpstreamConn::on_idle_timeout(void* self, int) {
  static_cast<UpstreamConn*>(self)->close();
}

void UpstreamConn::close() {
  if (closing_) return;
  closing_ = true;
  owner_ = nullptr;
  idle_timer_.disarm();
  if (idle_) {
    auto& list = pool_->idle[server_];
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (list[i] == this) {
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
    idle_ = false;
  }
  recv_.cancel();
  if (fd_ >= 0 && inflight_ > 0) {
    io_uring_sqe* sqe = w_.ring().sqe(nullptr);
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
  }
  maybe_free();
}

void UpstreamConn::maybe_free() {
  if (!closing_ || inflight_ > 0) return;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  --w_.live_upstreams_;
  delete this;
}

// ---------------------------------------------------------------------------------------------
// Session: setup and teardown

Session::Session(Worker& w, ListenerRuntime& listener, int fd, const IdleConnection* parked)
    : w_(w),
      listener_(listener),
      fd_(fd),
      req_(http::MessageParser::Kind::kRequest, w.config().limits.max_header_count),
      resp_(http::MessageParser::Kind::kResponse, w.config().limits.max_header_count),
      client_recv_(this, &Session::on_client_recv_cb),
      client_send_(this, &Session::on_client_send_cb),
      up_send_(this, &Session::on_upstream_send_cb),
      tls_send_(this, &Session::on_tls_send_cb),
      client_timer_(this, kClientTimer, &Session::on_timer),
      upstream_timer_(this, kUpstreamTimer, &Session::on_timer),
      send_timer_(this, kSendTimer, &Session::on_timer),
      req_splice_(this, &Session::on_req_poll_cb),
      resp_splice_(this, &Session::on_resp_poll_cb) {
  // Head buffers are taken when bytes arrive and given back between requests: an idle
  // keep-alive connection owns none (receives land in the shared ring).
  if (parked) {
    adopt_peer(*parked);  // its socket is set up already, and never TLS
    return;
  }
  socklen_t len = sizeof(peer_);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer_), &len) == 0) {
    format_address(peer_, client_, sizeof(client_), client_ip_len_);
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (listener.tls) {
    if (SSL* ssl = listener.tls->new_ssl()) tls_ = std::make_unique<tls::TlsStream>(ssl);
  }
}

Session::~Session() {
  release_buffers();
  if (fd_ >= 0) ::close(fd_);  // -1 once a tunnel took it over
}

void Session::adopt_view() {
  const std::shared_ptr<const WorkerView>& current = w_.view();
  if (view_ == current) return;
  int table = current->table_for(listener_.name);
  // A reload removed this connection's listener: it finishes on the snapshot it has.
  if (table < 0 && view_) return;
  view_ = current;
  table_ = table;
}

std::size_t Session::max_head_bytes() const {
  // A reload may raise the limit above what this connection's buffers were sized for.
  std::size_t limit = cfg().limits.max_header_bytes;
  std::size_t fits = head_cap_ - w_.buffers().buffer_size();
  return limit < fits ? limit : fits;
}

void Session::start() {
  adopt_view();
  if (listener_.tcp) return start_tcp();
  w_.client_header_timeouts.arm(client_timer_, w_.now());
  req_.begin_head(in_.get());
  read_client();
}

void Session::drain() {
  draining_ = true;
  if (listener_.tcp || tunnel_) return;  // a tunnel ends when its peers end it (or at the deadline)
  // Between requests with nothing buffered: nobody is waiting for anything.
  if (req_state_ == ReqState::kHead && in_len_ == 0 && resp_state_ == RespState::kNone) close();
}

void Session::close() {
  if (closing_) return;
  if (tunnel_ && !tunnel_done_) return tunnel_->abort();  // on_tunnel_done closes us
  closing_ = true;
  if (handoff_) {
    // Back out of repair mode first, so that closing sends the client a FIN, not silence.
    handoff_->link->abort(handoff_->id);
    std::string ignored;
    handoff::resume(fd_, ignored);
    end_handoff();
  }
  for (unsigned i = 0; i < held_count_; ++i) recycle(held_[i].bid);
  held_count_ = 0;
  leave_queue();
  client_timer_.disarm();
  upstream_timer_.disarm();
  send_timer_.disarm();
  stop_splice(Dir::kRequest);
  stop_splice(Dir::kResponse);
  if (up_) release_upstream(false);
  client_recv_.cancel();
  if (inflight_ > 0 && fd_ >= 0) {
    io_uring_sqe* sqe = w_.ring().sqe(nullptr);
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
  }
  maybe_free();
}

void Session::maybe_free() {
  if (!closing_ || inflight_ > 0 || freed_) return;
  freed_ = true;
  w_.session_closed(this);  // deletes us at the end of the loop iteration
}

void Session::release_upstream(bool reusable) {
  if (req_splice_.active || resp_splice_.active) {
    // A body was being spliced through this connection: it cannot carry another request.
    stop_splice(Dir::kRequest);
    stop_splice(Dir::kResponse);
    reusable = false;
  }
  UpstreamConn* up = up_;
  up_ = nullptr;
  upstream_timer_.disarm();
  PoolRuntime& pool = up->pool();
  pool.balancer.finished(up->server());
  if (pool.queue_head) w_.wake_queue(pool);
  if (up_send_.in_flight()) {
    // Our send on that connection is not the connection's own operation: cancel it by identity
    // (the fd number may be reused as soon as the connection closes).
    io_uring_sqe* sqe = w_.ring().sqe(nullptr);
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(static_cast<IoOp*>(&up_send_)), 0);
    reusable = false;
  }
  if (up_tls_send_) {
    // The connection sends our (already encrypted) bytes on its own: stop waiting for it.
    up->detach_app_send();
    up_tls_send_ = false;
    --inflight_;
    recycle(up_send_bid_);
    up_send_bid_ = -1;
    reusable = false;
  }
  if (reusable && !draining_ && w_.can_pool(*up)) {
    up->release_to_pool();
    return;
  }
  up->close();
}

// ---------------------------------------------------------------------------------------------
// Timers

void Session::on_timer(void* self, int tag) {
  auto* s = static_cast<Session*>(self);
  if (tag == kSendTimer) {
    // The client stopped reading what we send it.
    s->close();
  } else if (tag == kClientTimer) {
    s->on_client_timeout();
  } else {
    s->on_upstream_timeout();
  }
}

void Session::on_client_timeout() {
  if (closing_) return;
  if (req_state_ == ReqState::kHead && in_len_ == 0) {
    close();  // idle keep-alive connection: nothing to answer
    return;
  }
  spdlog::debug("client {} timed out", client_);
  fail(408);
}

void Session::on_upstream_timeout() {
  if (closing_) return;
  if (handoff_) {
    handoff_->link->abort(handoff_->id);
    return handoff_fallback("no answer within handoff.timeout");
  }
  if (queued_in_) {
    spdlog::warn("pool {}: {} waited {} ms in the queue", queued_in_->cfg->name, client_,
                 queued_in_->cfg->queue.timeout.count());
    ++w_.counters().queue_timeouts;
    leave_queue();
    return fail(503);
  }
  if (connecting_) {
    spdlog::warn("upstream {} connect timed out", up_ ? up_->address().text : "?");
    upstream_failed(upstream::Outcome::kConnectFailure);
    return;
  }
  spdlog::warn("upstream {} response timed out", up_ ? up_->address().text : "?");
  if (up_) pool_->report(up_->server(), upstream::Outcome::kReset, w_.now());
  fail(504);
}

// ---------------------------------------------------------------------------------------------
// Client side: reading requests

void Session::read_client() {
  if (client_recv_.in_flight() || closing_) return;
  if (tls_ && tls_->handshake_done() && tls_->has_buffered_input()) {
    // Decrypted bytes are waiting: deliver them from the worker loop rather than from inside
    // whatever asked for more, which keeps the call stack flat.
    if (!tls_read_deferred_) {
      tls_read_deferred_ = true;
      w_.defer_tls_read(this);
    }
    return;
  }
  recv_client_socket();
}

void Session::recv_client_socket() {
  if (client_recv_.in_flight() || closing_) return;
  ++inflight_;
  client_recv_.submit(w_, fd_);
}

void Session::recycle(int bid) {
  if (bid >= 0) w_.buffers().recycle(static_cast<std::uint16_t>(bid));
}

void Session::ensure_buffers() {
  if (in_) return;
  head_cap_ = w_.head_buffer_size();
  in_ = w_.take_head_buffer();
  rin_ = w_.take_head_buffer();
  req_.begin_head(in_.get());
}

void Session::release_buffers() {
  if (!in_) return;
  w_.give_head_buffer(std::move(in_), head_cap_);
  w_.give_head_buffer(std::move(rin_), head_cap_);
  plain_.reset();
}

void Session::on_client_recv_cb(void* self, int res, std::uint32_t flags) {
  static_cast<Session*>(self)->on_client_recv(res, flags);
}

void Session::on_client_recv(int res, std::uint32_t flags) {
  --inflight_;
  int bid = RecvOp::has_buffer(flags) ? RecvOp::buffer_id(flags) : -1;
  if (closing_) {
    if (bid >= 0) w_.buffers().recycle(static_cast<std::uint16_t>(bid));
    return maybe_free();
  }
  if (res <= 0) {
    // Client went away. Mid-request there is nobody left to answer.
    recycle(bid);
    close();
    return;
  }
  auto n = static_cast<std::size_t>(res);
  const char* data = w_.buffers().data(static_cast<std::uint16_t>(bid));
  if (tls_) {
    tls_->feed(data, n);
    recycle(bid);
    return tls_pump();
  }
  on_client_data(data, n, bid);
}

// `data` is in ring buffer `bid`, or (bid < 0) in plain_, which stays untouched until the bytes
// forwarded from it have been sent: no more is read from the client meanwhile.
void Session::on_client_data(const char* data, std::size_t n, int bid) {
  bytes_in_ += n;
  if (listener_.tcp) return on_sni_data(data, n, bid);  // `sni:` (session_tunnels.cc)
  if (resp_state_ == RespState::kLocal) {
    // An answer of ours (e.g. a 408) is already on its way and decides this connection's fate:
    // whatever the client still sends must not start another request.
    recycle(bid);
    return;
  }
  if (req_state_ == ReqState::kHead) {
    if (in_len_ == 0) {
      request_start_ = w_.now();
      w_.client_header_timeouts.arm(client_timer_, w_.now());
    }
    ensure_buffers();
    std::size_t room = head_cap_ - in_len_;
    std::size_t take = n < room ? n : room;
    std::memcpy(in_.get() + in_len_, data, take);
    in_len_ += take;
    recycle(bid);
    advance_request_head();
    return;
  }
  if (req_state_ != ReqState::kBody || !up_) {
    // A late read after we stopped forwarding (an error answer is on its way): drop it.
    recycle(bid);
    return;
  }
  w_.client_body_timeouts.arm(client_timer_, w_.now());
  handle_request_body(data, n, bid);
}

void Session::advance_request_head() {
  std::size_t consumed = 0;
  auto status = req_.parse(in_.get() + in_parsed_, in_len_ - in_parsed_, consumed);
  in_parsed_ += consumed;
  const std::size_t max_head = max_head_bytes();
  switch (status) {
    case http::MessageParser::Status::kNeedMore:
      if (in_len_ >= max_head) return fail(431);
      return read_client();
    case http::MessageParser::Status::kError:
      if (req_.too_many_headers()) return fail(431);
      spdlog::debug("client {}: bad request: {}", client_, req_.error_reason());
      return fail(400);
    case http::MessageParser::Status::kHeadComplete:
      if (in_parsed_ > max_head) return fail(431);
      return on_request_head(in_parsed_);
    case http::MessageParser::Status::kMessageComplete:
      return fail(400);  // cannot happen before a head
  }
}

void Session::on_request_head(std::size_t head_end) {
  client_timer_.disarm();
  // A request runs on the newest snapshot at the moment its head is complete: a keep-alive
  // connection that sat idle through a reload must not route by the old rules.
  adopt_view();
  head_end_ = head_end;
  ++w_.counters().requests;
  const http::Head& h = req_.head();
  const char* base = in_.get();
  request_is_head_ = h.method.in(base) == "HEAD";
  client_keep_alive_ = h.keep_alive && !draining_ && !w_.draining();
  int hosts = 0;
  for (const http::HeaderSpan& f : h.headers) {
    if (http::iequals(f.name.in(base), "host")) ++hosts;
  }
  // RFC 9112 §3.2: a 1.1 request without Host, or any request with several, is invalid (two
  // Hosts would let routing and the origin disagree about the target).
  if ((hosts == 0 && h.version_minor >= 1) || hosts > 1) return fail(400);
  // CONNECT is tunnelled only where its route allows it (on_connect_request); else 501.
  const bool connect = h.method.in(base) == "CONNECT";
  std::uint64_t max_body = cfg().limits.max_body_bytes;
  if (max_body && h.has_content_length && h.content_length > max_body) return fail(413);

  // Body bytes that arrived with the head: find where this request ends.
  std::size_t consumed = 0;
  auto status = req_.parse(in_.get() + in_parsed_, in_len_ - in_parsed_, consumed);
  in_parsed_ += consumed;
  if (status == http::MessageParser::Status::kError) return fail(400);
  if (max_body && req_.body_bytes() > max_body) return fail(413);
  if (status == http::MessageParser::Status::kMessageComplete) {
    req_state_ = ReqState::kDone;
    next_start_ = in_parsed_;
  } else {
    req_state_ = ReqState::kConnect;
  }
  upgrade_ = wants_upgrade();

  rules::RequestView view{in_.get(), &h, reinterpret_cast<const sockaddr*>(&peer_),
                          tls_ != nullptr};
  decision_ = view_->snapshot->rules->decide(table_, view, w_.scratch());
  const config::Route* route = decision_.route;
  if (connect) return on_connect_request();
  if (!route) return respond_configured(kNoRoute);
  if (route->respond) return respond_configured(*route->respond);
  if (route->redirect) {
    location_.clear();
    view_->snapshot->rules->redirect_location(decision_, view, w_.scratch(), location_);
    return respond_redirect(route->redirect->status);
  }
  replayable_ = req_state_ == ReqState::kDone;
  stale_retry_ = false;
  fallback_used_ = false;
  fixed_ = per_connection_route() ? FixedTunnel::kPerConnection : FixedTunnel::kNone;
  use_pool(decision_.pool);
  if (route->handoff && try_handoff()) return;
  start_upstream();
}

void Session::use_pool(int pool_index) {
  pool_ = pool_index >= 0 ? view_->pools[static_cast<std::size_t>(pool_index)].get() : nullptr;
  tried_ = 0;
  attempts_ = 0;
  up_head_.clear();
  cookie_server_ = -1;
  if (!pool_) return;
  rules::RequestView view{in_.get(), &req_.head(), reinterpret_cast<const sockaddr*>(&peer_),
                          tls_ != nullptr};
  rules::pool_keys(*pool_->cfg, pool_->default_key, view, w_.scratch(), keys_);
  if (!keys_.cookie.empty()) cookie_server_ = pool_->balancer.server_for_cookie(keys_.cookie);
  keys_.cookie = {};  // points into in_; not needed past this point
}

void Session::handle_request_body(const char* data, std::size_t len, int bid) {
  std::size_t consumed = 0;
  auto status = req_.parse(data, len, consumed);
  if (status == http::MessageParser::Status::kError) {
    recycle(bid);
    return fail(400);
  }
  std::uint64_t max_body = cfg().limits.max_body_bytes;
  if (max_body && req_.body_bytes() > max_body) {
    recycle(bid);
    return fail(413);
  }
  if (status == http::MessageParser::Status::kMessageComplete) {
    req_state_ = ReqState::kDone;
    client_timer_.disarm();
    // Bytes past the end belong to the next request: keep them after the current head (the body
    // bytes that used to follow it are already forwarded).
    in_len_ = head_end_;
    std::size_t rest = len - consumed;
    std::memcpy(in_.get() + in_len_, data + consumed, rest);
    next_start_ = in_len_;
    in_len_ += rest;
  }
  if (consumed == 0) {
    recycle(bid);
    return;
  }
  up_send_.clear();
  up_send_.add(data, consumed);
  up_send_bid_ = bid;
  submit_upstream_send();
}

// ---------------------------------------------------------------------------------------------
// Upstream: choosing, connecting, sending the request

void Session::start_upstream(bool allow_idle) {
  if (!pool_) return fail(503);
  // Idle connections are HTTP keep-alive ones; a tunnel takes a fresh one.
  if (listener_.tcp || fixed_ != FixedTunnel::kNone) allow_idle = false;
  if (up_send_.in_flight()) {
    // A send to the previous server is being cancelled and still owns up_send_: go on when its
    // completion arrives (on_upstream_send).
    deferred_start_ = allow_idle ? DeferredStart::kAny : DeferredStart::kFresh;
    return;
  }
  upstream::Balancer::Pick pick = pick_server();
  if (pick.server < 0) return no_server(pick.full);
  int server = pick.server;
  tried_ |= std::uint64_t{1} << server;
  ++attempts_;
  pool_->balancer.started(server);
  up_head_.clear();  // Host for HTTP/1.0 clients names the server: rebuild for each server
  auto& idle = pool_->idle[static_cast<std::size_t>(server)];
  if (allow_idle && !idle.empty()) {
    up_ = idle.back();
    idle.pop_back();
    up_->idle_timer_.disarm();
    up_->idle_ = false;
    up_->set_reused();
    up_->attach(this);
    ++w_.counters().upstream_reuses;
    return send_request_head();
  }
  up_ = new UpstreamConn(w_, *pool_, server);
  up_->attach(this);
  if (req_state_ != ReqState::kDone) req_state_ = ReqState::kConnect;
  pool_->connect_timeouts->arm(upstream_timer_, w_.now());
  connecting_ = true;
  up_->connect();
}

upstream::Balancer::Pick Session::pick_server() {
  upstream::PickRequest pr;
  pr.key = keys_.hash;
  pr.has_key = keys_.has_hash;
  pr.source_key = keys_.source;
  pr.has_source_key = keys_.has_source;
  pr.cookie_server = cookie_server_;
  pr.tried = tried_;
  return pool_->balancer.pick(pr, w_.now());
}

void Session::no_server(bool full) {
  const config::Queue& q = pool_->cfg->queue;
  if (full && pool_->queued < q.size) {
    // Every usable server is at max_connections: wait for one to finish a request.
    queued_in_ = pool_;
    queue_prev_ = pool_->queue_tail;
    queue_next_ = nullptr;
    if (pool_->queue_tail) {
      pool_->queue_tail->queue_next_ = this;
    } else {
      pool_->queue_head = this;
    }
    pool_->queue_tail = this;
    ++pool_->queued;
    ++w_.counters().queued;
    pool_->queue_timeouts->arm(upstream_timer_, w_.now());
    return;
  }
  const config::Route* route = decision_.route;
  if (!fallback_used_ && route && (route->fallback_pool || route->fallback_respond)) {
    fallback_used_ = true;
    if (route->fallback_respond) {
      spdlog::info("pool {}: no server available for {}; answering with the route's fallback",
                   pool_->cfg->name, client_);
      return respond_configured(*route->fallback_respond);
    }
    const auto& pools = cfg().pools;
    auto it = pools.find(*route->fallback_pool);
    if (it != pools.end()) {
      spdlog::info("pool {}: no server available for {}; trying fallback pool {}", pool_->cfg->name,
                   client_, it->first);
      use_pool(static_cast<int>(std::distance(pools.begin(), it)));
      return start_upstream();
    }
  }
  if (attempts_ > 0) {
    // Every server that could take it was tried: the last failure is the answer.
    return fail(last_failure_status_);
  }
  spdlog::warn("pool {}: no server available for {}{}", pool_->cfg->name, client_,
               full ? " (all at max_connections)" : "");
  fail(503);
}

void Session::leave_queue() {
  PoolRuntime* p = queued_in_;
  if (!p) return;
  if (queue_prev_) {
    queue_prev_->queue_next_ = queue_next_;
  } else {
    p->queue_head = queue_next_;
  }
  if (queue_next_) {
    queue_next_->queue_prev_ = queue_prev_;
  } else {
    p->queue_tail = queue_prev_;
  }
  queue_prev_ = queue_next_ = nullptr;
  queued_in_ = nullptr;
  --p->queued;
  upstream_timer_.disarm();
}

void Session::on_dequeued() {
  if (closing_) return;
  start_upstream();
}

void Session::on_upstream_connected(int res) {
  connecting_ = false;
  upstream_timer_.disarm();
  if (res < 0) {
    spdlog::warn("upstream {} connect failed: {}", up_->address().text, std::strerror(-res));
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      // Out of local resources (file descriptors, memory): not the server's fault, and every
      // other server would fail alike. Counted against the server, it would be ejected for
      // every client long after the shortage ended.
      release_upstream(false);
      return fail(503);
    }
    return upstream_failed(upstream::Outcome::kConnectFailure);
  }
  if (listener_.tcp) {
    pool_->report(up_->server(), upstream::Outcome::kSuccess, w_.now());
    return start_tunnel(take_peeked(), {});  // the ClientHello read for `sni:`, if any
  }
  if (fixed_ != FixedTunnel::kNone) {
    pool_->report(up_->server(), upstream::Outcome::kSuccess, w_.now());
    return start_fixed_tunnel();  // CONNECT or a per-connection route (session_tunnels.cc)
  }
  send_request_head();
}

// Another server may take this request: nothing of it is lost (it never left, or all of it is
// still in in_ and it is idempotent) and the pool's retry budget is not spent.
bool Session::may_retry() const {
  return attempts_ <= static_cast<int>(pool_->cfg->retries);
}

void Session::upstream_failed(upstream::Outcome outcome) {
  pool_->report(up_->server(), outcome, w_.now());
  last_failure_status_ = outcome == upstream::Outcome::kConnectFailure ? 503 : 502;
  release_upstream(false);
  connecting_ = false;
  if (!may_retry()) {
    spdlog::warn("pool {}: giving up on {} after {} attempt(s)", pool_->cfg->name, client_,
                 attempts_);
    return no_server(false);  // the route's fallback, else the last failure's status
  }
  ++w_.counters().retries;
  if (pool_->stats) ++pool_->stats->retries;
  start_upstream();  // next server, or fallback/503 when none is left
}

// The request head as it goes to up_'s server, into up_head_ (kept for a retry).
void Session::build_upstream_head() {
  const http::Head& h = req_.head();
  if (up_head_.empty()) {
    http::RequestForwarding fwd;
    fwd.client_ip = std::string_view(client_, client_ip_len_);
    fwd.default_host = up_->address().text;
    const config::Forwarding& cf = cfg().forwarding;
    fwd.x_forwarded_for = cf.x_forwarded_for;
    fwd.x_forwarded_proto = cf.x_forwarded_proto;
    if (tls_) fwd.proto = "https";
    fwd.extra_fields = client_cert_fields_;
    fwd.drop_client_cert_fields = listener_.tls != nullptr;
    fwd.via = cf.via;
    if (up_->tls()) upgrade_ = false;         // a tunnel needs the raw socket
    if (upgrade_) fwd.upgrade = "websocket";  // whatever else the client listed is dropped
    const config::Route* route = decision_.route;
    if (!route->request_headers.empty()) fwd.edits = &route->request_headers;
    if (route->rewrite.kind != config::PathRewrite::Kind::kNone) {
      rules::RequestView view{in_.get(), &h, reinterpret_cast<const sockaddr*>(&peer_),
                              tls_ != nullptr};
      target_.clear();
      if (view_->snapshot->rules->rewrite_target(decision_, view, w_.scratch(), target_)) {
        fwd.target = target_;
      }
    }
    http::write_upstream_request(in_.get(), h, fwd, up_head_);
  }
}

void Session::send_request_head() {
  const http::Head& h = req_.head();
  build_upstream_head();
  resp_.set_request_was_head(request_is_head_);
  resp_state_ = RespState::kHead;
  rin_len_ = rin_parsed_ = 0;
  response_bytes_seen_ = 0;
  // A fresh parser per exchange: the last response may have left llhttp in its closed state.
  resp_.reset(rin_.get());
  up_send_.clear();
  up_send_.add(up_head_.data(), up_head_.size());
  std::size_t body_end = req_state_ == ReqState::kDone ? next_start_ : in_parsed_;
  up_send_.add(in_.get() + head_end_, body_end - head_end_);
  up_send_bid_ = -1;
  if (req_state_ != ReqState::kDone) req_state_ = ReqState::kBody;
  // The rest of a large body goes by splice once this send is done (on_upstream_send).
  req_splice_.wanted = req_state_ == ReqState::kBody && splice_eligible(h);
  resp_splice_.wanted = false;
  submit_upstream_send();
  upstream_sent_ = Clock::now();
  pool_->response_timeouts->arm(upstream_timer_, w_.now());
  up_->ensure_recv();
}

void Session::on_upstream_send_cb(void* self, int res, std::uint32_t) {
  static_cast<Session*>(self)->on_upstream_send(res);
}

void Session::submit_upstream_send() {
  ++inflight_;
  if (up_->tls()) {
    up_tls_send_ = true;
    return up_->send_app(up_send_);  // encrypted now; on_upstream_send when the bytes are out
  }
  up_send_.submit(w_, up_->fd());
}

void Session::on_upstream_send(int res) {
  up_tls_send_ = false;
  --inflight_;
  if (up_send_bid_ >= 0) {
    w_.buffers().recycle(static_cast<std::uint16_t>(up_send_bid_));
    up_send_bid_ = -1;
  }
  if (closing_) return maybe_free();
  if (deferred_start_ != DeferredStart::kNone) {
    bool allow_idle = deferred_start_ == DeferredStart::kAny;
    deferred_start_ = DeferredStart::kNone;
    return start_upstream(allow_idle);
  }
  if (res < 0) {
    // The upstream went away while we were sending. The receive side reports what the client
    // gets (a retry, a 502, or the end of a response it already sent).
    upstream_reusable_ = false;
    return;
  }
  if (resp_state_ == RespState::kHead) pool_->response_timeouts->arm(upstream_timer_, w_.now());
  if (req_state_ == ReqState::kBody) {
    // Head (and body bytes read with it) are gone; from now on in_ only needs the head.
    in_len_ = head_end_;
    in_parsed_ = head_end_;
    if (req_splice_.wanted) {
      req_splice_.wanted = false;
      if (start_splice(Dir::kRequest, req_.head().content_length - req_.body_bytes())) return;
    }
    w_.client_body_timeouts.arm(client_timer_, w_.now());
    read_client();
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream: the response

void Session::on_upstream_data(int res, const char* data, int bid) {
  if (closing_) {
    recycle(bid);
    return;
  }
  upstream_timer_.disarm();
  if (res <= 0) {
    recycle(bid);
    if (resp_state_ == RespState::kBody && res == 0 && resp_.finish_at_eof()) {
      // Body delimited by the server closing: that was the whole response.
      resp_state_ = RespState::kDone;
      upstream_reusable_ = false;
      if (client_sending()) return;  // on_client_send sends what is held, then finishes
      if (held_count_ > 0) {
        // Gathered pieces (gather_piece) go out first; on_client_send then finishes.
        client_send_.clear();
        add_held_to_send();
        if (client_send_.total() > 0) return submit_client_send();
      }
      finish_exchange();
      return;
    }
    if (response_started_) {
      spdlog::warn("upstream {} closed mid-response", up_->address().text);
      return close();
    }
    // Nothing of the response yet. Safe to send again only if the whole request is still in
    // in_, it is idempotent (the server may have acted on it) and our send is not half-done.
    // (Our send may still be in flight: start_upstream waits for it to finish being cancelled.)
    bool replay = response_bytes_seen_ == 0 && req_state_ == ReqState::kDone && replayable_ &&
                  is_idempotent(req_.head().method.in(in_.get()));
    if (replay && up_->reused() && !stale_retry_) {
      // A reused keep-alive connection the server closed just as we sent: the server is fine,
      // the connection was stale. Once, on a fresh connection to the same server.
      stale_retry_ = true;
      tried_ &= ~(std::uint64_t{1} << up_->server());
      --attempts_;
      release_upstream(false);
      return start_upstream(/*allow_idle=*/false);
    }
    spdlog::warn("upstream {} closed before responding", up_->address().text);
    if (replay) return upstream_failed(upstream::Outcome::kReset);
    pool_->report(up_->server(), upstream::Outcome::kReset, w_.now());
    return fail(502);
  }
  auto n = static_cast<std::size_t>(res);
  response_bytes_seen_ += n;
  if (resp_state_ == RespState::kHead) {
    std::size_t room = head_cap_ - rin_len_;
    if (n > room) {
      recycle(bid);
      spdlog::warn("upstream {} response head too large", up_->address().text);
      return fail(502);
    }
    std::memcpy(rin_.get() + rin_len_, data, n);
    rin_len_ += n;
    recycle(bid);
    return advance_response();
  }
  if (resp_state_ == RespState::kBody) return handle_response_body(data, n, bid);
  // Bytes after the response ended: the server is confused; do not reuse it.
  recycle(bid);
  upstream_reusable_ = false;
}

void Session::advance_response() {
  std::size_t consumed = 0;
  auto status = resp_.parse(rin_.get() + rin_parsed_, rin_len_ - rin_parsed_, consumed);
  rin_parsed_ += consumed;
  switch (status) {
    case http::MessageParser::Status::kNeedMore:
      pool_->response_timeouts->arm(upstream_timer_, w_.now());
      return up_->ensure_recv();
    case http::MessageParser::Status::kError:
    case http::MessageParser::Status::kMessageComplete:
      spdlog::warn("upstream {} sent an invalid response: {}", up_->address().text,
                   resp_.error_reason());
      return fail(502);
    case http::MessageParser::Status::kHeadComplete:
      break;
  }
  const http::Head& h = resp_.head();
  if (h.status / 100 == 1) {
    if (h.status == 101) {
      if (upgrade_) return start_upgrade();
      return fail(502);  // an upgrade we did not ask for
    }
    // Interim response (100 Continue): pass it on to 1.1 clients, then read the final one. Its
    // empty "message" completes on the next parse, without consuming bytes.
    std::size_t c2 = 0;
    resp_.parse(rin_.get() + rin_parsed_, rin_len_ - rin_parsed_, c2);
    bool forward = req_.head().version_minor >= 1 && !response_started_;
    out_.clear();
    if (forward) {
      out_.append("HTTP/1.1 ");
      out_.append(std::to_string(h.status)).append(" ").append(h.reason.in(rin_.get()));
      out_.append("\r\n\r\n");
    }
    // Move what follows to the front; the final head starts there.
    std::memmove(rin_.get(), rin_.get() + rin_parsed_, rin_len_ - rin_parsed_);
    rin_len_ -= rin_parsed_;
    rin_parsed_ = 0;
    resp_.begin_head(rin_.get());
    if (!forward) return advance_response();
    resp_state_ = RespState::kInterim;
    client_send_.clear();
    client_send_.add(out_.data(), out_.size());
    client_send_bid_count_ = 0;
    submit_client_send();
    return;
  }
  send_response_head();
}

void Session::send_response_head() {
  const http::Head& h = resp_.head();
  const http::Head& rq = req_.head();
  status_ = h.status;
  bool client10 = rq.version_minor == 0;
  dechunk_ = client10 && h.chunked && !h.no_body;
  if (!h.keep_alive) upstream_reusable_ = false;
  bool keep = client_keep_alive_ && !h.body_until_eof && !dechunk_ && !draining_ && !w_.draining();
  close_after_response_ = !keep;
  http::ResponseForwarding fwd;
  fwd.client_http10 = client10;
  fwd.keep_alive = keep;
  fwd.dechunk = dechunk_;
  fwd.via = cfg().forwarding.via;
  if (!decision_.route->response_headers.empty()) fwd.edits = &decision_.route->response_headers;
  pool_->report(up_->server(),
                h.status >= 500 ? upstream::Outcome::k5xx : upstream::Outcome::kSuccess, w_.now());
  if (ServerCounters* sc = pool_->server_counters(up_->server())) {
    sc->response.observe(Clock::now() - upstream_sent_);
  }
  const config::Persistence& persist = pool_->cfg->persistence;
  if (persist.kind == config::Persistence::Kind::kCookie && up_->server() != cookie_server_) {
    // Name the server that answered, so the client's next requests come back to it.
    set_cookie_.assign("Set-Cookie: ").append(persist.cookie).append("=");
    set_cookie_.append(pool_->balancer.cookie_value(up_->server()));
    set_cookie_.append("; Path=/; HttpOnly\r\n");
    fwd.extra_fields = set_cookie_;
  }
  out_.clear();
  http::write_client_response(rin_.get(), h, fwd, out_);
  response_started_ = true;
  resp_state_ = RespState::kBody;
  if (dechunk_) {
    dechunked_.clear();
    resp_.set_body_sink(&Session::dechunk_sink, this);
  } else {
    resp_.set_body_sink(nullptr, nullptr);
  }
  // Body bytes that came with the head.
  std::size_t consumed = 0;
  auto status = resp_.parse(rin_.get() + rin_parsed_, rin_len_ - rin_parsed_, consumed);
  if (status == http::MessageParser::Status::kError) {
    spdlog::warn("upstream {} sent an invalid body: {}", up_->address().text, resp_.error_reason());
    upstream_reusable_ = false;
    close_after_response_ = true;
  }
  if (status == http::MessageParser::Status::kMessageComplete) {
    resp_state_ = RespState::kDone;
    if (rin_parsed_ + consumed != rin_len_) upstream_reusable_ = false;
  }
  // The rest of a large body goes by splice once this send is done (on_client_send).
  resp_splice_.wanted =
      status == http::MessageParser::Status::kNeedMore && !dechunk_ && splice_eligible(h);
  client_send_.clear();
  client_send_.add(out_.data(), out_.size());
  if (dechunk_) {
    client_send_.add(dechunked_.data(), dechunked_.size());
  } else {
    client_send_.add(rin_.get() + rin_parsed_, consumed);
  }
  client_send_bid_count_ = 0;
  submit_client_send();
  if (status == http::MessageParser::Status::kError) resp_state_ = RespState::kDone;
}

void Session::dechunk_sink(void* self, const char* data, std::size_t len) {
  static_cast<Session*>(self)->dechunked_.append(data, len);
}

void Session::handle_response_body(const char* data, std::size_t len, int bid) {
  std::size_t consumed = 0;
  if (dechunk_) dechunked_.clear();
  auto status = resp_.parse(data, len, consumed);
  if (status == http::MessageParser::Status::kError) {
    recycle(bid);
    spdlog::warn("upstream {} sent an invalid body: {}", up_->address().text, resp_.error_reason());
    return close();
  }
  if (status == http::MessageParser::Status::kMessageComplete) {
    resp_state_ = RespState::kDone;
    if (consumed != len) upstream_reusable_ = false;
  }
  if (client_sending()) {
    // A read-ahead piece (see read_ahead): parsed already, sent when the current send is done.
    if (held_count_ == kMaxHeld) {  // read_ahead never reads more than that
      recycle(bid);
      spdlog::error("client {}: response piece read with no room to hold it", client_);
      return close();
    }
    held_[held_count_++] = HeldPiece{data, consumed, bid};
    return read_ahead();
  }
  if (gather_piece(data, consumed, bid)) return;
  client_send_.clear();
  add_held_to_send();
  if (dechunk_) {
    client_send_.add(dechunked_.data(), dechunked_.size());
  } else {
    client_send_.add(data, consumed);
  }
  // A piece of the upstream TLS connection's plaintext buffer (bid -1) is not read ahead of.
  if (bid >= 0) client_send_bids_[client_send_bid_count_++] = bid;
  if (client_send_.total() == 0) {
    for (unsigned i = 0; i < client_send_bid_count_; ++i) recycle(client_send_bids_[i]);
    client_send_bid_count_ = 0;
    if (resp_state_ == RespState::kDone) return finish_exchange();
    pool_->response_timeouts->arm(upstream_timer_, w_.now());
    return up_->ensure_recv();
  }
  submit_client_send();
  read_ahead();
}

// Nothing is being sent to the client and the receive that brought this piece left more bytes
// in the server's socket (another receive completes at once): hold it and receive again, so
// that up to kMaxHeld pieces leave in one send — 64 KiB segments instead of 16 KiB ones, the
// same saving as read_ahead's. Never when the socket was drained: a piece that is all there is
// for now goes out at once (no added latency for streamed responses).
bool Session::gather_piece(const char* data, std::size_t len, int bid) {
  if (resp_state_ != RespState::kBody || dechunk_ || bid < 0 || !up_->more_queued() ||
      held_count_ + 1 >= kMaxHeld || w_.buffers().available() < w_.buffers().count() / 2) {
    return false;
  }
  held_[held_count_++] = HeldPiece{data, len, bid};
  pool_->response_timeouts->arm(upstream_timer_, w_.now());
  up_->ensure_recv();
  return true;
}

// Moves the held pieces into client_send_ (after what it has) and their buffers into
// client_send_bids_; framing-only pieces (a chunk header, nothing to send) are recycled.
void Session::add_held_to_send() {
  for (unsigned i = 0; i < held_count_; ++i) {
    const HeldPiece& h = held_[i];
    if (h.len == 0) {
      recycle(h.bid);
      continue;
    }
    client_send_.add(h.data, h.len);
    client_send_bids_[client_send_bid_count_++] = h.bid;
  }
  held_count_ = 0;
}

// Keeps the next response read in flight while pieces go to the client, so that receiving from
// the server and sending to the client overlap instead of alternating. Up to kMaxHeld pieces are
// held, and they leave together in one send once the current one is done: one 64 KiB segment
// instead of four of 16 KiB (bench get-1m copying: 133 -> 76 TCP segments per MiB, in and out,
// each of which costs a transmit and a delivery). That is still back-pressure: nothing more is
// read until the client takes them. A connection keeps at most 2 x kMaxHeld buffers (one send,
// one held set); a second held piece is taken only while at least half of the worker's receive
// buffers are free, so once slow readers have used half the ring, each takes at most one more
// (the old one-ahead). Only for pieces in their own ring buffer: not de-chunked ones (dechunked_
// is reused).
void Session::read_ahead() {
  if (resp_state_ != RespState::kBody || dechunk_ || client_send_bid_count_ == 0) return;
  if (held_count_ >= kMaxHeld ||
      (held_count_ > 0 && w_.buffers().available() < w_.buffers().count() / 2)) {
    return;
  }
  pool_->response_timeouts->arm(upstream_timer_, w_.now());
  up_->ensure_recv();
}

// ---------------------------------------------------------------------------------------------
// Splicing bodies (see session.h and splice/body_pump.h)

bool Session::splice_eligible(const http::Head& h) const {
  const config::Splice& sp = cfg().splice;
  // TLS needs the bytes in userspace; chunked bodies are framed, so their length is not known
  // up front (they keep the copy path).
  return sp.bodies && !tls_ && up_ && !up_->tls() && h.has_content_length && !h.chunked &&
         !h.no_body && h.content_length >= sp.min_body;
}

namespace {

// Once per socket (a kept-alive connection splices many bodies).
bool ready_for_splice(int fd, bool& done, std::size_t notsent_lowat) {
  if (done) return true;
  done = splice::prepare_splice_socket(fd, notsent_lowat);
  return done;
}

}  // namespace

// Starts moving the `length` bytes left of the current body. False (and nothing changed) if it
// cannot: the caller goes on with the copy path.
bool Session::start_splice(Dir d, std::uint64_t length) {
  BodySplice& b = splice_of(d);
  if (length == 0 || !up_ || b.active) return false;
  const std::size_t lowat = cfg().splice.notsent_lowat;
  if (!ready_for_splice(fd_, client_splice_ready_, lowat) ||
      !ready_for_splice(up_->fd(), up_->splice_ready_, lowat)) {
    return false;
  }
  splice::PipePool& pool = w_.pipes();
  pool.set_size(cfg().splice.pipe_size);
  int err = 0;
  b.pipe = pool.acquire(err);
  if (pool.take_size_refused()) {
    spdlog::warn("splice: the kernel refused {}-byte pipes (pipe-max-size); using {}-byte pipes",
                 cfg().splice.pipe_size, b.pipe.capacity());
  }
  if (err != 0) {
    // Out of descriptors or memory: copying needs neither.
    spdlog::debug("splice: no pipe ({}); copying", std::strerror(-err));
    return false;
  }
  if (d == Dir::kRequest) {
    b.pump.start(fd_, up_->fd(), b.pipe, length);
  } else {
    b.pump.start(up_->fd(), fd_, b.pipe, length);
  }
  b.active = true;
  run_splice(d);
  return true;
}

void Session::stop_splice(Dir d) {
  BodySplice& b = splice_of(d);
  if (!b.active) return;
  b.active = false;
  if (b.polling) {
    // Its completion (-ECANCELED, or a late readiness) finds the splice inactive and only counts.
    io_uring_sqe* sqe = w_.ring().sqe(nullptr);
    io_uring_prep_poll_remove(sqe, reinterpret_cast<std::uint64_t>(static_cast<IoOp*>(&b.poll)));
  }
  // A pipe still holding bytes (abandoned halfway) is closed, not reused.
  w_.pipes().release(std::move(b.pipe), b.pump.in_pipe() == 0);
}

void Session::run_splice(Dir d) {
  BodySplice& b = splice_of(d);
  const std::uint64_t read_before = b.pump.left_to_read();
  std::uint64_t moved = 0;
  splice::BodyPump::Result r = b.pump.run(moved);
  const bool read_some = b.pump.left_to_read() != read_before;
  if (moved) {
    spliced_bytes_ += moved;
    w_.counters().splice_bytes += moved;
    (d == Dir::kRequest ? bytes_in_ : bytes_out_) += moved;
  }
  using R = splice::BodyPump::Result;
  int fd = -1;
  unsigned events = 0;
  if (d == Dir::kResponse) {
    switch (r) {
      case R::kDone:
        stop_splice(d);
        upstream_timer_.disarm();
        send_timer_.disarm();
        resp_state_ = RespState::kDone;
        return finish_exchange();
      case R::kWantRead:
        // Waiting for the server: the response timeout, as for a receive.
        send_timer_.disarm();
        pool_->response_timeouts->arm(upstream_timer_, w_.now());
        fd = up_->fd();
        events = POLLIN;
        break;
      case R::kWantWrite:
        // Waiting for the client to read: like a send, it must progress within client_idle.
        upstream_timer_.disarm();
        if (moved || !send_timer_.armed()) w_.client_idle_timeouts.arm(send_timer_, w_.now());
        fd = fd_;
        events = POLLOUT;
        break;
      case R::kSourceClosed:
      case R::kSourceError:
        spdlog::warn("upstream {} closed mid-response{}{}", up_->address().text,
                     r == R::kSourceError ? ": " : "",
                     r == R::kSourceError ? std::strerror(b.pump.error()) : "");
        pool_->report(up_->server(), upstream::Outcome::kReset, w_.now());
        return close();
      case R::kSinkError:
        return close();  // the client went away
    }
  } else {
    switch (r) {
      case R::kDone:
        stop_splice(d);
        // As handle_request_body at the end of a body; nothing of the next request has been read
        // (it is still in the socket), and req_ never saw this body.
        req_state_ = ReqState::kDone;
        client_timer_.disarm();
        in_len_ = in_parsed_ = next_start_ = head_end_;
        req_parser_stale_ = true;
        if (resp_state_ == RespState::kHead) {
          pool_->response_timeouts->arm(upstream_timer_, w_.now());
        }
        return;
      case R::kWantRead:
        if (read_some || !client_timer_.armed()) {
          w_.client_body_timeouts.arm(client_timer_, w_.now());
        }
        if (moved && resp_state_ == RespState::kHead) {
          pool_->response_timeouts->arm(upstream_timer_, w_.now());
        }
        fd = fd_;
        events = POLLIN;
        break;
      case R::kWantWrite:
        // The server is not reading: its response timeout (armed since the head went out, and
        // re-armed on progress as for sends) decides.
        if (read_some) w_.client_body_timeouts.arm(client_timer_, w_.now());
        if (moved && resp_state_ == RespState::kHead) {
          pool_->response_timeouts->arm(upstream_timer_, w_.now());
        }
        fd = up_->fd();
        events = POLLOUT;
        break;
      case R::kSourceClosed:
      case R::kSourceError:
        return close();  // the client went away mid-upload; the server connection with it
      case R::kSinkError:
        // The server stopped taking the body (it may have answered already, e.g. 413): read no
        // more of it; the response side decides what the client gets.
        stop_splice(d);
        upstream_reusable_ = false;
        return;
    }
  }
  // An earlier poll of this direction is still being removed: its completion runs the pump.
  if (b.polling) return;
  b.polling = true;
  ++inflight_;
  io_uring_sqe* sqe = w_.ring().sqe(&b.poll);
  io_uring_prep_poll_add(sqe, fd, events);
}

void Session::on_req_poll_cb(void* self, int, std::uint32_t) {
  static_cast<Session*>(self)->on_splice_poll(Dir::kRequest);
}

void Session::on_resp_poll_cb(void* self, int, std::uint32_t) {
  static_cast<Session*>(self)->on_splice_poll(Dir::kResponse);
}

void Session::on_splice_poll(Dir d) {
  --inflight_;
  BodySplice& b = splice_of(d);
  b.polling = false;
  if (closing_) return maybe_free();
  // Stopped meanwhile (its poll removed), or restarted and waiting for this completion. Errors
  // and hang-ups (POLLERR, POLLHUP) are not looked at here: the splice reports them.
  if (b.active) run_splice(d);
}

void Session::on_client_send_cb(void* self, int res, std::uint32_t) {
  static_cast<Session*>(self)->on_client_send(res);
}

void Session::on_client_send(int res) {
  --inflight_;
  send_timer_.disarm();
  for (unsigned i = 0; i < client_send_bid_count_; ++i) recycle(client_send_bids_[i]);
  client_send_bid_count_ = 0;
  if (closing_) return maybe_free();
  if (res < 0) return close();
  bytes_out_ += static_cast<std::uint64_t>(res);
  if (held_count_ > 0) {
    client_send_.clear();
    add_held_to_send();
    if (client_send_.total() > 0) {
      submit_client_send();
      return read_ahead();
    }
  }
  switch (resp_state_) {
    case RespState::kLocal:
      log_access();
      if (close_after_response_) return close();
      return next_request();
    case RespState::kInterim:
      resp_state_ = RespState::kHead;
      return advance_response();
    case RespState::kBody:
      if (resp_splice_.wanted) {
        resp_splice_.wanted = false;
        if (start_splice(Dir::kResponse, resp_.head().content_length - resp_.body_bytes())) return;
      }
      pool_->response_timeouts->arm(upstream_timer_, w_.now());
      return up_->ensure_recv();
    case RespState::kDone:
      return finish_exchange();
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// End of an exchange

void Session::finish_exchange() {
  log_access();
  bool request_complete = req_state_ == ReqState::kDone && !up_sending();
  if (up_) release_upstream(upstream_reusable_ && request_complete);
  if (close_after_response_ || !request_complete) return close();
  next_request();
}

void Session::next_request() {
  // Pipelined bytes of the next request move to the front of in_.
  std::size_t rest = req_state_ == ReqState::kDone ? in_len_ - next_start_ : 0;
  if (rest) std::memmove(in_.get(), in_.get() + next_start_, rest);
  in_len_ = rest;
  in_parsed_ = head_end_ = next_start_ = 0;
  req_state_ = ReqState::kHead;
  resp_state_ = RespState::kNone;
  response_started_ = false;
  upstream_reusable_ = true;
  close_after_response_ = false;
  dechunk_ = false;
  status_ = 0;
  bytes_in_ = rest;
  bytes_out_ = 0;
  spliced_bytes_ = 0;
  up_head_.clear();
  decision_ = {};
  pool_ = nullptr;
  deferred_start_ = DeferredStart::kNone;
  if (rest == 0) release_buffers();
  if (req_parser_stale_) {
    // The last body went around the parser: start it afresh (it still counts that body's bytes).
    req_parser_stale_ = false;
    req_.reset(in_.get());
  } else {
    req_.begin_head(in_.get());
  }
  adopt_view();
  if (draining_ || w_.draining()) {
    if (rest == 0) return close();
  }
  if (rest) {
    request_start_ = w_.now();
    w_.client_header_timeouts.arm(client_timer_, w_.now());
    return advance_request_head();
  }
  if (park()) return;
  w_.client_idle_timeouts.arm(client_timer_, w_.now());
  read_client();
}

void Session::respond_configured(const config::Respond& r) {
  status_ = r.status;
  // A body we did not read would be taken for the next request: close instead of draining it.
  if (req_state_ != ReqState::kDone) client_keep_alive_ = false;
  close_after_response_ = !client_keep_alive_;
  out_.clear();
  http::write_respond(r, client_keep_alive_, request_is_head_, out_);
  send_local();
}

void Session::respond_redirect(int status) {
  status_ = status;
  if (req_state_ != ReqState::kDone) client_keep_alive_ = false;
  close_after_response_ = !client_keep_alive_;
  out_.clear();
  http::write_redirect(status, location_, client_keep_alive_, out_);
  send_local();
}

void Session::submit_client_send() {
  ++inflight_;
  w_.client_idle_timeouts.arm(send_timer_, w_.now());
  if (!tls_) {
    client_send_.submit(w_, fd_);
    return;
  }
  // Encrypt now; the send completes (on_client_send) once the ciphertext is out.
  tls_plain_total_ = client_send_.total();
  if (!tls_->write(client_send_.iov(), client_send_.iovcnt())) {
    spdlog::debug("client {}: TLS write failed: {}", client_, tls_->error());
    return on_client_send(-EIO);
  }
  tls_app_pending_ = true;
  tls_flush();
}

// ---------------------------------------------------------------------------------------------
// TLS

void Session::on_tls_ready() {
  tls_read_deferred_ = false;
  if (closing_) return;
  tls_pump();
}

void Session::tls_pump() {
  if (!tls_->handshake_done()) {
    tls::TlsStream::Result r = tls_->handshake();
    tls_flush();  // our handshake messages (or an alert)
    // A handshake step costs hundreds of microseconds of crypto: send its flight now instead of
    // after every other completion of this batch (which would hold every client of the batch
    // back by the sum of their signatures). One extra io_uring_enter per flight is noise here.
    if (tls_send_.in_flight()) io_uring_submit(w_.ring().raw());
    if (r == tls::TlsStream::Result::kWantRead) return recv_client_socket();
    if (r != tls::TlsStream::Result::kOk) {
      ++w_.counters().tls_handshake_failures;
      // Scanners and broken clients can make these frequent: debug level, counted.
      spdlog::debug("client {}: TLS handshake failed: {}", client_, tls_->error());
      return close();
    }
    ++w_.counters().tls_handshakes;
    if (tls_->resumed()) ++w_.counters().tls_resumptions;
    if (listener_.tls &&
        listener_.tls->config().verify_client != config::TlsServer::Verify::kNone) {
      std::string subject = tls_->peer_subject();
      client_cert_fields_.assign(subject.empty() ? "X-Client-Verify: NONE\r\n"
                                                 : "X-Client-Verify: SUCCESS\r\n");
      if (!subject.empty()) {
        client_cert_fields_.append("X-Client-Cert-Subject: ").append(subject).append("\r\n");
      }
    }
  }
  if (!plain_) plain_ = std::make_unique_for_overwrite<char[]>(w_.buffers().buffer_size());
  std::size_t n = 0;
  tls::TlsStream::Result r = tls_->read(plain_.get(), w_.buffers().buffer_size(), n);
  if (tls_->has_output()) tls_flush();  // e.g. a reply to a key update
  switch (r) {
    case tls::TlsStream::Result::kOk:
      return on_client_data(plain_.get(), n, -1);
    case tls::TlsStream::Result::kWantRead:
      return recv_client_socket();
    case tls::TlsStream::Result::kClosed:
    case tls::TlsStream::Result::kError:
      if (r == tls::TlsStream::Result::kError) {
        spdlog::debug("client {}: TLS error: {}", client_, tls_->error());
      }
      return close();
  }
}

void Session::tls_flush() {
  if (tls_send_.in_flight() || closing_) return;  // its completion flushes again
  tls_out_.clear();
  tls_->take_output(tls_out_);
  if (tls_out_.empty()) {
    if (tls_app_pending_) {
      tls_app_pending_ = false;  // nothing to send (an empty application send)
      on_client_send(static_cast<int>(tls_plain_total_));
    }
    return;
  }
  tls_sending_app_ = tls_app_pending_;
  tls_app_pending_ = false;
  tls_send_.clear();
  tls_send_.add(tls_out_.data(), tls_out_.size());
  ++inflight_;
  tls_send_.submit(w_, fd_);
}

void Session::on_tls_send_cb(void* self, int res, std::uint32_t) {
  static_cast<Session*>(self)->on_tls_send(res);
}

void Session::on_tls_send(int res) {
  --inflight_;
  bool app = tls_sending_app_;
  tls_sending_app_ = false;
  if (app) {
    // Completes the application send, which may start the next one (and flush it).
    on_client_send(res < 0 ? res : static_cast<int>(tls_plain_total_));
  } else if (closing_) {
    if (tls_app_pending_) {
      // An application send was queued behind this one and will never go out: complete it (its
      // inflight_ count, its ring buffers), or the session could never be freed.
      tls_app_pending_ = false;
      return on_client_send(-ECANCELED);
    }
    return maybe_free();
  } else if (res < 0) {
    return close();
  }
  if (closing_) return;
  if (tls_->has_output() || tls_app_pending_) tls_flush();
}

void Session::send_local() {
  resp_state_ = RespState::kLocal;
  response_started_ = true;
  client_send_.clear();
  client_send_.add(out_.data(), out_.size());
  client_send_bid_count_ = 0;
  submit_client_send();
}

void Session::fail(int status) {
  if (closing_) return;
  if (listener_.tcp) return close();  // no HTTP on this connection: all we can do is close
  leave_queue();
  client_timer_.disarm();
  upstream_timer_.disarm();
  if (up_) release_upstream(false);
  if (response_started_ || client_sending()) {
    // The client already has (part of) another answer: all we can do is stop.
    return close();
  }
  status_ = status;
  spdlog::info("{} {} -> {}", client_, listener_.name, status);
  out_.clear();
  http::write_error_response(status, out_);
  close_after_response_ = true;
  send_local();
}

// Per-request statistics (proxy/stats.h): this worker's own slots only, nothing shared written.
void Session::count_request() {
  // A tunnel counts its own bytes (copy or sockmap) as it moves them.
  if (!tunnel_) w_.counters().copy_bytes += bytes_in_ + bytes_out_ - spliced_bytes_;
  int c = status_class(status_);
  if (ListenerCounters* l = listener_.stats) {
    if (c >= 0) ++l->requests[c];
    l->bytes_in += bytes_in_;
    l->bytes_out += bytes_out_;
  }
  if (c < 0) return;
  const SnapshotStats* st = view_ ? view_->snapshot->stats.get() : nullptr;
  if (st && decision_.route && decision_.route->index < st->routes.size()) {
    if (RouteStats* r = st->routes[decision_.route->index]) {
      ++r->at(static_cast<unsigned>(w_.id())).hits;
    }
  }
  if (!pool_) return;
  if (pool_->stats) ++pool_->stats->requests[c];
  if (up_) {
    if (ServerCounters* s = pool_->server_counters(up_->server())) ++s->responses[c];
  }
}

void Session::log_access() {
  count_request();
  if (!w_.access_log_enabled()) return;
  AccessRecord r;
  r.listener = listener_.name;
  r.client = client_;
  if (!req_.in_head()) {
    r.method = req_.head().method.in(in_.get());
    r.target = req_.head().target.in(in_.get());
  } else {
    r.method = "-";
    r.target = "-";
  }
  r.status = status_;
  r.bytes_in = bytes_in_;
  r.bytes_out = bytes_out_;
  r.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - request_start_).count();
  r.upstream = up_ ? std::string_view(up_->address().text) : std::string_view("-");
  if (handoff_) {
    r.upstream = pool_->cfg->servers[static_cast<std::size_t>(handoff_->server)].address.text;
  }
  if (tunnel_address_) r.upstream = tunnel_address_->text;
  w_.access_log().push(r, cfg().access_log.format);
}

// ---------------------------------------------------------------------------------------------
// Tunnels

// `mode: tcp`: no HTTP at all. The listener's pool picks a server as for a request (scheduler,
// source persistence, health, max_connections, queue, retries on connect failure); once
// connected, both sockets become a tunnel.
void Session::start_tcp(std::string_view pool) {
  request_start_ = w_.now();
  // With `sni:`, the pool waits for the client's ClientHello (session_tunnels.cc).
  if (!listener_.sni.empty() && pool.empty()) return start_sni_peek();
  const auto& pools = cfg().pools;
  auto it = pools.find(pool.empty() ? listener_.pool : std::string(pool));
  if (it == pools.end()) return close();  // (the loader checks the reference)
  fallback_used_ = true;                  // a tcp listener has no route, hence no fallback
  use_pool(static_cast<int>(std::distance(pools.begin(), it)));
  start_upstream(/*allow_idle=*/false);
}

// A request the proxy forwards as an upgrade (RFC 9110 §7.8): an HTTP/1.1 GET without a body,
// with Upgrade and "Connection: upgrade", on a plain listener that allows it.
bool Session::wants_upgrade() const {
  if (!listener_.websocket || tls_ || req_state_ != ReqState::kDone) return false;
  const http::Head& h = req_.head();
  const char* base = in_.get();
  if (h.version_minor < 1 || h.method.in(base) != "GET" || h.chunked) return false;
  if (h.has_content_length && h.content_length > 0) return false;
  bool connection_upgrade = false;
  for (const http::HeaderSpan& f : h.headers) {
    if (http::iequals(f.name.in(base), "connection") &&
        http::list_contains_token(f.value.in(base), "upgrade")) {
      connection_upgrade = true;
    }
  }
  // Only WebSocket: an h2c upgrade tunnelled through would carry HTTP/2 requests the rules never
  // see (h2c smuggling), so it is removed as hop-by-hop like any other.
  return connection_upgrade && http::list_contains_token(upgrade_value(h, base), "websocket");
}

std::string_view Session::upgrade_value(const http::Head& h, const char* base) const {
  for (const http::HeaderSpan& f : h.headers) {
    if (http::iequals(f.name.in(base), "upgrade")) return f.value.in(base);
  }
  return {};
}

// The server accepted the upgrade: pass the 101 on and tunnel both connections. Bytes the
// server sent after its head, and bytes the client sent after its request, go first.
void Session::start_upgrade() {
  const http::Head& h = resp_.head();
  status_ = 101;
  pool_->report(up_->server(), upstream::Outcome::kSuccess, w_.now());
  if (ServerCounters* sc = pool_->server_counters(up_->server())) {
    sc->response.observe(Clock::now() - upstream_sent_);
  }
  http::ResponseForwarding fwd;
  fwd.via = cfg().forwarding.via;
  fwd.upgrade = upgrade_value(h, rin_.get());
  if (fwd.upgrade.empty()) fwd.upgrade = upgrade_value(req_.head(), in_.get());
  if (!decision_.route->response_headers.empty()) fwd.edits = &decision_.route->response_headers;
  std::string to_client;
  http::write_client_response(rin_.get(), h, fwd, to_client);
  bytes_out_ += to_client.size();
  to_client.append(rin_.get() + rin_parsed_, rin_len_ - rin_parsed_);
  std::string to_upstream(in_.get() + next_start_, in_len_ - next_start_);
  response_started_ = true;
  start_tunnel(std::move(to_upstream), std::move(to_client));
}

void Session::start_tunnel(std::string to_upstream, std::string to_client) {
  UpstreamConn* up = up_;
  if (up->inflight_ > 0 || up_send_.in_flight() || up_tls_send_ || client_recv_.in_flight() ||
      client_sending() || tls_) {
    // Operations still own one of the sockets (should not happen: the request is sent and
    // nothing is being read); handing it over now could interleave bytes.
    spdlog::warn("{}: cannot start a tunnel with operations in flight; closing", client_);
    return close();
  }
  up_ = nullptr;
  client_timer_.disarm();
  upstream_timer_.disarm();
  send_timer_.disarm();
  // The server stays in use (for lc/wlc and max_connections) until the tunnel ends.
  tunnel_pool_ = &up->pool();
  tunnel_server_ = up->server();
  tunnel_address_ = &up->address();
  int upstream_fd = up->fd_;
  up->fd_ = -1;
  up->close();  // frees the connection object; the socket is the tunnel's now
  int client_fd = fd_;
  fd_ = -1;
  tunnel_ = std::make_unique<splice::Tunnel>(w_, client_fd, upstream_fd, std::move(to_upstream),
                                             std::move(to_client), w_.sockmap(), this,
                                             &Session::on_tunnel_done);
  tunnel_->start();
}

void Session::on_tunnel_done(void* self) {
  auto* s = static_cast<Session*>(self);
  s->tunnel_done_ = true;
  s->bytes_in_ += s->tunnel_->bytes_to_upstream();
  s->bytes_out_ += s->tunnel_->bytes_to_client();
  PoolRuntime& pool = *s->tunnel_pool_;
  pool.balancer.finished(s->tunnel_server_);
  if (pool.queue_head) s->w_.wake_queue(pool);
  s->log_access();
  s->close();
}

// ---------------------------------------------------------------------------------------------
// TCP handoff

bool Session::try_handoff() {
  const std::optional<config::Handoff>& ho = cfg().handoff;
  // Only a plain connection can move (TLS state cannot follow it), and only one the proxy has
  // not started answering: freeze() refuses unacknowledged output anyway.
  if (!ho || tls_ || !pool_ || upgrade_ || response_started_ || fixed_ != FixedTunnel::kNone) {
    return false;
  }
  std::shared_ptr<const l4::FlowSteering> steering = w_.steering();
  if (!steering || steering->empty()) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      spdlog::warn(
          "handoff: routes ask for it but no l4 service has `handoff: true` (or the "
          "L4 data path is not running); such requests are proxied");
    }
    ++w_.counters().handoff_fallbacks;
    return false;
  }
  upstream::Balancer::Pick pick = pick_server();
  if (pick.server < 0) return false;  // start_upstream answers: queue, fallback or 503
  const config::Server& server = pool_->cfg->servers[static_cast<std::size_t>(pick.server)];
  if (!server.agent) return false;  // (the loader requires one)
  std::string error;
  std::optional<handoff::TcpState> state = handoff::freeze(fd_, error);
  if (!state) {
    spdlog::debug("handoff: {}: cannot freeze: {}; proxying", client_, error);
    ++w_.counters().handoff_fallbacks;
    return false;
  }
  AgentLink& link = w_.agent_link(*server.agent, ho->key);
  const std::uint64_t id = w_.next_handoff_id();
  if (!link.offer(id, *state, std::string_view(in_.get(), in_len_), this,
                  &Session::on_handoff_answer_cb)) {
    handoff::resume(fd_, error);
    ++w_.counters().handoff_fallbacks;
    return false;
  }
  pool_->balancer.started(pick.server);
  handoff_ = std::make_unique<PendingHandoff>(PendingHandoff{&link, id, pick.server, state->local});
  w_.timeouts_for(ho->timeout).arm(upstream_timer_, w_.now());
  return true;
}

void Session::on_handoff_answer_cb(void* self, bool ready, std::string_view why) {
  static_cast<Session*>(self)->on_handoff_answer(ready, why);
}

void Session::on_handoff_answer(bool ready, std::string_view why) {
  if (!handoff_) return;
  upstream_timer_.disarm();
  if (!ready) return handoff_fallback(why);
  const config::Server& server = pool_->cfg->servers[static_cast<std::size_t>(handoff_->server)];
  std::string error = "the l4 handoff service is gone";
  std::shared_ptr<const l4::FlowSteering> steering = w_.steering();
  if (!steering || !steering->steer(peer_, handoff_->local, server.address.storage, error)) {
    handoff_->link->abort(handoff_->id);
    return handoff_fallback(error);
  }
  // The client's packets now go to the server, which holds the connection frozen. Our copy
  // leaves without a word (closing a socket in repair mode sends nothing); then the agent goes.
  ::close(fd_);
  fd_ = -1;
  handoff_->link->go(handoff_->id);
  ++w_.counters().handoffs;
  status_ = 0;  // the server answers; the access log shows 0 and the server's address
  log_access();
  end_handoff();
  close();
}

void Session::handoff_fallback(std::string_view why) {
  const std::string agent = handoff_->link->agent().text;
  end_handoff();
  ++w_.counters().handoff_fallbacks;
  std::string error;
  if (!handoff::resume(fd_, error)) {
    spdlog::error("handoff: {}: cannot resume the connection: {}", client_, error);
    return close();
  }
  spdlog::warn("handoff: {} not handed to agent {}: {}; proxying", client_, agent, why);
  start_upstream();
}

void Session::end_handoff() {
  pool_->balancer.finished(handoff_->server);
  if (pool_->queue_head) w_.wake_queue(*pool_);
  handoff_.reset();
}

// ---------------------------------------------------------------------------------------------
// Idle connections (proxy/idle_connection.h)

bool Session::park() {
  if (listener_.fd < 0 && !w_.draining() && !closing_) {
    // A reload removed the listener and closed its idle connections (they have no route table
    // left): this one ends too, now that it is idle.
    close();
    return true;
  }
  // Only a plain HTTP connection with nothing left of the last exchange: no bytes buffered (the
  // head buffers are given back), no operation in flight, no upstream, no queue.
  if (tls_ || listener_.tcp || closing_ || inflight_ > 0 || up_ || in_ || held_count_ > 0 ||
      queued_in_ || tunnel_ || req_splice_.active || resp_splice_.active || draining_ ||
      w_.draining()) {
    return false;
  }
  w_.hold_idle(listener_, fd_, reinterpret_cast<const sockaddr*>(&peer_), client_splice_ready_,
               w_.client_idle_timeouts);
  fd_ = -1;
  client_timer_.disarm();
  upstream_timer_.disarm();
  send_timer_.disarm();
  view_.reset();  // a free Session must not keep a snapshot alive
  table_ = -1;
  closing_ = freed_ = true;  // nothing may run on this session until reuse()
  w_.session_parked(this);
  return true;
}

void Session::adopt_peer(const IdleConnection& parked) {
  // The socket has TCP_NODELAY already, and perhaps the splice options.
  peer_ = {};
  std::memcpy(&peer_, parked.peer(), parked.peer_len());
  std::strcpy(client_, "-");
  client_ip_len_ = 0;
  if (parked.peer_len() > 0) format_address(peer_, client_, sizeof(client_), client_ip_len_);
  client_splice_ready_ = parked.splice_ready();
}

void Session::reuse(int fd, const IdleConnection& parked) {
  fd_ = fd;
  adopt_peer(parked);
  closing_ = freed_ = false;
  req_.reset(nullptr);  // nothing of the last connection's messages
  bytes_in_ = 0;
  last_failure_status_ = 503;
}

void Session::resume(const char* data, std::size_t n, int bid) {
  // As start() for a plain listener, with the bytes that woke the connection already here.
  adopt_view();
  on_client_data(data, n, bid);
}

}  // namespace switchyard::proxy
