#include "proxy/worker.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "http/error_page.h"
#include "proxy/handoff_link.h"
#include "proxy/idle_connection.h"
#include "proxy/io_ops.h"
#include "proxy/session.h"

namespace switchyard::proxy {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kBufferCount = 1024;
constexpr std::size_t kBufferSize = 16 * 1024;
constexpr unsigned kTickMs = 50;
// Kept pipes are closed after 2 s without a body to splice (splice/pipe_pool.h).
constexpr unsigned kPipeIdleTicks = 2000 / kTickMs;
// Free head buffers kept for reuse. While requests keep coming, up to kMaxFreeHeadBuffersBusy:
// with many keep-alive connections the number in use swings widely from one moment to the next
// (each takes two per request and gives them back between requests), and mapping and unmapping
// them at that rate cost ~20 % more CPU per small request. Once none has been taken for
// kHeadBufferQuiet, the list shrinks to kMaxFreeHeadBuffers, so a worker's memory comes back
// after a burst.
constexpr std::size_t kMaxFreeHeadBuffers = 64;
constexpr std::size_t kMaxFreeHeadBuffersBusy = 1024;
constexpr auto kHeadBufferQuiet = std::chrono::milliseconds(100);

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

int WorkerView::table_for(std::string_view listener) const {
  for (const config::Listener& l : config().listeners) {
    if (l.name == listener) return snapshot->rules->table_index(l.routes);
  }
  return -1;
}

Worker::Worker(int id, std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds)
    : id_(id), published_(std::move(snapshot)), published_fds_(std::move(listen_fds)) {}

Worker::~Worker() {
  for (auto* list : {&listeners_, &retired_listeners_}) {
    for (auto& l : *list) {
      if (l->fd >= 0) ::close(l->fd);
      delete l->accept;
    }
  }
  if (control_fd_ >= 0) ::close(control_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
  free_storage();
  if (published_) {
    for (int fd : published_fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
}

std::string Worker::init() {
  if (std::string err = ring_.init(kRingEntries); !err.empty()) return err;
  if (std::string err = buffers_.init(ring_, kBufferCount, kBufferSize); !err.empty()) return err;
  control_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (control_fd_ < 0) return std::string("eventfd: ") + std::strerror(errno);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  control_op_ = std::make_unique<ControlOp>(*this);
  sessions_.reserve(published_->config->limits.max_connections);
  return {};
}

void Worker::publish(std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds) {
  {
    std::lock_guard<std::mutex> lock(publish_mutex_);
    if (published_) {
      // An earlier reload this worker has not applied yet is superseded. The control plane
      // believes its new listeners open ("keep yours" = -1): hand their sockets on, close the rest.
      const auto& older = published_->config->listeners;
      const auto& newer = snapshot->config->listeners;
      for (std::size_t i = 0; i < newer.size() && i < listen_fds.size(); ++i) {
        if (listen_fds[i] >= 0) continue;
        for (std::size_t j = 0; j < older.size() && j < published_fds_.size(); ++j) {
          if (older[j].name == newer[i].name && older[j].bind.text == newer[i].bind.text) {
            std::swap(listen_fds[i], published_fds_[j]);
          }
        }
      }
      for (int fd : published_fds_) {
        if (fd >= 0) ::close(fd);
      }
    }
    published_ = std::move(snapshot);
    published_fds_ = std::move(listen_fds);
  }
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof(one));
}

bool Worker::can_pool(const UpstreamConn& c) const {
  return !draining_ && !c.pool_->retired && !c.pool_->balancer.draining(c.server_) &&
         c.pool_->idle[static_cast<std::size_t>(c.server_)].size() <
             c.pool_->cfg->max_idle_per_server;
}

PoolRuntime::PoolRuntime(std::shared_ptr<const config::Config> owner, const config::Pool& pool,
                         std::shared_ptr<upstream::PoolState> state, unsigned worker)
    : owner(std::move(owner)),
      cfg(&pool),
      balancer(pool, std::move(state), worker),
      default_key(config::HashKey::On::kDefault),
      idle(pool.servers.size()) {
  if (const upstream::SchedulerInfo* info = upstream::find_scheduler(pool.scheduler)) {
    default_key = info->default_key;
  }
}

void PoolRuntime::report(int server, upstream::Outcome outcome, Clock::time_point now) {
  balancer.report(server, outcome, now);
  if (server < 0 || static_cast<std::size_t>(server) >= server_stats.size()) return;
  ServerCounters& s = *server_stats[static_cast<std::size_t>(server)];
  if (outcome == upstream::Outcome::kConnectFailure) ++s.connect_failures;
  if (outcome == upstream::Outcome::kReset) ++s.resets;
}

AgentLink& Worker::agent_link(const config::SocketAddress& agent, const std::string& key) {
  for (auto& link : agent_links_) {
    if (link->agent().text == agent.text && link->key() == key) return *link;
  }
  // A link with an old key stays until the worker ends (its operations may still complete); it
  // is idle: nothing offers through it any more.
  agent_links_.push_back(std::make_unique<AgentLink>(*this, agent, key));
  return *agent_links_.back();
}

DeadlineList& Worker::timeouts_for(std::chrono::milliseconds duration) {
  for (auto& l : extra_timeouts_) {
    if (l->duration() == duration) return *l;
  }
  extra_timeouts_.push_back(std::make_unique<DeadlineList>(duration));
  return *extra_timeouts_.back();
}

void Worker::wake_queue(PoolRuntime& pool) {
  Session* s = pool.queue_head;
  if (!s) return;
  s->leave_queue();
  woken_.push_back(s);
}

void Worker::run_woken() {
  // A woken request may finish at once and wake the next one: loop until quiet.
  std::vector<Session*> batch;
  std::vector<UpstreamConn*> conns;
  while (!woken_.empty() || !tls_ready_.empty() || !upstream_tls_ready_.empty()) {
    batch.swap(woken_);
    for (Session* s : batch) s->on_dequeued();
    batch.clear();
    batch.swap(tls_ready_);
    for (Session* s : batch) s->on_tls_ready();
    batch.clear();
    conns.swap(upstream_tls_ready_);
    for (UpstreamConn* c : conns) c->on_tls_ready();
    conns.clear();
  }
}

void Worker::close_listener(ListenerRuntime& l) {
  if (l.fd < 0) return;
  // Cancel by operation, not by fd: the fd number may be reused by a new listener at once.
  io_uring_sqe* sqe = ring_.sqe(nullptr);
  io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(l.accept), 0);
  io_uring_submit(ring_.raw());
  ::close(l.fd);
  l.fd = -1;
}

void Worker::apply(std::shared_ptr<const Snapshot> snapshot, std::vector<int> listen_fds) {
  const config::Config& cfg = *snapshot->config;
  const config::Timeouts& t = cfg.timeouts;
  client_header_timeouts.set_duration(t.client_header);
  client_idle_timeouts.set_duration(t.client_idle);
  client_body_timeouts.set_duration(t.client_body);
  upstream_idle_timeouts.set_duration(t.upstream_idle);
  tunnel_idle_timeouts.set_duration(t.tunnel_idle);
  std::size_t head_size = cfg.limits.max_header_bytes + kBufferSize;
  if (head_size != head_buffer_size_) {
    head_buffer_size_ = head_size;
    free_head_buffers_.clear();
  }

  // Pools, reconciled by name: a pool whose servers and scheduler are unchanged keeps its runtime
  // (idle connections, in-flight counts, passive health) and takes the new settings in place; a
  // changed one gets a new runtime that inherits idle connections to servers it kept.
  drop_free_sessions();  // parked Sessions were built for the previous snapshot
  snapshot_changed_ = true;
  auto view = std::make_shared<WorkerView>();
  view->snapshot = snapshot;
  std::vector<std::shared_ptr<PoolRuntime>> old = view_ ? view_->pools : decltype(old){};
  std::size_t index = 0;
  for (const auto& [name, pool] : cfg.pools) {
    const std::shared_ptr<upstream::PoolState>& state = snapshot->pool_states[index++];
    std::shared_ptr<PoolRuntime> prev;
    for (auto& p : old) {
      if (p && p->cfg->name == name) prev = p;
    }
    std::shared_ptr<PoolRuntime> rt;
    // Idle connections made with TLS (or without) cannot serve a pool that changed that.
    bool same_transport = prev && bool(prev->cfg->tls) == bool(pool.tls);
    if (prev && !same_transport) {
      for (auto& list : prev->idle) {
        while (!list.empty()) list.back()->close();
      }
    }
    if (prev && prev->balancer.can_rebind(pool, *state)) {
      prev->owner = snapshot->config;
      prev->cfg = &pool;
      prev->balancer.rebind(pool);
      rt = prev;
    } else {
      rt = std::make_shared<PoolRuntime>(snapshot->config, pool, state, static_cast<unsigned>(id_));
      if (prev) {
        for (std::size_t s = 0; s < prev->idle.size(); ++s) {
          for (UpstreamConn* c : prev->idle[s]) {
            int keep = -1;
            for (std::size_t i = 0; i < pool.servers.size(); ++i) {
              if (pool.servers[i].address.text == prev->cfg->servers[s].address.text) {
                keep = int(i);
              }
            }
            if (keep >= 0) {
              c->pool_ = rt.get();
              c->server_ = keep;
              rt->idle[static_cast<std::size_t>(keep)].push_back(c);
            } else {
              c->idle_ = false;  // already out of the list being dropped
              c->close();
            }
          }
          prev->idle[s].clear();
        }
      }
    }
    const SnapshotStats& stats = *snapshot->stats;
    std::size_t pi = view->pools.size();
    rt->stats = &stats.pools[pi]->at(static_cast<unsigned>(id_));
    rt->server_stats.clear();
    for (ServerStats* ss : stats.servers[pi]) {
      rt->server_stats.push_back(&ss->at(static_cast<unsigned>(id_)));
    }
    rt->tls = snapshot->pool_tls[pi];
    rt->connect_timeouts = &timeouts_for(pool.connect_timeout.value_or(t.upstream_connect));
    rt->response_timeouts = &timeouts_for(pool.response_timeout.value_or(t.upstream_response));
    rt->queue_timeouts = &timeouts_for(pool.queue.timeout);
    // Draining servers keep no idle connections.
    for (std::size_t i = 0; i < pool.servers.size(); ++i) {
      if (!pool.servers[i].drain && !pool.servers[i].maintenance) continue;
      auto& list = rt->idle[i];
      while (!list.empty()) list.back()->close();
    }
    view->pools.push_back(std::move(rt));
  }
  for (auto& p : old) {
    bool kept = false;
    for (auto& n : view->pools) kept = kept || n == p;
    if (kept) continue;
    p->retired = true;
    for (auto& list : p->idle) {
      while (!list.empty()) list.back()->close();
    }
  }
  view_ = std::move(view);

  // Listeners: keep those with the same name and address, open the new, close the rest.
  std::vector<std::unique_ptr<ListenerRuntime>> next;
  for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
    const config::Listener& l = cfg.listeners[i];
    int fd = i < listen_fds.size() ? listen_fds[i] : -1;
    // New connections get this snapshot's TLS context (re-read certificates); open ones keep
    // their own SSL, which holds its context.
    std::shared_ptr<const tls::ServerContext> tls =
        i < snapshot->listener_tls.size() ? snapshot->listener_tls[i] : nullptr;
    if (fd < 0) {
      for (auto& cur : listeners_) {
        if (cur && cur->name == l.name && cur->bind == l.bind.text) {
          cur->tls = tls;
          cur->tcp = l.mode == config::Listener::Mode::kTcp;
          cur->pool = l.pool;
          cur->sni = l.sni;
          cur->websocket = l.websocket;
          cur->stats = &snapshot->stats->listeners[i]->at(static_cast<unsigned>(id_));
          next.push_back(std::move(cur));
        }
      }
      continue;
    }
    auto rt = std::make_unique<ListenerRuntime>();
    rt->name = l.name;
    rt->bind = l.bind.text;
    rt->tls = std::move(tls);
    rt->tcp = l.mode == config::Listener::Mode::kTcp;
    rt->pool = l.pool;
    rt->sni = l.sni;
    rt->websocket = l.websocket;
    rt->stats = &snapshot->stats->listeners[i]->at(static_cast<unsigned>(id_));
    rt->fd = fd;
    rt->accept = new AcceptOp(*this, *rt);
    if (!draining_) arm_accept(*rt);
    next.push_back(std::move(rt));
  }
  for (auto& cur : listeners_) {
    if (!cur) continue;
    close_listener(*cur);
    // Its idle connections have no route table left to serve a next request by (a Session
    // keeps its snapshot; an idle connection has none): close them, as an idle timeout would.
    close_idle(cur.get());
    retired_listeners_.push_back(std::move(cur));
  }
  listeners_ = std::move(next);
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
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> lock(publish_mutex_);
    snapshot = std::move(published_);
    fds = std::move(published_fds_);
    published_ = nullptr;
  }
  if (snapshot) apply(std::move(snapshot), std::move(fds));
  if (shutdown_requested_.load(std::memory_order_acquire) && !draining_) begin_drain();
  if (!draining_) arm_control_read();
}

void Worker::on_accept(ListenerRuntime& l, int res, std::uint32_t flags) {
  if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
    // Re-arming at once would spin (the waiting connection fails the same way right away) and
    // log millions of lines a second: refuse what waits, and try again on the next tick.
    refuse_over_fd_limit(l, -res);
    l.accept_paused = true;
    accept_resume_ = now_ + std::chrono::milliseconds(kTickMs);
    return;
  }
  if (!(flags & IORING_CQE_F_MORE) && !draining_ && l.fd >= 0) arm_accept(l);
  if (res < 0) {
    if (res != -ECANCELED) spdlog::warn("worker {}: accept: {}", id_, std::strerror(-res));
    return;
  }
  ++counters_.accepted;
  if (l.stats) ++l.stats->accepted;
  if (draining_ || connections() >= config().limits.max_connections) {
    // Over the limit: answer at once rather than leave the client waiting on a full queue.
    ++counters_.rejected_over_limit;
    std::string out;
    http::write_error_response(503, out);
    [[maybe_unused]] ssize_t n = ::send(res, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::close(res);
    return;
  }
  if (l.stats) ++l.stats->active;
  if (!l.tls && !l.tcp) {
    // Plain HTTP: a Session only once the first bytes arrive (proxy/idle_connection.h).
    hold_idle(l, res, nullptr, false, client_header_timeouts);
    return;
  }
  Session* s = new_session(l, res);
  s->index = sessions_.size();
  sessions_.push_back(s);
  s->start();
}

// Out of file descriptors (or kernel memory) with connections waiting in the listen queue: free
// the reserve descriptor, accept each waiting connection, answer 503 and close it, as for
// limits.max_connections. Bounded per call; warns at most once a second.
void Worker::refuse_over_fd_limit(ListenerRuntime& l, int err) {
  if (now_ - fd_limit_logged_ >= std::chrono::seconds(1)) {
    fd_limit_logged_ = now_;
    spdlog::warn("worker {}: accept: {}; refusing new connections on {} until some close", id_,
                 std::strerror(err), l.name);
  }
  if (l.fd < 0) return;
  std::string out;
  http::write_error_response(503, out);
  for (int i = 0; i < 1024; ++i) {
    pollfd p{l.fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
    if (reserve_fd_ >= 0) {
      ::close(reserve_fd_);
      reserve_fd_ = -1;
    }
    int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ++counters_.rejected_over_limit;
      [[maybe_unused]] ssize_t n = ::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      ::close(fd);
    }
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || reserve_fd_ < 0) break;
  }
}

void Worker::session_closed(Session* s) {
  if (ListenerCounters* ls = s->listener().stats) --ls->active;
  Session* last = sessions_.back();
  sessions_[s->index] = last;
  last->index = s->index;
  sessions_.pop_back();
  dead_.push_back(s);
}

void HeadBufferRelease::operator()(char* p) const {
  if (mapped) {
    ::munmap(p, mapped);
  } else {
    delete[] p;
  }
}

HeadBuffer Worker::take_head_buffer() {
  last_head_buffer_take_ = now_;
  if (!free_head_buffers_.empty()) {
    HeadBuffer b = std::move(free_head_buffers_.back());
    free_head_buffers_.pop_back();
    return b;
  }
  // Untouched pages of a fresh buffer stay unbacked until used (and new[] does not zero-fill).
#if !defined(__SANITIZE_ADDRESS__)
  void* p = ::mmap(nullptr, head_buffer_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (p != MAP_FAILED) return HeadBuffer(static_cast<char*>(p), HeadBufferRelease{head_buffer_size_});
#endif
  return HeadBuffer(new char[head_buffer_size_], HeadBufferRelease{0});
}

void Worker::give_head_buffer(HeadBuffer b, std::size_t size) {
  // Keep a bounded number for reuse; beyond that, give memory back after a burst. Buffers of a
  // size from before a reload are simply freed.
  if (b && size == head_buffer_size_ && free_head_buffers_.size() < kMaxFreeHeadBuffersBusy) {
    free_head_buffers_.push_back(std::move(b));
  }
}

void Worker::begin_drain() {
  draining_ = true;
  drain_deadline_ = now_ + config().timeouts.shutdown;
  for (auto& l : listeners_) close_listener(*l);
  close_idle(nullptr);
  for (auto& p : view_->pools) {
    for (auto& list : p->idle) {
      while (!list.empty()) list.back()->close();
    }
  }
  // drain() may close sessions, which reorders sessions_: iterate over a copy.
  std::vector<Session*> all = sessions_;
  for (Session* s : all) s->drain();
}

void Worker::tick() {
  counters_.connections.set(static_cast<std::int64_t>(connections()));
  counters_.upstreams.set(live_upstreams_);
  counters_.free_buffers.set(static_cast<std::int64_t>(buffers_.available()));
  client_header_timeouts.expire(now_);
  client_idle_timeouts.expire(now_);
  client_body_timeouts.expire(now_);
  upstream_idle_timeouts.expire(now_);
  tunnel_idle_timeouts.expire(now_);
  for (auto& l : extra_timeouts_) l->expire(now_);
  pipes_.expire_unused(kPipeIdleTicks);
  if (free_head_buffers_.size() > kMaxFreeHeadBuffers &&
      now_ - last_head_buffer_take_ >= kHeadBufferQuiet) {
    free_head_buffers_.resize(kMaxFreeHeadBuffers);
  }
  for (auto& l : listeners_) {
    if (l && l->accept_paused && now_ >= accept_resume_) {
      l->accept_paused = false;
      if (!draining_ && l->fd >= 0) arm_accept(*l);
    }
  }
  if (view_) {
    for (auto& p : view_->pools) p->balancer.sync(now_);
  }
  if (draining_ && now_ >= drain_deadline_ && !sessions_.empty()) {
    spdlog::warn("worker {}: shutdown timeout, closing {} connections", id_, sessions_.size());
    std::vector<Session*> all = sessions_;
    for (Session* s : all) s->abort();
  }
}

void Worker::run() {
  now_ = Clock::now();
  on_control();  // applies the initial snapshot and arms the control read
  if (shutdown_requested_.load(std::memory_order_acquire)) begin_drain();
  std::vector<RecvOp*> retry;
  while (!draining_ || !sessions_.empty() || live_upstreams_ > 0 || idle_live_ > 0) {
    ring_.run_once(kTickMs);
    now_ = Clock::now();
    run_woken();
    for (Session* s : dead_) delete s;
    dead_.clear();
    keep_parked_sessions();
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
