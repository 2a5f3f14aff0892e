// The only translation unit of the proxy that includes Boost.Beast's server side (slow to
// compile: keep it that way). Endpoints live in api.cc.
#include "proxy/admin/admin_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <type_traits>
#include <vector>

#include "proxy/admin/api.h"
#include "proxy/admin/auth.h"
#include "proxy/control_plane.h"

namespace switchyard::proxy::admin {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr std::size_t kMaxConnections = 256;
constexpr std::size_t kMaxQueuedMessages = 16;  // event stream messages a slow client may owe
constexpr auto kReadTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

// Sent with every response: the dashboard loads only its own files.
constexpr std::pair<const char*, const char*> kSecurityHeaders[] = {
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; frame-ancestors 'none'"},
};

tcp::endpoint endpoint_of(const config::SocketAddress& a) {
  tcp::endpoint ep;
  std::memcpy(ep.data(), a.sa(), a.length);
  ep.resize(a.length);
  return ep;
}

std::string host_text(const tcp::endpoint& ep) {
  return ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
}

// An event-stream subscriber.
struct Sink {
  virtual ~Sink() = default;
  virtual void push(std::shared_ptr<const std::string> message) = 0;
  virtual void close() = 0;
};

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(net::io_context& io, ControlPlane& control)
      : io(io), control(control), api(control, tokens), timer(io) {}

  net::io_context& io;
  ControlPlane& control;
  TokenStore tokens;
  Api api;
  std::unique_ptr<ssl::context> tls;
  std::optional<tcp::acceptor> acceptor;
  std::optional<tcp::acceptor> metrics_acceptor;
  net::steady_timer timer;
  std::vector<std::weak_ptr<Sink>> sinks;
  std::size_t connections = 0;
  bool stopped = false;
  std::string bind_text;

  void accept(tcp::acceptor& a, bool metrics_only);
  void spawn(tcp::socket socket, bool metrics_only);
  void tick();
};

namespace {

template <typename Stream>
class Connection : public Sink, public std::enable_shared_from_this<Connection<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <typename... Args>
  Connection(std::shared_ptr<AdminServer::Impl> server, bool metrics_only, std::string client,
             Args&&... args)
      : server_(std::move(server)),
        stream_(std::forward<Args>(args)...),
        metrics_only_(metrics_only),
        client_(std::move(client)) {
    ++server_->connections;
  }
  ~Connection() override { --server_->connections; }

  void start() {
    if constexpr (kTls) {
      beast::get_lowest_layer(stream_).expires_after(kHandshakeTimeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](const error_code& ec) {
                                if (ec) return self->close();
                                self->read();
                              });
    } else {
      read();
    }
  }

  void push(std::shared_ptr<const std::string> message) override {
    if (closed_) return;
    if (queue_.size() >= kMaxQueuedMessages) return close();  // not reading: let it go
    queue_.push_back(std::move(message));
    if (!writing_) write_next();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
  }

 private:
  void read() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(1024 * 1024);
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](const error_code& ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(const error_code& ec) {
    if (ec) return close();
    http::request<http::string_body> req = parser_->release();
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.authorization = std::string(req[http::field::authorization]);
    r.body = std::move(req.body());
    r.client = client_;
    Api& api = server_->api;
    if (!metrics_only_ && api.is_event_stream(r)) {
      if (auto denied = api.authorize_stream(r)) return send(*denied, req.keep_alive(), false);
      return start_stream();
    }
    HttpResponse resp = metrics_only_ ? api.handle_metrics_only(r) : api.handle(r);
    send(resp, req.keep_alive(), req.method() == http::verb::head);
  }

  void send(const HttpResponse& resp, bool keep_alive, bool head) {
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(resp.status));
    res_.set(http::field::server, "switchyard");
    res_.set(http::field::content_type, resp.content_type);
    for (const auto& [name, value] : kSecurityHeaders) res_.set(name, value);
    for (const auto& [name, value] : resp.headers) res_.set(name, value);
    res_.keep_alive(keep_alive);
    if (head) {
      res_.content_length(resp.body.size());
    } else {
      res_.body() = resp.body;
      res_.prepare_payload();
    }
    beast::get_lowest_layer(stream_).expires_after(kWriteTimeout);
    http::async_write(
        stream_, res_,
        [self = this->shared_from_this(), keep_alive](const error_code& ec, std::size_t) {
          if (ec || !keep_alive) return self->close();
          self->read();
        });
  }

  // Server-Sent Events: a head, then one `data:` message per second until the client leaves.
  void start_stream() {
    std::string head =
        "HTTP/1.1 200 OK\r\nServer: switchyard\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nConnection: keep-alive\r\n";
    for (const auto& [name, value] : kSecurityHeaders) {
      head.append(name).append(": ").append(value).append("\r\n");
    }
    head += "\r\nretry: 2000\n\n";
    head += "data: " + server_->api.stream_message() + "\n\n";
    server_->sinks.push_back(this->weak_from_this());
    push(std::make_shared<const std::string>(std::move(head)));
    watch();
  }

  // Notices the client closing an event stream (nothing else is expected from it).
  void watch() {
    stream_.async_read_some(net::buffer(scratch_),
                            [self = this->shared_from_this()](const error_code& ec, std::size_t) {
                              if (ec) return self->close();
                              self->watch();
                            });
  }

  void write_next() {
    if (queue_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    beast::get_lowest_layer(stream_).expires_after(kWriteTimeout);
    net::async_write(stream_, net::buffer(*queue_.front()),
                     [self = this->shared_from_this()](const error_code& ec, std::size_t) {
                       if (ec) return self->close();
                       self->queue_.pop_front();
                       self->write_next();
                     });
  }

  std::shared_ptr<AdminServer::Impl> server_;
  Stream stream_;
  bool metrics_only_;
  std::string client_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  bool writing_ = false;
  bool closed_ = false;
  char scratch_[256];
};

}  // namespace

void AdminServer::Impl::accept(tcp::acceptor& a, bool metrics_only) {
  a.async_accept(
      [self = shared_from_this(), &a, metrics_only](const error_code& ec, tcp::socket socket) {
        if (self->stopped) return;
        if (ec) {
          spdlog::warn("admin: accept: {}", ec.message());
        } else if (self->connections >= kMaxConnections) {
          error_code ignored;
          socket.close(ignored);
        } else {
          self->spawn(std::move(socket), metrics_only);
        }
        self->accept(a, metrics_only);
      });
}

void AdminServer::Impl::spawn(tcp::socket socket, bool metrics_only) {
  error_code ec;
  tcp::endpoint peer = socket.remote_endpoint(ec);
  std::string client = ec ? std::string("?") : peer.address().to_string();
  if (tls && !metrics_only) {
    std::make_shared<Connection<beast::ssl_stream<beast::tcp_stream>>>(
        shared_from_this(), metrics_only, std::move(client), beast::tcp_stream(std::move(socket)),
        *tls)
        ->start();
  } else {
    std::make_shared<Connection<beast::tcp_stream>>(shared_from_this(), metrics_only,
                                                    std::move(client), std::move(socket))
        ->start();
  }
}

void AdminServer::Impl::tick() {
  if (stopped) return;
  api.tick();
  std::shared_ptr<const std::string> message;
  std::vector<std::weak_ptr<Sink>> alive;
  for (auto& weak : sinks) {
    std::shared_ptr<Sink> sink = weak.lock();
    if (!sink) continue;
    if (!message)
      message = std::make_shared<const std::string>("data: " + api.stream_message() + "\n\n");
    sink->push(message);
    alive.push_back(std::move(weak));
  }
  sinks = std::move(alive);
  timer.expires_after(std::chrono::seconds(1));
  timer.async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->tick();
  });
}

AdminServer::AdminServer(boost::asio::io_context& io, ControlPlane& control)
    : impl_(std::make_shared<Impl>(io, control)) {}

AdminServer::~AdminServer() {
  stop();
}

std::string AdminServer::start(const config::Admin& admin) {
  Impl& s = *impl_;
  if (std::string err = s.tokens.load(admin); !err.empty()) return err;
  for (const std::string* file : {&admin.token_file, &admin.read_only_token_file}) {
    struct stat st {};
    if (!file->empty() && ::stat(file->c_str(), &st) == 0 && (st.st_mode & S_IROTH)) {
      spdlog::warn("admin: token file {} is readable by every user; chmod o-r it", *file);
    }
  }
  if (admin.tls) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    error_code ec;
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                         ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                     ec);
    if (!ec) ctx->use_certificate_chain_file(admin.tls->cert, ec);
    if (ec) return "admin.tls: certificate " + admin.tls->cert + ": " + ec.message();
    ctx->use_private_key_file(admin.tls->key, ssl::context::pem, ec);
    if (ec) return "admin.tls: key " + admin.tls->key + ": " + ec.message();
    s.tls = std::move(ctx);
  }
  auto open = [&](std::optional<tcp::acceptor>& acceptor, const config::SocketAddress& bind,
                  const char* what, const char* scheme) -> std::string {
    error_code ec;
    tcp::endpoint ep = endpoint_of(bind);
    acceptor.emplace(s.io);
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      acceptor.reset();
      return std::string("cannot listen on ") + bind.text + ": " + ec.message();
    }
    tcp::endpoint local = acceptor->local_endpoint(ec);
    spdlog::info("{} ready on {}://{}:{}", what, scheme, host_text(local), local.port());
    return {};
  };
  if (std::string err = open(s.acceptor, admin.bind, "admin API", s.tls ? "https" : "http");
      !err.empty()) {
    return err;
  }
  if (admin.metrics_bind) {
    if (std::string err = open(s.metrics_acceptor, *admin.metrics_bind, "metrics", "http");
        !err.empty()) {
      return err;
    }
  }
  s.bind_text = admin.bind.text;
  s.accept(*s.acceptor, false);
  if (s.metrics_acceptor) s.accept(*s.metrics_acceptor, true);
  // Reloads re-read the token files (a file that no longer parses refuses the reload); the
  // addresses and TLS settings change only at restart.
  std::weak_ptr<Impl> weak = impl_;
  s.control.set_admin_reload([weak](const config::Config& next, bool commit) -> std::string {
    auto self = weak.lock();
    if (!self || !next.admin) {
      if (self && commit) spdlog::warn("admin: the admin block changes only at restart");
      return {};
    }
    std::vector<Token> tokens;
    if (std::string err = TokenStore::check(*next.admin, &tokens); !err.empty()) {
      return "admin: " + err;
    }
    if (commit) {
      self->tokens.set(std::move(tokens));
      if (next.admin->bind.text != self->bind_text) {
        spdlog::warn("admin: admin.bind changes only at restart; still on {}", self->bind_text);
      }
    }
    return {};
  });
  s.tick();
  return {};
}

void AdminServer::stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  s.control.set_admin_reload({});
  error_code ignored;
  if (s.acceptor) s.acceptor->close(ignored);
  if (s.metrics_acceptor) s.metrics_acceptor->close(ignored);
  s.timer.cancel();
  for (auto& weak : s.sinks) {
    if (auto sink = weak.lock()) sink->close();
  }
  s.sinks.clear();
}

}  // namespace switchyard::proxy::admin
