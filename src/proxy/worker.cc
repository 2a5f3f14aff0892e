#include "proxy/worker.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "http/error_page.h"
#include "proxy/io_ops.h"
#include "proxy/session.h"

namespace switchyard::proxy {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kBufferCount = 1024;
constexpr std::size_t kBufferSize = 16 * 1024;
constexpr unsigned kTickMs = 50;

}  // namespace

class AcceptOp final : public IoOp {
 public:
  AcceptOp(Worker& w, ListenerRuntime& l) : w_(w), l_(l) {}
  void complete(int res, std::uint32_t flags) override { w_.on_accept(l_, res, flags); }

 private:
  Worker& w_;
  ListenerRuntime& l_;
};

class ControlOp final : public IoOp {
 public:
  explicit ControlOp(Worker& w) : w_(w) {}
  void complete(int, std::uint32_t) override { w_.on_control(); }

 private:
  Worker& w_;
};

Worker::Worker(int id, std::shared_ptr<const config::Config> config, std::vector<int> listen_fds)
    : id_(id), config_(std::move(config)), listen_fds_(std::move(listen_fds)) {
  const config::Timeouts& t = config_->timeouts;
  client_header_timeouts.set_duration(t.client_header);
  client_idle_timeouts.set_duration(t.client_idle);
  client_body_timeouts.set_duration(t.client_body);
  upstream_connect_timeouts.set_duration(t.upstream_connect);
  upstream_response_timeouts.set_duration(t.upstream_response);
  upstream_idle_timeouts.set_duration(t.upstream_idle);
}

Worker::~Worker() {
  for (int fd : listen_fds_) {
    if (fd >= 0) ::close(fd);
  }
  if (control_fd_ >= 0) ::close(control_fd_);
  for (auto* l : accept_ops_) delete l;
}

std::string Worker::init() {
  if (std::string err = ring_.init(kRingEntries); !err.empty()) return err;
  if (std::string err = buffers_.init(ring_, kBufferCount, kBufferSize); !err.empty()) return err;
  head_buffer_size_ = config_->limits.max_header_bytes + kBufferSize;
  control_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (control_fd_ < 0) return std::string("eventfd: ") + std::strerror(errno);
  control_op_ = std::make_unique<ControlOp>(*this);

  for (const auto& [name, pool] : config_->pools)
    pools_.push_back(std::make_unique<PoolRuntime>(pool));
  listeners_.resize(config_->listeners.size());
  for (std::size_t i = 0; i < config_->listeners.size(); ++i) {
    ListenerRuntime& l = listeners_[i];
    l.cfg = &config_->listeners[i];
    l.fd = listen_fds_[i];
    const config::RouteTable& table = config_->routes.at(l.cfg->routes);
    if (!table.routes.empty()) {
      const config::Route& first = table.routes.front();
      if (first.respond) {
        l.respond = &*first.respond;
      } else if (first.pool) {
        for (auto& p : pools_) {
          if (p->cfg->name == *first.pool) l.pool = p.get();
        }
      }
    }
    auto* op = new AcceptOp(*this, l);
    accept_ops_.push_back(op);
    l.accept = op;
  }
  sessions_.reserve(config_->limits.max_connections);
  return {};
}

void Worker::request_shutdown() {
  shutdown_requested_.store(true, std::memory_order_release);
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof(one));
}

void Worker::arm_accept(ListenerRuntime& l) {
  io_uring_sqe* sqe = ring_.sqe(l.accept);
  io_uring_prep_multishot_accept(sqe, l.fd, nullptr, nullptr, SOCK_CLOEXEC);
}

void Worker::arm_control_read() {
  io_uring_sqe* sqe = ring_.sqe(control_op_.get());
  io_uring_prep_read(sqe, control_fd_, &control_value_, sizeof(control_value_), 0);
}

void Worker::on_control() {
  if (shutdown_requested_.load(std::memory_order_acquire) && !draining_) begin_drain();
  if (!draining_) arm_control_read();
}

void Worker::on_accept(ListenerRuntime& l, int res, std::uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE) && !draining_ && l.fd >= 0) arm_accept(l);
  if (res < 0) {
    if (res != -ECANCELED) spdlog::warn("worker {}: accept: {}", id_, std::strerror(-res));
    return;
  }
  ++counters_.accepted;
  if (draining_ || sessions_.size() >= config_->limits.max_connections) {
    // Over the limit: answer at once rather than leave the client waiting on a full queue.
    ++counters_.rejected_over_limit;
    std::string out;
    http::write_error_response(503, out);
    [[maybe_unused]] ssize_t n = ::send(res, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::close(res);
    return;
  }
  auto* s = new Session(*this, l, res);
  s->index = sessions_.size();
  sessions_.push_back(s);
  s->start();
}

void Worker::session_closed(Session* s) {
  Session* last = sessions_.back();
  sessions_[s->index] = last;
  last->index = s->index;
  sessions_.pop_back();
  dead_.push_back(s);
}

std::unique_ptr<char[]> Worker::take_head_buffer() {
  if (free_head_buffers_.empty()) return std::make_unique<char[]>(head_buffer_size_);
  auto b = std::move(free_head_buffers_.back());
  free_head_buffers_.pop_back();
  return b;
}

void Worker::give_head_buffer(std::unique_ptr<char[]> b) {
  // Keep a bounded number for reuse; beyond that, give memory back after a burst.
  if (b && free_head_buffers_.size() < 1024) free_head_buffers_.push_back(std::move(b));
}

void Worker::begin_drain() {
  draining_ = true;
  drain_deadline_ = now_ + config_->timeouts.shutdown;
  for (ListenerRuntime& l : listeners_) {
    io_uring_sqe* sqe = ring_.sqe(nullptr);
    io_uring_prep_cancel_fd(sqe, l.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_submit(ring_.raw());
    ::close(l.fd);
    l.fd = -1;
  }
  for (std::size_t i = 0; i < listen_fds_.size(); ++i) listen_fds_[i] = -1;
  for (auto& p : pools_) {
    for (auto& list : p->idle) {
      while (!list.empty()) list.back()->close();
    }
  }
  // drain() may close sessions, which reorders sessions_: iterate over a copy.
  std::vector<Session*> all = sessions_;
  for (Session* s : all) s->drain();
}

void Worker::tick() {
  client_header_timeouts.expire(now_);
  client_idle_timeouts.expire(now_);
  client_body_timeouts.expire(now_);
  upstream_connect_timeouts.expire(now_);
  upstream_response_timeouts.expire(now_);
  upstream_idle_timeouts.expire(now_);
  if (draining_ && now_ >= drain_deadline_ && !sessions_.empty()) {
    spdlog::warn("worker {}: shutdown timeout, closing {} connections", id_, sessions_.size());
    std::vector<Session*> all = sessions_;
    for (Session* s : all) s->abort();
  }
}

void Worker::run() {
  now_ = Clock::now();
  for (ListenerRuntime& l : listeners_) arm_accept(l);
  arm_control_read();
  if (shutdown_requested_.load(std::memory_order_acquire)) begin_drain();
  std::vector<RecvOp*> retry;
  while (!draining_ || !sessions_.empty() || live_upstreams_ > 0) {
    ring_.run_once(kTickMs);
    now_ = Clock::now();
    for (Session* s : dead_) delete s;
    dead_.clear();
    if (!starved_.empty() && buffers_.available() > 0) {
      retry.swap(starved_);
      for (RecvOp* op : retry) op->resubmit();
      retry.clear();
    }
    tick();
  }
  // Flush the last cancellations.
  io_uring_submit(ring_.raw());
}

}  // namespace switchyard::proxy
