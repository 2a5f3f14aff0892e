// An idle plain-HTTP client connection, held without a Session.
//
// Most client connections are idle most of the time: accepted and silent so far, or kept alive
// between requests. Issue 5 asks for at most 0.5 KiB of memory per idle keep-alive connection,
// and a Session (parsers, operations, timers, TLS, splice and tunnel state) is ~2.8 KiB before
// anything it allocates. So, as HAProxy and NGINX do, an idle connection is only this small
// object: its socket, listener, peer address, one receive armed on the worker's provided-buffer
// ring (so no buffer is held while nothing arrives), its idle deadline and the worker's list
// links (drain and reload close what is on the list). When bytes arrive the worker takes a Session
// from its free list and hands it the socket and the received buffer (Worker::resume); a Session
// whose exchange ends with nothing pending, buffered or in flight parks the connection here again
// and goes back to the free list (Session::park). sizeof is checked below.
//
// Plain listeners only: a TLS connection's state lives in its SSL object, so TLS sessions stay
// whole; `mode: tcp` connections are tunnels, never idle in this sense.
//
// Worker thread only. The object is owned by the worker: it frees itself (Worker::idle_freed)
// once closed and its receive has completed; handing over to a Session frees it at once.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "proxy/deadline.h"
#include "proxy/io_ops.h"

namespace switchyard::proxy {

class Worker;
struct ListenerRuntime;

class IdleConnection {
 public:
  // Takes ownership of `fd`. `peer` null: read it with getpeername and set TCP_NODELAY (a
  // connection just accepted); otherwise the socket comes from a Session that did both.
  IdleConnection(Worker& w, ListenerRuntime& listener, int fd, const sockaddr* peer,
                 bool splice_ready);
  IdleConnection(const IdleConnection&) = delete;
  IdleConnection& operator=(const IdleConnection&) = delete;

  // Arms the receive and the deadline (`timeouts`: client_header for a new connection,
  // client_idle between requests). Expiry closes the connection without a word, as a Session
  // does when nothing of a request has arrived.
  void wait(DeadlineList& timeouts);
  // Closes the connection (drain, reload, timeout); the object goes once its receive completes.
  void close();

  ListenerRuntime& listener() const { return *listener_; }
  int fd() const { return fd_; }
  // The peer address (family 0 if unknown) and its length.
  const sockaddr* peer() const { return &peer_.sa; }
  socklen_t peer_len() const;
  bool splice_ready() const { return splice_ready_; }

  // The worker's list of open idle connections.
  IdleConnection* prev = nullptr;
  IdleConnection* next = nullptr;

 private:
  static void on_recv(void* self, int res, std::uint32_t flags);
  static void on_timeout(void* self, int tag);
  void free();

  Worker& w_;
  ListenerRuntime* listener_;
  RecvOp recv_;
  Deadline timer_;
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } peer_{};
  int fd_;
  bool splice_ready_;  // fd_ prepared by splice::prepare_splice_socket (kept for the Session)
  bool closing_ = false;
};

// What the budget leaves room for, with malloc's 16-byte chunk header.
static_assert(sizeof(IdleConnection) <= 256, "an idle connection must stay small");

}  // namespace switchyard::proxy
