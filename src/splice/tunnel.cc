#include "splice/tunnel.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_bytes_acked (glibc's lacks it)
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/worker.h"
#include "splice/splice_socket.h"

namespace switchyard::splice {
namespace {

enum Timer { kIdleTimer, kDrainTimer, kCheckTimer };

// Bytes ever queued for sending on `fd`: acknowledged plus still in the send queue. Grows by
// exactly the bytes written (by us or by the kernel's redirect), whatever the segmentation.
std::uint64_t queued_total(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
  int outq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0) outq = 0;
  return ti.tcpi_bytes_acked + static_cast<std::uint64_t>(outq > 0 ? outq : 0);
}

void set_reset_on_close(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

}  // namespace

Tunnel::Dir::Dir(Tunnel* t, int index)
    : t(t),
      index(index),
      recv(this, &Tunnel::on_recv_cb),
      send(this, &Tunnel::on_send_cb),
      poll(this, &Tunnel::on_poll_cb) {}

Tunnel::Tunnel(proxy::Worker& w, int client_fd, int upstream_fd, std::string to_upstream,
               std::string to_client, const SockmapEngine* sockmap, void* owner, Done done)
    : w_(w),
      fds_{client_fd, upstream_fd},
      dirs_{Dir(this, 0), Dir(this, 1)},
      sockmap_(sockmap),
      owner_(owner),
      done_(done),
      idle_timer_(this, kIdleTimer, &Tunnel::on_timer),
      drain_timer_(this, kDrainTimer, &Tunnel::on_timer),
      check_timer_(this, kCheckTimer, &Tunnel::on_timer) {
  dirs_[0].src = client_fd;
  dirs_[0].dst = upstream_fd;
  dirs_[0].pending = std::move(to_upstream);
  dirs_[1].src = upstream_fd;
  dirs_[1].dst = client_fd;
  dirs_[1].pending = std::move(to_client);
}

Tunnel::~Tunnel() {
  // Normally closed by maybe_done(); an owner destroyed early must not leak descriptors.
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void Tunnel::start() {
  ++w_.counters().tunnels;
  w_.counters().tunnels_open.add(1);
  w_.tunnel_idle_timeouts.arm(idle_timer_, w_.now());
  bool waiting = false;
  for (Dir& d : dirs_) {
    if (d.pending.empty()) continue;
    d.send.clear();
    d.send.add(d.pending.data(), d.pending.size());
    d.sending_pending = true;
    ++inflight_;
    d.send.submit(w_, d.dst);
    waiting = true;
  }
  if (!waiting) begin();
}

// The bytes read before the tunnel are out: hand the sockets to the kernel (or start copying).
void Tunnel::begin() {
  if (closing_) return;
  if (sockmap_ && predrain_rounds_ < kPredrainRounds) {
    // Insert the sockets with (nearly) empty receive queues: bytes queued before the insertion
    // are read here and sent first, a few rounds while the peers keep sending. With megabytes
    // queued at insertion, this kernel (6.18) was seen to redirect a segment twice in about
    // one of ten 1 GiB transfers; with empty queues, never (see docs/configuration.md).
    ++predrain_rounds_;
    bool any = false;
    for (Dir& d : dirs_) {
      d.pending.clear();
      char buf[16 * 1024];
      while (d.pending.size() < 4 * 1024 * 1024) {
        ssize_t n = ::recv(d.src, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) {
          if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(errno, d.index);
          break;  // EOF stays visible to the watcher (POLLRDHUP is level-triggered)
        }
        d.pending.append(buf, static_cast<std::size_t>(n));
      }
      if (d.pending.empty()) continue;
      any = true;
      d.send.clear();
      d.send.add(d.pending.data(), d.pending.size());
      d.sending_pending = true;
      ++inflight_;
      d.send.submit(w_, d.dst);
    }
    if (any) return;  // on_send calls begin() again once both are out
  }
  if (sockmap_) {
    cookies_[0] = SockmapEngine::cookie_of(fds_[0]);
    cookies_[1] = SockmapEngine::cookie_of(fds_[1]);
    for (Dir& d : dirs_) {
      d.dst_base = queued_total(d.dst);
      d.user_at_base = d.user;
    }
    std::string err;
    if (cookies_[0] && cookies_[1] && sockmap_->add(side(0), side(1), err)) {
      engine_ = Engine::kSockmap;
      in_map_ = true;
      ++w_.counters().tunnels_sockmap;
      // Did a segment race the second insertion (see SockmapEngine::add)? Look on the next tick.
      w_.timeouts_for(std::chrono::milliseconds(1)).arm(check_timer_, w_.now());
    } else {
      // Map full or the kernel refused these sockets: this tunnel splices or copies.
      spdlog::debug("tunnel: sockmap not used ({})", err);
    }
  }
  if (!in_map_ && w_.config().splice.tunnels == config::Splice::TunnelEngine::kSplice &&
      start_splice()) {
    return;
  }
  for (Dir& d : dirs_) arm_recv(d);
}

// The splice engine: a pipe per direction, each pumped until its source ends. False (nothing
// changed but prepare_splice_socket's socket options, harmless to copying) when no pipe can be had:
// the tunnel copies then.
bool Tunnel::start_splice() {
  const std::size_t lowat = w_.config().splice.notsent_lowat;
  if (!prepare_splice_socket(fds_[0], lowat) || !prepare_splice_socket(fds_[1], lowat)) {
    return false;
  }
  PipePool& pool = w_.pipes();
  pool.set_size(w_.config().splice.pipe_size);
  for (Dir& d : dirs_) {
    int err = 0;
    d.pipe = pool.acquire(err);
    if (err != 0) {
      spdlog::debug("tunnel: no pipe ({}); copying", std::strerror(-err));
      for (Dir& e : dirs_) release_pipe(e);
      return false;
    }
  }
  if (pool.take_size_refused()) {
    spdlog::warn("splice: the kernel refused {}-byte pipes (pipe-max-size); using {}-byte pipes",
                 w_.config().splice.pipe_size, dirs_[0].pipe.capacity());
  }
  engine_ = Engine::kSplice;
  ++w_.counters().tunnels_splice;
  for (Dir& d : dirs_) d.pump.start_stream(d.src, d.dst, d.pipe);
  for (Dir& d : dirs_) {
    if (closing_) break;
    run_pump(d);
  }
  return true;
}

void Tunnel::release_pipe(Dir& d) {
  // A pipe still holding bytes (the tunnel ended halfway) is closed, not reused.
  if (d.pipe.valid()) w_.pipes().release(std::move(d.pipe), d.pump.in_pipe() == 0);
}

// Splices d's bytes until it has to wait, then polls for the readiness it needs.
void Tunnel::run_pump(Dir& d) {
  if (closing_ || d.eof) return;
  std::uint64_t moved = 0;
  BodyPump::Result r = d.pump.run(moved);
  if (moved) {
    d.spliced += moved;
    w_.counters().splice_bytes += moved;
  }
  int fd = -1;
  unsigned events = 0;
  switch (r) {
    case BodyPump::Result::kDone:
    case BodyPump::Result::kSourceClosed:  // (not for a stream)
      // The source ended and everything it sent is on the destination: pass the FIN on.
      release_pipe(d);
      return on_eof(d);
    case BodyPump::Result::kWantRead:
      fd = d.src;
      events = POLLIN;
      break;
    case BodyPump::Result::kWantWrite:
      fd = d.dst;
      events = POLLOUT;
      break;
    case BodyPump::Result::kSourceError:
      spdlog::debug("tunnel: splice from the {} failed", d.index == 0 ? "client" : "upstream");
      return fail(d.pump.error(), d.index);
    case BodyPump::Result::kSinkError:
      spdlog::debug("tunnel: splice to the {} failed", d.index == 0 ? "upstream" : "client");
      return fail(d.pump.error(), 1 - d.index);
  }
  ++inflight_;
  io_uring_sqe* sqe = w_.ring().sqe(&d.poll);
  io_uring_prep_poll_add(sqe, fd, events);
}

void Tunnel::arm_recv(Dir& d) {
  if (closing_ || d.eof) return;
  if (in_map_) {
    // The bytes go through the kernel; watch for the end of the stream and for errors only.
    // Not a receive: on a sockmap socket the kernel's readiness test counts bytes the verdict
    // program already took (POLLIN stays set), so io_uring's receive finds nothing, falls back
    // to a blocking receive in an io-wq thread, and that one is not woken by a FIN.
    if (d.watching) return;
    d.watching = true;
    ++inflight_;
    io_uring_sqe* sqe = w_.ring().sqe(&d.poll);
    io_uring_prep_poll_add(sqe, d.src, POLLRDHUP);
    return;
  }
  if (d.recv.in_flight()) return;
  ++inflight_;
  d.recv.submit(w_, d.src);
}

// Sockmap: moves bytes the program handed to userspace (passthrough, see tunnel.bpf.c) on to the
// peer, then reports EOF if the source ended. Non-blocking reads; one send at a time.
void Tunnel::drain_passed(Dir& d) {
  if (closing_ || d.eof || d.send.in_flight()) return;
  d.pending.clear();
  char buf[16 * 1024];
  bool ended = false;
  while (d.pending.size() < 1024 * 1024) {
    ssize_t n = ::recv(d.src, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      d.pending.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) ended = true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(errno, d.index);
    break;
  }
  if (!d.pending.empty()) {
    d.send.clear();
    d.send.add(d.pending.data(), d.pending.size());
    d.sending_passed = true;
    ++inflight_;
    d.send.submit(w_, d.dst);  // on_send comes back here
    return;
  }
  if (ended) return on_eof(d);
  arm_recv(d);
}

void Tunnel::on_recv_cb(void* self, int res, std::uint32_t flags) {
  auto* d = static_cast<Dir*>(self);
  d->t->on_recv(*d, res, flags);
}

void Tunnel::on_send_cb(void* self, int res, std::uint32_t) {
  auto* d = static_cast<Dir*>(self);
  d->t->on_send(*d, res);
}

void Tunnel::on_poll_cb(void* self, int res, std::uint32_t) {
  auto* d = static_cast<Dir*>(self);
  d->t->on_poll(*d, res);
}

void Tunnel::on_recv(Dir& d, int res, std::uint32_t flags) {
  --inflight_;
  int bid = proxy::RecvOp::has_buffer(flags) ? proxy::RecvOp::buffer_id(flags) : -1;
  if (closing_) {
    if (bid >= 0) w_.buffers().recycle(static_cast<std::uint16_t>(bid));
    return maybe_done();
  }
  if (res == -EAGAIN || res == -EINTR) {
    // A wake-up without bytes for us (io_uring retried after a poll and found nothing).
    // Nothing happened; wait again.
    return arm_recv(d);
  }
  if (res < 0) {
    if (bid >= 0) w_.buffers().recycle(static_cast<std::uint16_t>(bid));
    spdlog::debug("tunnel: receive on the {} failed", d.index == 0 ? "client" : "upstream");
    return fail(-res, d.index);
  }
  if (res == 0) {
    if (bid >= 0) w_.buffers().recycle(static_cast<std::uint16_t>(bid));
    return on_eof(d);
  }
  // Copy engine, or bytes the BPF program handed to userspace: send them on.
  d.bid = bid;
  d.send.clear();
  d.send.add(w_.buffers().data(static_cast<std::uint16_t>(bid)), static_cast<std::size_t>(res));
  ++inflight_;
  d.send.submit(w_, d.dst);
}

void Tunnel::on_send(Dir& d, int res) {
  --inflight_;
  if (d.bid >= 0) {
    w_.buffers().recycle(static_cast<std::uint16_t>(d.bid));
    d.bid = -1;
  }
  bool was_pending = d.sending_pending;
  d.sending_pending = false;
  bool was_passed = d.sending_passed;
  d.sending_passed = false;
  if (closing_) return maybe_done();
  // The failed socket is dst: reset the source side.
  if (res < 0) {
    spdlog::debug("tunnel: send to the {} failed", d.index == 0 ? "upstream" : "client");
    return fail(-res, 1 - d.index);
  }
  d.user += static_cast<std::uint64_t>(res);
  w_.counters().copy_bytes += static_cast<std::uint64_t>(res);
  if (was_pending) {
    d.pending = std::string();
    if (!dirs_[0].sending_pending && !dirs_[1].sending_pending) begin();
    return;
  }
  if (was_passed) return drain_passed(d);
  arm_recv(d);
}

void Tunnel::on_eof(Dir& d) {
  d.eof = true;
  try_shutdown(d);
}

// Passes d's FIN on once every byte d's source sent is queued on d's destination.
void Tunnel::try_shutdown(Dir& d) {
  if (closing_ || d.shut) return;
  if (in_map_) {
    refresh_counters();
    std::uint64_t target = d.dst_base + d.kernel + (d.user - d.user_at_base);
    std::uint64_t queued = queued_total(d.dst);
    if (queued < target) {
      if (!drain_timer_.armed()) {
        spdlog::debug("tunnel: direction {} ended; {} of {} bytes queued on the peer", d.index,
                      queued, target);
      }
      // Still in the kernel's redirect queue: look again shortly (each worker tick).
      w_.timeouts_for(std::chrono::milliseconds(1)).arm(drain_timer_, w_.now());
      return;
    }
  }
  ::shutdown(d.dst, SHUT_WR);
  d.shut = true;
  if (dirs_[0].shut && dirs_[1].shut) {
    clean_ = true;
    return finish();
  }
  // The source said it is done sending, but may still reset (and then the other direction has
  // nobody to deliver to): watch it for an error.
  ++inflight_;
  io_uring_sqe* sqe = w_.ring().sqe(&d.poll);
  io_uring_prep_poll_add(sqe, d.src, POLLERR);
}

void Tunnel::on_poll(Dir& d, int res) {
  --inflight_;
  if (closing_) return maybe_done();
  // Splice: the readiness the pump waited for (errors and hang-ups included: the pump's next
  // splice reports them).
  if (engine_ == Engine::kSplice && !d.eof) return run_pump(d);
  if (d.watching) {
    d.watching = false;
    if (res < 0) return fail(-res, d.index);
    if (res & POLLERR) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(d.src, SOL_SOCKET, SO_ERROR, &err, &len);
      return fail(err ? err : ECONNRESET, d.index);
    }
    return drain_passed(d);  // POLLRDHUP/POLLHUP: reads what is left, then EOF
  }
  if (res > 0 && (res & POLLERR)) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(d.src, SOL_SOCKET, SO_ERROR, &err, &len);
    return fail(err ? err : ECONNRESET, d.index);
  }
  // POLLHUP: both directions of that socket are shut; the other direction finishes the tunnel.
}

void Tunnel::on_timer(void* self, int tag) {
  auto* t = static_cast<Tunnel*>(self);
  if (t->closing_) return;
  if (tag == kCheckTimer) return t->on_check();
  if (tag == kDrainTimer) {
    for (Dir& d : t->dirs_) {
      if (d.eof && !d.shut) t->try_shutdown(d);
      if (t->closing_) return;
    }
    return;
  }
  std::uint64_t p = t->progress();
  if (p != t->last_progress_) {
    t->last_progress_ = p;
    t->w_.tunnel_idle_timeouts.arm(t->idle_timer_, t->w_.now());
    return;
  }
  spdlog::debug("tunnel idle for {} ms: closing", t->w_.tunnel_idle_timeouts.duration().count());
  t->finish();
}

// Sockmap, on the first tick and then every second: publishes the kernel's byte counts to the
// worker's counters (metrics), and serves a side whose bytes the program handed to userspace (a
// segment raced the second insertion, see SockmapEngine::add) on every tick from then on.
void Tunnel::on_check() {
  if (!in_map_) return;
  bool passthrough = false;
  for (Dir& d : dirs_) {
    SockmapEngine::Counts c = sockmap_->read(side(d.index));
    d.kernel = c.redirected;
    if (c.passed > 0 && !d.eof) {
      passthrough = true;
      drain_passed(d);
      if (closing_) return;
    }
  }
  publish_kernel_bytes();
  auto next = passthrough ? std::chrono::milliseconds(1) : std::chrono::milliseconds(1000);
  w_.timeouts_for(next).arm(check_timer_, w_.now());
}

void Tunnel::publish_kernel_bytes() {
  std::uint64_t k = kernel_bytes();
  if (k > counted_kernel_) {
    w_.counters().sockmap_bytes += k - counted_kernel_;
    counted_kernel_ = k;
  }
}

void Tunnel::refresh_counters() {
  if (!in_map_) return;
  for (int i = 0; i < 2; ++i) {
    // Side i's received bytes went out on the other socket: direction i.
    dirs_[i].kernel = sockmap_->read(side(i)).redirected;
  }
  publish_kernel_bytes();
}

// Anything that shows the tunnel is alive: bytes forwarded either way, or peers acknowledging
// bytes still being delivered.
std::uint64_t Tunnel::progress() {
  refresh_counters();
  return dirs_[0].total() + dirs_[1].total() + queued_total(fds_[0]) + queued_total(fds_[1]);
}

// An error on socket `failed` (0 client, 1 upstream): a reset is passed on as a reset.
void Tunnel::fail(int err, int failed) {
  if (closing_) return;
  if (err == ECONNRESET || err == EPIPE) set_reset_on_close(fds_[failed == 0 ? 1 : 0]);
  spdlog::debug("tunnel: {} side failed: {}", failed == 0 ? "client" : "upstream",
                std::strerror(err));
  finish();
}

void Tunnel::abort() {
  if (closing_) return;
  finish();
}

void Tunnel::finish() {
  if (closing_) return;
  closing_ = true;
  idle_timer_.disarm();
  drain_timer_.disarm();
  check_timer_.disarm();
  if (in_map_) {
    refresh_counters();
    sockmap_->remove(side(0), side(1));
    in_map_ = false;
  }
  for (Dir& d : dirs_) {
    d.recv.cancel();
    release_pipe(d);  // the pumps' polls are cancelled below; no splice runs after this
  }
  for (int fd : fds_) {
    io_uring_sqe* sqe = w_.ring().sqe(nullptr);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  }
  // `done` is always reported from a completion, never from inside abort() or a caller's
  // stack: a no-op operation guarantees one even when nothing else is in flight.
  ++inflight_;
  io_uring_sqe* sqe = w_.ring().sqe(&dirs_[0].poll);
  io_uring_prep_nop(sqe);
}

void Tunnel::maybe_done() {
  if (!closing_ || inflight_ > 0 || finished_) return;
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  finished_ = true;
  w_.counters().tunnels_open.add(-1);
  done_(owner_);
}

}  // namespace switchyard::splice
