#include "proxy/idle_connection.h"

#include <netinet/tcp.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "proxy/session.h"
#include "proxy/worker.h"

namespace switchyard::proxy {
namespace {

// Kept for reuse, so that a connection going idle and busy again allocates nothing in steady
// state: parked Sessions (whole, with the capacity their parsers and strings grew to) and the
// storage of freed IdleConnections. Bounded: after a burst (thousands of requests at once) the
// rest goes back to malloc.
constexpr std::size_t kMaxFreeSessions = 64;
constexpr std::size_t kMaxFreeIdle = 1024;

}  // namespace

// ---------------------------------------------------------------------------------------------
// IdleConnection

IdleConnection::IdleConnection(Worker& w, ListenerRuntime& listener, int fd, const sockaddr* peer,
                               bool splice_ready)
    : w_(w),
      listener_(&listener),
      recv_(this, &IdleConnection::on_recv),
      timer_(this, 0, &IdleConnection::on_timeout),
      fd_(fd),
      splice_ready_(splice_ready) {
  if (peer) {
    std::size_t len = peer->sa_family == AF_INET    ? sizeof(sockaddr_in)
                      : peer->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
                                                    : 0;
    std::memcpy(&peer_, peer, len);
    return;
  }
  socklen_t len = sizeof(peer_);
  if (::getpeername(fd_, &peer_.sa, &len) != 0) peer_.sa.sa_family = AF_UNSPEC;
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

socklen_t IdleConnection::peer_len() const {
  if (peer_.sa.sa_family == AF_INET) return sizeof(sockaddr_in);
  if (peer_.sa.sa_family == AF_INET6) return sizeof(sockaddr_in6);
  return 0;
}

void IdleConnection::wait(DeadlineList& timeouts) {
  timeouts.arm(timer_, w_.now());
  recv_.submit(w_, fd_);
}

void IdleConnection::on_timeout(void* self, int) {
  static_cast<IdleConnection*>(self)->close();
}

void IdleConnection::close() {
  if (closing_) return;
  closing_ = true;
  timer_.disarm();
  w_.idle_closed(this);
  if (!recv_.in_flight()) return free();
  // Cancelled by identity (the socket stays open until the completion, so its number cannot be
  // reused meanwhile); a receive parked for a buffer (ENOBUFS) reports -ECANCELED instead.
  recv_.cancel();
  io_uring_sqe* sqe = w_.ring().sqe(nullptr);
  io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(static_cast<IoOp*>(&recv_)), 0);
}

void IdleConnection::on_recv(void* self, int res, std::uint32_t flags) {
  auto* c = static_cast<IdleConnection*>(self);
  int bid = RecvOp::has_buffer(flags) ? RecvOp::buffer_id(flags) : -1;
  if (c->closing_ || res <= 0) {
    // Closed by us meanwhile, or by the client (EOF, reset): nothing to answer.
    if (bid >= 0) c->w_.buffers().recycle(static_cast<std::uint16_t>(bid));
    if (c->closing_) return c->free();
    return c->close();
  }
  Worker& w = c->w_;
  Session* s = w.resume(*c);  // takes the socket over; `c` is gone
  s->resume(w.buffers().data(static_cast<std::uint16_t>(bid)), static_cast<std::size_t>(res), bid);
}

void IdleConnection::free() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  w_.idle_freed(this);
}

// ---------------------------------------------------------------------------------------------
// Worker: idle connections and the Session free list

Session* Worker::new_session(ListenerRuntime& l, int fd, const IdleConnection* parked) {
  if (parked) {
    // The most recently parked Session of the same listener (a Session is bound to one).
    for (std::size_t i = free_sessions_.size(); i-- > 0;) {
      Session* s = free_sessions_[i];
      if (&s->listener() != &l) continue;
      free_sessions_[i] = free_sessions_.back();
      free_sessions_.pop_back();
      s->reuse(fd, *parked);
      return s;
    }
  }
  return new Session(*this, l, fd, parked);
}

void Worker::keep_parked_sessions() {
  for (Session* s : parked_sessions_) {
    if (free_sessions_.size() < kMaxFreeSessions && !snapshot_changed_) {
      free_sessions_.push_back(s);
    } else {
      delete s;
    }
  }
  parked_sessions_.clear();
  snapshot_changed_ = false;
}

void Worker::drop_free_sessions() {
  for (Session* s : free_sessions_) delete s;
  free_sessions_.clear();
}

void Worker::hold_idle(ListenerRuntime& l, int fd, const sockaddr* peer, bool splice_ready,
                       DeadlineList& timeouts) {
  void* mem;
  if (free_idle_.empty()) {
    mem = ::operator new(sizeof(IdleConnection));
  } else {
    mem = free_idle_.back();
    free_idle_.pop_back();
  }
  auto* c = new (mem) IdleConnection(*this, l, fd, peer, splice_ready);
  ++idle_live_;
  ++idle_open_;
  c->next = idle_head_;
  if (idle_head_) idle_head_->prev = c;
  idle_head_ = c;
  c->wait(timeouts);
}

void Worker::unlink_idle(IdleConnection* c) {
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    idle_head_ = c->next;
  }
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --idle_open_;
}

void Worker::idle_closed(IdleConnection* c) {
  unlink_idle(c);
  if (ListenerCounters* ls = c->listener().stats) --ls->active;
}

void Worker::idle_freed(IdleConnection* c) {
  c->~IdleConnection();
  --idle_live_;
  if (free_idle_.size() < kMaxFreeIdle) {
    free_idle_.push_back(c);
  } else {
    ::operator delete(c);
  }
}

Session* Worker::resume(IdleConnection& c) {
  // Still one connection (limits, gauges, the listener's active count): it changes holder.
  Session* s = new_session(c.listener(), c.fd(), &c);
  s->index = sessions_.size();
  sessions_.push_back(s);
  unlink_idle(&c);
  idle_freed(&c);  // not IdleConnection::free(): the socket is the session's now
  return s;
}

void Worker::session_parked(Session* s) {
  // As session_closed, but the connection lives on (as an IdleConnection): still counted.
  Session* last = sessions_.back();
  sessions_[s->index] = last;
  last->index = s->index;
  sessions_.pop_back();
  parked_sessions_.push_back(s);
}

void Worker::close_idle(const ListenerRuntime* only) {
  IdleConnection* c = idle_head_;
  while (c) {
    IdleConnection* next = c->next;
    if (!only || &c->listener() == only) c->close();
    c = next;
  }
}

void Worker::free_storage() {
  keep_parked_sessions();
  drop_free_sessions();
  for (void* p : free_idle_) ::operator delete(p);
  free_idle_.clear();
}

}  // namespace switchyard::proxy
