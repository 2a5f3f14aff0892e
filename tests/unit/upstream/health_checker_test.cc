// Active health checks against real loopback servers, all on one io_context that the test runs
// itself (the same single-thread arrangement as the control plane).
#include "upstream/health_checker.h"

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config_loader.h"

using namespace switchyard;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using upstream::Health;

namespace {

std::string http_response(int status, const std::string& body, bool content_length = true) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n";
  if (content_length) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

// A loopback origin on an ephemeral port. kRespond reads one request head and answers with
// `response`, then closes; kHang accepts and then holds the connection without a word.
// Handlers capture `this`: declare the io_context before the server and do not run it after the
// server is gone (queued handlers are then destroyed with the io_context, never invoked).
class TestServer {
 public:
  enum class Mode { kRespond, kHang };

  explicit TestServer(asio::io_context& io, const std::string& host = "127.0.0.1") : acceptor_(io) {
    tcp::endpoint ep(asio::ip::make_address(host), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    host_ = host;
    accept();
  }

  std::string address() const {
    if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
    return host_ + ":" + std::to_string(port_);
  }

  Mode mode = Mode::kRespond;
  std::string response = http_response(200, "ok");
  std::string last_request;
  int accepted = 0;

 private:
  struct Conn {
    explicit Conn(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    std::array<char, 4096> buf{};
    std::string data;
    std::string reply;
  };

  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket s) {
      if (ec) return;
      ++accepted;
      if (mode == Mode::kHang) {
        held_.push_back(std::move(s));
      } else {
        serve(std::make_shared<Conn>(std::move(s)));
      }
      accept();
    });
  }

  void serve(std::shared_ptr<Conn> c) {
    c->socket.async_read_some(asio::buffer(c->buf), [this, c](error_code ec, std::size_t n) {
      if (ec) return;  // e.g. a TCP check's reset
      c->data.append(c->buf.data(), n);
      if (c->data.find("\r\n\r\n") == std::string::npos) return serve(c);
      last_request = c->data;
      c->reply = response;
      asio::async_write(c->socket, asio::buffer(c->reply), [c](error_code, std::size_t) {
        error_code ignored;
        c->socket.shutdown(tcp::socket::shutdown_send, ignored);
        c->socket.close(ignored);
      });
    });
  }

  tcp::acceptor acceptor_;
  std::string host_;
  unsigned short port_ = 0;
  std::vector<tcp::socket> held_;
};

// A port that refuses connections: bound once to learn a free number, then closed.
std::string closed_port_address(asio::io_context& io) {
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::string text = "127.0.0.1:" + std::to_string(a.local_endpoint().port());
  a.close();
  return text;
}

config::HealthCheck http_check() {
  config::HealthCheck h;
  h.kind = config::HealthCheck::Kind::kHttp;
  h.path = "/healthz";
  h.interval = 30ms;
  h.timeout = 500ms;
  h.rise = 2;
  h.fall = 3;
  return h;
}

config::HealthCheck tcp_check() {
  config::HealthCheck h = http_check();
  h.kind = config::HealthCheck::Kind::kTcp;
  return h;
}

// One pool (and its PoolState) in a config of its own, as a snapshot would hold it.
struct Farm {
  std::shared_ptr<config::Config> config;
  std::string name;
  std::shared_ptr<upstream::PoolState> state;

  upstream::HealthChecker::Target target() const {
    return {config, &config->pools.at(name), state};
  }
  upstream::ServerHealth& health(std::size_t i = 0) { return state->health(i); }
  Health status(std::size_t i = 0) { return health(i).state.load(); }
};

std::shared_ptr<config::Config> make_config(const std::string& name,
                                            const std::vector<std::string>& addresses,
                                            std::optional<config::HealthCheck> health) {
  auto cfg = std::make_shared<config::Config>();
  config::Pool& pool = cfg->pools[name];
  pool.name = name;
  pool.health = health;
  for (const std::string& a : addresses) {
    config::Server s;
    REQUIRE(config::parse_socket_address(a, s.address).empty());
    pool.servers.push_back(s);
  }
  return cfg;
}

Farm make_farm(const std::string& name, const std::vector<std::string>& addresses,
               std::optional<config::HealthCheck> health) {
  Farm f{make_config(name, addresses, health), name, nullptr};
  f.state = std::make_shared<upstream::PoolState>(f.config->pools.at(name), 1);
  return f;
}

// Runs the io_context one handler at a time until `done` holds (true) or `limit` passes (false).
// One handler at a time matters: a test can act right after the handler that finished a check,
// before the next one starts.
template <class Pred>
bool run_until(asio::io_context& io, Pred done, std::chrono::milliseconds limit = 2000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(10ms);
  }
  return true;
}

void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  if (io.stopped()) io.restart();
  io.run_for(d);
}

bool wait_checks(asio::io_context& io, const upstream::HealthChecker& hc, std::uint64_t n) {
  return run_until(io, [&] { return hc.checks_completed() >= n; });
}

// Routes spdlog's default logger into memory for the test's lifetime, "level message" per line.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(128)),
        previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("health-test", sink_);
    logger->set_pattern("%l %v");
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }

  bool has(const std::string& line) const {
    for (std::string l : sink_->last_formatted()) {
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (l == line) return true;
    }
    return false;
  }
  std::string all() const {
    std::string out;
    for (const std::string& l : sink_->last_formatted()) out += l;
    return out;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace

TEST_CASE("tcp check: a listening server comes up after the first check", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  Farm farm = make_farm("api", {server.address()}, tcp_check());
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});

  REQUIRE(wait_checks(io, hc, 1));
  CHECK(farm.status() == Health::kUp);
  CHECK(farm.health().passes.load() == 1);
  CHECK(farm.health().last_check_ms.load() > 0);
  CHECK(log.has("info server api/" + server.address() + " UP: first check passed"));
}

TEST_CASE("tcp check: a closed port is down after the first check", "[health]") {
  LogCapture log;
  asio::io_context io;
  std::string address = closed_port_address(io);
  Farm farm = make_farm("api", {address}, tcp_check());
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});

  REQUIRE(wait_checks(io, hc, 1));
  CHECK(farm.status() == Health::kDown);
  CHECK(farm.health().passes.load() == 0);
  CHECK(farm.health().last_check_ms.load() > 0);
  INFO(log.all());
  CHECK(
      log.has("warning server api/" + address + " DOWN: first check failed (connection refused)"));
}

TEST_CASE("http check: the status decides", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  config::HealthCheck check = http_check();
  check.expect_min = 200;
  check.expect_max = 299;
  Farm farm = make_farm("api", {server.address()}, check);
  upstream::HealthChecker hc(io);

  SECTION("200 is up, and the request is exactly the documented one") {
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(farm.status() == Health::kUp);
    CHECK(server.last_request ==
          "GET /healthz HTTP/1.1\r\nHost: " + server.address() +
              "\r\nUser-Agent: switchyard-health\r\nConnection: close\r\n\r\n");
  }
  SECTION("500 is down") {
    server.response = http_response(500, "oops");
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(farm.status() == Health::kDown);
    INFO(log.all());
    CHECK(log.has("warning server api/" + server.address() +
                  " DOWN: first check failed (status 500)"));
  }
  SECTION("a configured method and Host header are sent") {
    Farm custom = farm;
    custom.config = make_config("api", {server.address()}, check);
    config::HealthCheck& h = *custom.config->pools.at("api").health;
    h.method = "HEAD";
    h.host = "health.example";
    server.response = "HTTP/1.1 204 No Content\r\n\r\n";
    hc.update({custom.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(custom.status() == Health::kUp);
    CHECK(server.last_request.rfind("HEAD /healthz HTTP/1.1\r\nHost: health.example\r\n", 0) == 0);
  }
}

TEST_CASE("http check: body_contains must be found in the body", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  config::HealthCheck check = http_check();
  check.body_contains = "healthy";
  Farm farm = make_farm("api", {server.address()}, check);
  upstream::HealthChecker hc(io);

  SECTION("found (body delimited by Content-Length)") {
    server.response = http_response(200, "I am healthy\n");
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(farm.status() == Health::kUp);
  }
  SECTION("found (body delimited by the connection close)") {
    server.response = http_response(200, "still healthy", false);
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(farm.status() == Health::kUp);
  }
  SECTION("missing") {
    server.response = http_response(200, "degraded");
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(farm.status() == Health::kDown);
    INFO(log.all());
    CHECK(log.has("warning server api/" + server.address() +
                  " DOWN: first check failed (body mismatch)"));
  }
}

TEST_CASE("http check: a server that never answers times out", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  config::HealthCheck check = http_check();
  check.timeout = 100ms;
  check.fall = 2;
  Farm farm = make_farm("api", {server.address()}, check);
  upstream::HealthChecker hc(io);

  SECTION("first check") {
    server.mode = TestServer::Mode::kHang;
    auto start = std::chrono::steady_clock::now();
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    CHECK(std::chrono::steady_clock::now() - start >= 100ms);
    CHECK(farm.status() == Health::kDown);
    INFO(log.all());
    CHECK(log.has("warning server api/" + server.address() + " DOWN: first check timed out"));
  }
  SECTION("consecutive timeouts take an up server down") {
    hc.update({farm.target()});
    REQUIRE(wait_checks(io, hc, 1));
    REQUIRE(farm.status() == Health::kUp);
    server.mode = TestServer::Mode::kHang;
    REQUIRE(wait_checks(io, hc, 2));
    CHECK(farm.status() == Health::kUp);
    REQUIRE(wait_checks(io, hc, 3));
    CHECK(farm.status() == Health::kDown);
    INFO(log.all());
    CHECK(log.has("warning server api/" + server.address() + " DOWN: 2 consecutive timeouts"));
  }
}

TEST_CASE("rise and fall count consecutive results; passes counts every pass", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  Farm farm = make_farm("api", {server.address()}, http_check());  // rise 2, fall 3
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});

  REQUIRE(wait_checks(io, hc, 1));
  REQUIRE(farm.status() == Health::kUp);
  CHECK(farm.health().passes.load() == 1);

  // Right after a check finished, the next one has not started: it sees the new answer.
  server.response = http_response(500, "");
  REQUIRE(wait_checks(io, hc, 2));
  CHECK(farm.status() == Health::kUp);
  REQUIRE(wait_checks(io, hc, 3));
  CHECK(farm.status() == Health::kUp);
  REQUIRE(wait_checks(io, hc, 4));
  CHECK(farm.status() == Health::kDown);
  CHECK(farm.health().passes.load() == 1);

  server.response = http_response(200, "");
  REQUIRE(wait_checks(io, hc, 5));
  CHECK(farm.status() == Health::kDown);
  CHECK(farm.health().passes.load() == 2);
  REQUIRE(wait_checks(io, hc, 6));
  CHECK(farm.status() == Health::kUp);
  CHECK(farm.health().passes.load() == 3);

  // A failure between passes restarts the count.
  server.response = http_response(500, "");
  REQUIRE(wait_checks(io, hc, 7));
  server.response = http_response(200, "");
  REQUIRE(wait_checks(io, hc, 8));
  server.response = http_response(500, "");
  REQUIRE(wait_checks(io, hc, 10));
  CHECK(farm.status() == Health::kUp);
  REQUIRE(wait_checks(io, hc, 11));
  CHECK(farm.status() == Health::kDown);

  INFO(log.all());
  std::string who = "server api/" + server.address();
  CHECK(log.has("warning " + who + " DOWN: 3 consecutive failures (status 500)"));
  CHECK(log.has("info " + who + " UP: 2 consecutive successes"));
}

TEST_CASE("update keeps the counters of unchanged servers", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server(io);
  config::HealthCheck check = http_check();
  check.fall = 2;
  Farm farm = make_farm("api", {server.address()}, check);
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});
  REQUIRE(wait_checks(io, hc, 1));
  REQUIRE(farm.status() == Health::kUp);
  server.response = http_response(500, "");
  REQUIRE(wait_checks(io, hc, 2));
  REQUIRE(farm.status() == Health::kUp);  // one failure of two

  // A reload: a new Config object with the same pool, and the same PoolState.
  Farm reloaded = farm;
  reloaded.config = make_config("api", {server.address()}, check);

  SECTION("same settings: the next failure is the second one") {
    hc.update({reloaded.target()});
    farm.config.reset();  // the checker needs nothing from the old config
    REQUIRE(wait_checks(io, hc, 3));
    CHECK(farm.status() == Health::kDown);
    INFO(log.all());
    CHECK(log.has("warning server api/" + server.address() +
                  " DOWN: 2 consecutive failures (status 500)"));
  }
  SECTION("changed settings: counting starts again") {
    reloaded.config->pools.at("api").health->timeout = 400ms;
    hc.update({reloaded.target()});
    REQUIRE(wait_checks(io, hc, 3));
    CHECK(farm.status() == Health::kUp);
    REQUIRE(wait_checks(io, hc, 4));
    CHECK(farm.status() == Health::kDown);
  }
}

TEST_CASE("update stops the checks of pools no longer listed", "[health]") {
  LogCapture log;
  asio::io_context io;
  TestServer server_a(io);
  TestServer server_b(io);
  Farm a = make_farm("a", {server_a.address()}, tcp_check());
  Farm b = make_farm("b", {server_b.address()}, tcp_check());
  upstream::HealthChecker hc(io);
  hc.update({a.target(), b.target()});
  REQUIRE(run_until(io, [&] { return a.health().passes.load() >= 2 && b.health().passes >= 2; }));

  hc.update({a.target()});
  std::uint64_t b_passes = b.health().passes.load();
  std::int64_t b_last = b.health().last_check_ms.load();
  std::uint64_t a_passes = a.health().passes.load();
  run_for(io, 200ms);
  CHECK(b.health().passes.load() == b_passes);
  CHECK(b.health().last_check_ms.load() == b_last);
  CHECK(b.status() == Health::kUp);  // the last verdict stays; the pool's owner decides its fate
  CHECK(a.health().passes.load() >= a_passes + 3);
}

TEST_CASE("pools without health checks are not checked and read as serving", "[health]") {
  asio::io_context io;
  TestServer server(io);
  Farm farm = make_farm("api", {server.address()}, std::nullopt);
  // Left over from checks configured before a reload removed them.
  farm.health().state.store(Health::kDown);
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});
  CHECK(farm.status() == Health::kUnchecked);
  run_for(io, 100ms);
  CHECK(hc.checks_completed() == 0);
  CHECK(server.accepted == 0);
}

TEST_CASE("stop and destruction cancel a check in flight", "[health]") {
  asio::io_context io;
  TestServer server(io);
  server.mode = TestServer::Mode::kHang;
  config::HealthCheck check = http_check();
  check.timeout = 1000ms;
  Farm farm = make_farm("api", {server.address()}, check);
  auto hc = std::make_unique<upstream::HealthChecker>(io);

  SECTION("stop") {
    hc->update({farm.target()});
    REQUIRE(run_until(io, [&] { return server.accepted == 1; }));
    hc->stop();
    run_for(io, 200ms);
    CHECK(hc->checks_completed() == 0);
    CHECK(server.accepted == 1);
  }
  SECTION("destructor") {
    hc->update({farm.target()});
    REQUIRE(run_until(io, [&] { return server.accepted == 1; }));
    hc.reset();  // handlers still queued must not touch the checker
    run_for(io, 200ms);
    CHECK(server.accepted == 1);
  }
  CHECK(farm.status() == Health::kUnchecked);
  CHECK(farm.health().last_check_ms.load() == 0);
}

TEST_CASE("servers on IPv6 loopback are checked", "[health]") {
  asio::io_context io;
  std::optional<TestServer> server;
  try {
    server.emplace(io, "::1");
  } catch (const boost::system::system_error& e) {
    WARN("IPv6 loopback unusable, skipped: " << e.what());
    return;
  }
  LogCapture log;
  Farm farm = make_farm("v6", {server->address()}, http_check());
  upstream::HealthChecker hc(io);
  hc.update({farm.target()});
  REQUIRE(wait_checks(io, hc, 1));
  CHECK(farm.status() == Health::kUp);
  CHECK(server->last_request.find("\r\nHost: [::1]:") != std::string::npos);
  CHECK(log.has("info server v6/" + server->address() + " UP: first check passed"));
}
