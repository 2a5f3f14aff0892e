#include "proxy/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "config/config_loader.h"
#include "l4/ctl/runtime.h"
#include "proxy/access_log.h"
#include "proxy/admin/admin_server.h"
#include "proxy/control_plane.h"
#include "proxy/worker.h"
#include "upstream/health_checker.h"

namespace switchyard::proxy {
namespace {

// One SO_REUSEPORT socket per worker and listener: the kernel spreads connections over workers
// without a shared accept queue. Port 0: the first socket's kernel-chosen port is used by all.
int open_listener(const config::SocketAddress& bind_addr, std::uint16_t port, std::string& err) {
  sockaddr_storage ss = bind_addr.storage;
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = std::strerror(errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), bind_addr.length) < 0 ||
      ::listen(fd, 4096) < 0) {
    err = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

std::uint16_t configured_port(const config::SocketAddress& a) {
  if (a.family() == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

std::string host_part(const config::SocketAddress& a) {
  std::string text = a.text;
  return text.substr(0, text.rfind(':'));
}

void close_all(std::vector<std::vector<int>>& fds) {
  for (auto& per_worker : fds) {
    for (int& f : per_worker) {
      if (f >= 0) ::close(f);
      f = -1;
    }
  }
}

// Opens every listener of `config` for each worker, except those in `keep` (same name and address
// as a listener already open): those get -1, meaning "keep yours". Returns false (and closes what
// it opened) if any socket cannot be opened.
bool open_listeners(const config::Config& config, unsigned workers,
                    const std::vector<config::Listener>& keep,
                    std::vector<std::vector<int>>& listen_fds) {
  listen_fds.assign(workers, {});
  for (const config::Listener& l : config.listeners) {
    bool kept = false;
    for (const config::Listener& k : keep) {
      kept = kept || (k.name == l.name && k.bind.text == l.bind.text);
    }
    std::uint16_t port = configured_port(l.bind);
    for (unsigned w = 0; w < workers; ++w) {
      if (kept) {
        listen_fds[w].push_back(-1);
        continue;
      }
      std::string err;
      int fd = open_listener(l.bind, port, err);
      if (fd < 0) {
        spdlog::error("listener {}: cannot listen on {}: {}", l.name, l.bind.text, err);
        close_all(listen_fds);
        return false;
      }
      if (port == 0) port = bound_port(fd);
      listen_fds[w].push_back(fd);
    }
    if (!kept) spdlog::info("listener {} ready on {}:{}", l.name, host_part(l.bind), port);
  }
  return true;
}

// Every pool of `s`, for the health checker (pools without `health` are skipped by it).
std::vector<upstream::HealthChecker::Target> health_targets(const Snapshot& s) {
  std::vector<upstream::HealthChecker::Target> targets;
  std::size_t i = 0;
  for (const auto& [name, pool] : s.config->pools) {
    targets.push_back({s.config, &pool, s.pool_states[i++]});
  }
  return targets;
}

}  // namespace

int run_server(std::shared_ptr<const Snapshot> snapshot, const std::string& config_path,
               const std::function<void(std::uint16_t)>& on_ready) {
  std::shared_ptr<const config::Config> config = snapshot->config;
  unsigned workers = config->workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  // Ticket keys outlive every snapshot: a reload must not invalidate clients' tickets.
  auto ticket_keys = std::make_shared<tls::TicketKeys>();
  {
    std::string err;
    snapshot = prepare_snapshot(*snapshot, workers, nullptr, ticket_keys, err);
    if (!snapshot) {
      spdlog::error("{}", err);
      return 1;
    }
  }

  // listen_fds[w][l]: worker w's socket for listener l.
  std::vector<std::vector<int>> listen_fds;
  if (!open_listeners(*config, workers, {}, listen_fds)) return 1;
  std::uint16_t first_port = listen_fds[0].empty() ? 0 : bound_port(listen_fds[0][0]);

  AccessLogWriter access_log;
  if (std::string err = access_log.open(config->access_log); !err.empty()) {
    spdlog::error("{}", err);
    return 1;
  }

  // Workers must not take the signals the control plane waits for.
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGHUP);
  sigaddset(&blocked, SIGUSR1);
  sigaddset(&blocked, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &blocked, &previous);

  std::vector<std::unique_ptr<Worker>> pool;
  std::vector<std::thread> threads;
  std::vector<std::future<std::string>> started;
  // Tunnels (tcp listeners, WebSocket): the kernel forwards their bytes through a BPF sockhash
  // when it can; said once here, whichever engine it is.
  std::shared_ptr<const splice::SockmapEngine> sockmap;
  const char* fallback = config->splice.tunnels == config::Splice::TunnelEngine::kSplice
                             ? "tunnels splice through pipes (splice.tunnels: splice)"
                             : "tunnels copy through userspace (splice.tunnels: copy)";
  if (config->splice.sockmap) {
    std::string err;
    sockmap = splice::SockmapEngine::load(err);
    if (sockmap) {
      spdlog::info("tunnels: sockmap engine (BPF sk_skb redirect; bytes stay in the kernel)");
      spdlog::warn("tunnels: splice.sockmap is experimental: on kernel 6.18 a bulk transfer "
                   "under back-pressure once received a segment twice (docs/configuration.md, "
                   "\"Tunnels\")");
    } else {
      spdlog::warn("tunnels: sockmap unavailable ({}); {}", err, fallback);
    }
  } else {
    spdlog::info("tunnels: splice.sockmap is false; {}", fallback);
  }
  // TCP handoff: the workers steer handed-off flows through the L4 director's table.
  auto steering = std::make_shared<SteeringSlot>();
  for (unsigned w = 0; w < workers; ++w) {
    pool.push_back(std::make_unique<Worker>(static_cast<int>(w), snapshot, listen_fds[w]));
    pool.back()->set_sockmap(sockmap);
    pool.back()->set_steering(steering);
  }
  for (unsigned w = 0; w < workers; ++w) {
    auto promise = std::make_shared<std::promise<std::string>>();
    started.push_back(promise->get_future());
    Worker* worker = pool[w].get();
    threads.emplace_back([worker, promise] {
      std::string err = worker->init();
      promise->set_value(err);
      if (err.empty()) worker->run();
    });
  }
  std::vector<AccessLogQueue*> queues;
  for (auto& w : pool) queues.push_back(&w->access_log());
  access_log.start(queues);
  // SIGPIPE stays blocked in every thread: a peer closing mid-send must not kill us.
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGINT);
  sigaddset(&unblock, SIGTERM);
  sigaddset(&unblock, SIGHUP);
  sigaddset(&unblock, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &unblock, nullptr);

  int exit_code = 0;
  for (auto& f : started) {
    std::string err = f.get();
    if (!err.empty()) {
      spdlog::error("worker start-up failed: {}", err);
      exit_code = 1;
    }
  }

  boost::asio::io_context io;
  // Active health checks run here, on the control-plane thread; workers read the results.
  upstream::HealthChecker health(io);
  // The L4 fast path (src/l4/) runs when the configuration has `l4` services; the same checker
  // checks their real servers. Destroyed before `io`: detaches XDP, keeps the pinned flows.
  l4::Runtime l4_runtime(io);
  l4_runtime.set_steering_sink([steering](std::shared_ptr<const l4::FlowSteering> s) {
    steering->current.store(std::move(s));
  });
  if (exit_code == 0) {
    if (std::string err = l4_runtime.apply(config); !err.empty()) {
      spdlog::error("{}", err);
      exit_code = 1;
    }
  }
  auto all_health_targets = [&] {
    std::vector<upstream::HealthChecker::Target> targets = health_targets(*snapshot);
    for (auto& t : l4_runtime.health_targets()) targets.push_back(std::move(t));
    return targets;
  };
  health.update(all_health_targets());

  // Session-ticket keys rotate on the shortest schedule any TLS listener asks for.
  boost::asio::steady_timer ticket_timer(io);
  std::function<void()> schedule_rotation = [&] {
    config::Millis every{0};
    for (const config::Listener& l : config->listeners) {
      if (!l.tls || !l.tls->session_tickets) continue;
      every = every.count() ? std::min(every, l.tls->ticket_rotation) : l.tls->ticket_rotation;
    }
    bool rotate = every.count() > 0;
    if (!rotate) every = std::chrono::minutes(1);  // look again: a reload may add TLS
    ticket_timer.expires_after(every);
    ticket_timer.async_wait([&, rotate](const boost::system::error_code& ec) {
      if (ec) return;
      if (rotate) {
        ticket_keys->rotate();
        spdlog::info("TLS session ticket keys rotated");
      }
      schedule_rotation();
    });
  };
  schedule_rotation();

  // Publishing a validated configuration: compiled, prepared (pool states, TLS contexts,
  // statistics), new listeners opened, every worker switched, health checks updated. Null and
  // `err` set (nothing changed) on failure. SIGHUP reloads and the admin API's runtime changes
  // both come through here, by way of the ControlPlane.
  auto publish = [&](std::shared_ptr<const config::Config> next_config,
                     std::string& err) -> std::shared_ptr<const Snapshot> {
    std::shared_ptr<const Snapshot> next = make_snapshot(next_config, err);
    if (!next) return nullptr;
    next = prepare_snapshot(*next, workers, snapshot.get(), ticket_keys, err);
    if (!next) return nullptr;
    if (next_config->workers != config->workers) {
      spdlog::warn("reload: `workers` changes only at restart; keeping {} workers", workers);
    }
    std::vector<std::vector<int>> fds;
    if (!open_listeners(*next_config, workers, config->listeners, fds)) {
      err = "a listener could not be opened";
      return nullptr;
    }
    for (unsigned w = 0; w < workers; ++w) pool[w]->publish(next, std::move(fds[w]));
    snapshot = next;
    config = next_config;
    if (std::string l4_err = l4_runtime.apply(config); !l4_err.empty()) {
      spdlog::error("reload: {}", l4_err);
    }

    health.update(all_health_targets());
    return next;
  };
  std::vector<Worker*> worker_list;
  for (auto& w : pool) worker_list.push_back(w.get());
  ControlPlane control(config_path, snapshot, worker_list, publish);
  control.set_health_checker(&health);

  // The admin API (admin/), on this thread too.
  std::unique_ptr<admin::AdminServer> admin_server;
  if (config->admin && exit_code == 0) {
    admin_server = std::make_unique<admin::AdminServer>(io, control);
    if (std::string err = admin_server->start(*config->admin); !err.empty()) {
      spdlog::error("admin: {}", err);
      admin_server.reset();
      exit_code = 1;
    }
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGUSR1);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP || sig == SIGUSR1) {
          // SIGHUP: read the file again; publish it only if it is entirely valid.
          // SIGUSR1: reopen the access log file (after rotation).
          if (sig == SIGHUP) control.reload("SIGHUP");
          if (sig == SIGUSR1) access_log.reopen();
          signals.async_wait(on_signal);
          return;
        }
        spdlog::info("{}: shutting down gracefully (up to {} ms)",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", config->timeouts.shutdown.count());
        health.stop();
        ticket_timer.cancel();
        if (admin_server) admin_server->stop();
        for (auto& w : pool) w->request_shutdown();
      };
  signals.async_wait(on_signal);

  if (exit_code != 0) {
    for (auto& w : pool) w->request_shutdown();
  } else {
    spdlog::info("switchyard ready: {} workers", workers);
    if (on_ready) on_ready(first_port);
  }
  // The control plane runs until the workers have finished.
  std::thread waiter([&] {
    for (auto& t : threads) t.join();
    boost::asio::post(io, [&] { io.stop(); });
  });
  io.run();
  waiter.join();
  access_log.stop();
  for (auto& w : pool) {
    std::uint64_t dropped = w->access_log().dropped();
    if (dropped) spdlog::warn("worker {}: {} access log lines dropped", w->id(), dropped);
  }
  spdlog::info("switchyard stopped");
  return exit_code;
}

}  // namespace switchyard::proxy
