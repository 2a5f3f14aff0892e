#include "upstream/health_checker.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <chrono>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>

namespace switchyard::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

namespace {

// A health response is a status line, a few headers and a short body; anything bigger is a
// misconfigured check, and reading it all would only cost the control plane memory and time.
constexpr std::size_t kMaxResponseBytes = 64 * 1024;
// A fresh server's first check starts within this (or within its interval, if shorter): see the
// header for why.
constexpr config::Millis kMaxFirstDelay{100};

// Every field of HealthCheck. Keep in step with config::HealthCheck: a field missed here would
// let a reload that changes only that field keep the old check running.
bool same_settings(const config::HealthCheck& a, const config::HealthCheck& b) {
  return a.kind == b.kind && a.method == b.method && a.path == b.path && a.host == b.host &&
         a.expect_min == b.expect_min && a.expect_max == b.expect_max &&
         a.body_contains == b.body_contains && a.interval == b.interval && a.timeout == b.timeout &&
         a.rise == b.rise && a.fall == b.fall && a.jitter_percent == b.jitter_percent;
}

// config::SocketAddress keeps a sockaddr_storage; copy out of it (no aliasing casts).
bool to_endpoint(const config::SocketAddress& a, tcp::endpoint& out) {
  if (a.family() == AF_INET6) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, &a.storage, sizeof(sin6));
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), sin6.sin6_addr.s6_addr, bytes.size());
    out = tcp::endpoint(asio::ip::address_v6(bytes, sin6.sin6_scope_id), ntohs(sin6.sin6_port));
    return true;
  }
  if (a.family() == AF_INET) {
    sockaddr_in sin{};
    std::memcpy(&sin, &a.storage, sizeof(sin));
    out = tcp::endpoint(asio::ip::address_v4(ntohl(sin.sin_addr.s_addr)), ntohs(sin.sin_port));
    return true;
  }
  return false;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The result of one check.
struct Outcome {
  bool passed = false;
  bool timed_out = false;
  std::string reason;  // failures: "connection refused", "status 500", "body mismatch", ...
};

Outcome pass() {
  return {true, false, {}};
}
Outcome fail(std::string reason) {
  return {false, false, std::move(reason)};
}
Outcome timeout() {
  return {false, true, "timeout"};
}

// System messages start with a capital ("Connection refused"); log lines read better without.
Outcome fail(const error_code& ec) {
  if (ec == http::error::end_of_stream) return fail("connection closed before the response");
  if (ec == http::error::body_limit || ec == http::error::header_limit ||
      ec == http::error::buffer_overflow) {
    return fail("response too large");
  }
  std::string text = ec.message();
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  if (ec.category() == http::make_error_code(http::error::bad_version).category()) {
    return fail("invalid response (" + text + ")");
  }
  return fail(std::move(text));
}

// One check in flight. Owned jointly by the ServerCheck (while current) and by every pending
// handler, so a handler that runs after the check was finished or cancelled still finds its
// socket, buffer and parser alive; it sees `done` and returns.
struct Attempt {
  explicit Attempt(asio::io_context& io) : socket(io), deadline(io), buffer(kMaxResponseBytes) {}
  tcp::socket socket;
  asio::steady_timer deadline;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  bool done = false;  // finished (passed, failed, timed out) or cancelled: handlers return
};

}  // namespace

struct HealthChecker::Shared {
  std::atomic<std::uint64_t> completed{0};
  std::mt19937_64 rng{std::random_device{}()};
};

// One server's checks. Lives as long as the checker lists it or a handler holds it; once
// cancelled (`stopped`) it never writes its ServerHealth again, which is what lets update()
// start a replacement at once without two writers.
struct HealthChecker::ServerCheck : std::enable_shared_from_this<ServerCheck> {
  ServerCheck(asio::io_context& io_context, std::shared_ptr<Shared> shared_state,
              std::shared_ptr<PoolState> pool_state, std::size_t server_index,
              const config::Pool& pool, const config::Server& server)
      : io(io_context),
        shared(std::move(shared_state)),
        state(std::move(pool_state)),
        index(server_index),
        settings(*pool.health),
        address(server.address.text),
        label(pool.name + "/" + server.address.text),
        timer(io_context) {
    endpoint_ok = to_endpoint(server.address, endpoint);
    if (settings.kind == config::HealthCheck::Kind::kHttp) {
      request = settings.method + " " + settings.path +
                " HTTP/1.1\r\nHost: " + (settings.host.empty() ? address : settings.host) +
                "\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n";
    }
    // Zero would mean "always" / "never": both are read as one.
    rise = std::max<std::uint32_t>(settings.rise, 1);
    fall = std::max<std::uint32_t>(settings.fall, 1);
    interval = std::max(settings.interval, config::Millis{1});
  }

  // Fresh server: first check soon, at a random point so servers added together spread out.
  void start() {
    auto max_ms = std::min(interval, kMaxFirstDelay).count();
    std::uniform_int_distribution<std::int64_t> first(0, max_ms);
    timer.expires_after(config::Millis{first(shared->rng)});
    arm_timer();
  }

  void cancel() {
    stopped = true;
    timer.cancel();
    if (attempt) {
      attempt->done = true;
      error_code ignored;
      attempt->socket.close(ignored);
      attempt->deadline.cancel();
      attempt.reset();
    }
  }

  void arm_timer() {
    timer.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->stopped) return;
      self->run_check();
    });
  }

  // Next start: interval +- jitter after the previous START, so the period does not stretch by
  // each check's duration; a start already past fires at once.
  void schedule_next() {
    double j = std::min<std::uint32_t>(settings.jitter_percent, 100) / 100.0;
    std::uniform_real_distribution<double> u(-j, j);
    auto delay = std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double, std::milli>(interval.count() * (1.0 + u(shared->rng))));
    timer.expires_at(last_start + delay);
    arm_timer();
  }

  void run_check() {
    last_start = SteadyClock::now();
    auto a = std::make_shared<Attempt>(io);
    attempt = a;
    auto self = shared_from_this();
    if (!endpoint_ok) return finish(a, fail("unsupported address family"));
    // One deadline for the whole check; when it fires first, closing the socket (in finish)
    // aborts whatever operation is pending, and that operation's handler sees `done`.
    a->deadline.expires_after(settings.timeout);
    a->deadline.async_wait([self, a](const error_code& ec) {
      if (ec || a->done) return;
      self->finish(a, timeout());
    });
    error_code ec;
    a->socket.open(endpoint.protocol(), ec);
    if (ec) return finish(a, fail(ec));
    a->socket.async_connect(endpoint, [self, a](const error_code& ec) {
      if (a->done) return;
      if (ec) return self->finish(a, fail(ec));
      if (self->settings.kind == config::HealthCheck::Kind::kTcp) {
        // A TCP check has nothing to say: close with RST (linger 0) so that the control plane
        // does not collect a TIME_WAIT socket per check (HAProxy's tcp checks do the same).
        error_code ignored;
        a->socket.set_option(asio::socket_base::linger(true, 0), ignored);
        return self->finish(a, pass());
      }
      self->send_request(a);
    });
  }

  void send_request(const std::shared_ptr<Attempt>& a) {
    // `request` belongs to this ServerCheck, which the handler keeps alive.
    asio::async_write(a->socket, asio::buffer(request),
                      [self = shared_from_this(), a](const error_code& ec, std::size_t) {
                        if (a->done) return;
                        if (ec) return self->finish(a, fail(ec));
                        self->read_header(a);
                      });
  }

  void read_header(const std::shared_ptr<Attempt>& a) {
    a->parser.body_limit(kMaxResponseBytes);
    // A response to HEAD has no body whatever its headers say.
    if (settings.method == "HEAD") a->parser.skip(true);
    http::async_read_header(
        a->socket, a->buffer, a->parser,
        [self = shared_from_this(), a](const error_code& ec, std::size_t) {
          if (a->done) return;
          if (ec) return self->finish(a, fail(ec));
          int status = a->parser.get().result_int();
          if (status < self->settings.expect_min || status > self->settings.expect_max) {
            return self->finish(a, fail("status " + std::to_string(status)));
          }
          // Without a body test the status is the verdict: no need to read (or wait for) more.
          if (self->settings.body_contains.empty() || a->parser.is_done()) {
            return self->check_body(a);
          }
          http::async_read(a->socket, a->buffer, a->parser,
                           [self, a](const error_code& ec, std::size_t) {
                             if (a->done) return;
                             if (ec) return self->finish(a, fail(ec));
                             self->check_body(a);
                           });
        });
  }

  void check_body(const std::shared_ptr<Attempt>& a) {
    const std::string& want = settings.body_contains;
    if (!want.empty() && a->parser.get().body().find(want) == std::string::npos) {
      return finish(a, fail("body mismatch"));
    }
    finish(a, pass());
  }

  // Called exactly once per attempt that was not cancelled.
  void finish(const std::shared_ptr<Attempt>& a, const Outcome& outcome) {
    a->done = true;
    error_code ignored;
    a->socket.close(ignored);
    a->deadline.cancel();
    attempt.reset();
    record(outcome);
    shared->completed.fetch_add(1, std::memory_order_relaxed);
    schedule_next();
  }

  void record(const Outcome& o) {
    ServerHealth& h = state->health(index);
    // The checker is the only writer, so its own relaxed load is exact.
    Health current = h.state.load(std::memory_order_relaxed);
    if (o.passed) {
      failures = 0;
      failures_all_timeouts = true;
      if (successes < std::numeric_limits<std::uint32_t>::max()) ++successes;
      // Before the state: a worker that loads the new state (acquire) also sees this pass.
      h.passes.fetch_add(1, std::memory_order_relaxed);
      if (current == Health::kUnchecked) {
        set_state(h, Health::kUp, "first check passed");
      } else if (current == Health::kDown && successes >= rise) {
        set_state(h, Health::kUp,
                  successes == 1 ? std::string("check passed")
                                 : std::to_string(successes) + " consecutive successes");
      }
    } else {
      successes = 0;
      if (failures < std::numeric_limits<std::uint32_t>::max()) ++failures;
      failures_all_timeouts = failures_all_timeouts && o.timed_out;
      if (current == Health::kUnchecked) {
        set_state(h, Health::kDown,
                  o.timed_out ? std::string("first check timed out")
                              : "first check failed (" + o.reason + ")");
      } else if (current == Health::kUp && failures >= fall) {
        std::string why;
        if (failures == 1) {
          why = o.timed_out ? std::string("check timed out") : "check failed (" + o.reason + ")";
        } else if (failures_all_timeouts) {
          why = std::to_string(failures) + " consecutive timeouts";
        } else {
          // Mixed causes: the last one is the most useful to an operator.
          why = std::to_string(failures) + " consecutive failures (" + o.reason + ")";
        }
        set_state(h, Health::kDown, why);
      }
    }
    h.last_passed.store(o.passed, std::memory_order_relaxed);
    h.last_reason = o.passed ? std::string() : o.reason;
    h.last_check_ms.store(unix_ms(), std::memory_order_relaxed);
  }

  void set_state(ServerHealth& h, Health next, const std::string& why) {
    h.state.store(next, std::memory_order_release);
    if (next == Health::kDown) {
      spdlog::warn("server {} DOWN: {}", label, why);
    } else {
      spdlog::info("server {} UP: {}", label, why);
    }
  }

  asio::io_context& io;
  std::shared_ptr<Shared> shared;
  std::shared_ptr<PoolState> state;  // keeps health(index) alive
  std::size_t index;
  config::HealthCheck settings;
  std::string address;  // the server's address text, also the default Host
  std::string label;    // "pool/address" for log lines
  tcp::endpoint endpoint;
  bool endpoint_ok = false;
  std::string request;  // kHttp: built once
  std::uint32_t rise = 1;
  std::uint32_t fall = 1;
  config::Millis interval{1};

  asio::steady_timer timer;  // next check
  std::shared_ptr<Attempt> attempt;
  SteadyClock::time_point last_start{};
  bool stopped = false;

  // Consecutive results; reset by the opposite result.
  std::uint32_t successes = 0;
  std::uint32_t failures = 0;
  bool failures_all_timeouts = true;  // every failure of the current run was a timeout
};

HealthChecker::HealthChecker(asio::io_context& io) : io_(io), shared_(std::make_shared<Shared>()) {}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::update(std::vector<Target> targets) {
  std::map<Key, std::shared_ptr<ServerCheck>> next;
  std::set<const PoolState*> seen;
  for (const Target& t : targets) {
    if (t.pool == nullptr || t.state == nullptr) continue;
    const PoolState* ps = t.state.get();
    if (!seen.insert(ps).second) {
      spdlog::error("health checks: pool {} listed twice; checking it once", t.pool->name);
      continue;
    }
    std::size_t n = t.pool->servers.size();
    if (n > t.state->size()) {
      spdlog::error("health checks: pool {} has {} servers but its state only {}; checking those",
                    t.pool->name, n, t.state->size());
      n = t.state->size();
    }
    if (!t.pool->health) {
      for (std::size_t i = 0; i < n; ++i) {
        t.state->health(i).state.store(Health::kUnchecked, std::memory_order_release);
      }
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const config::Server& server = t.pool->servers[i];
      Key key{ps, i};
      auto it = checks_.find(key);
      if (it != checks_.end()) {
        std::shared_ptr<ServerCheck> old = std::move(it->second);
        checks_.erase(it);
        if (same_settings(old->settings, *t.pool->health) && old->address == server.address.text) {
          next.emplace(key, std::move(old));
          continue;
        }
        // Cancelled before its replacement starts: one writer per ServerHealth at any time.
        old->cancel();
      }
      auto fresh = std::make_shared<ServerCheck>(io_, shared_, t.state, i, *t.pool, server);
      fresh->start();
      next.emplace(key, std::move(fresh));
    }
  }
  for (auto& [key, check] : checks_) check->cancel();
  checks_ = std::move(next);
}

void HealthChecker::stop() {
  for (auto& [key, check] : checks_) check->cancel();
  checks_.clear();
}

std::uint64_t HealthChecker::checks_completed() const {
  return shared_->completed.load(std::memory_order_relaxed);
}

}  // namespace switchyard::upstream
