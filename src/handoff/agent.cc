#include "handoff/agent.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <boost/asio.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "handoff/message.h"
#include "handoff/tcp_state.h"

namespace switchyard::handoff {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr const char* kUsage =
    "usage: switchyard agent --listen ADDR:PORT --key FILE --backend ADDR:PORT\n"
    "  --listen ADDR:PORT   where front ends connect (the control channel)\n"
    "  --key FILE           shared secret, at least 32 bytes, the same file as the front end's\n"
    "  --backend ADDR:PORT  the local web server that serves adopted connections\n";

struct Options {
  tcp::endpoint listen;
  tcp::endpoint backend;
  std::string key;
};

tcp::endpoint endpoint_of(const config::SocketAddress& a) {
  tcp::endpoint e;
  std::memcpy(e.data(), a.sa(), a.length);
  e.resize(a.length);
  return e;
}

// Relays an adopted connection and a connection to the backend until both directions are done:
// EOF on one side becomes a shutdown(SHUT_WR) on the other, so half-closes pass through. Bytes
// move socket -> pipe -> socket with non-blocking splice(2) when readiness says so (as the
// proxy's body splice does, src/splice/body_pump.h): the agent never copies them, which matters
// because handoff moves the response traffic (downloads) onto the real servers.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(asio::io_context& io, core::UniqueFd client, std::string name)
      : client_(io), backend_(io), name_(std::move(name)) {
    boost::system::error_code ec;
    tcp protocol = tcp::v4();
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::getsockname(client.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        local.ss_family == AF_INET6) {
      protocol = tcp::v6();
    }
    client_.assign(protocol, client.release(), ec);
  }

  ~Relay() {
    for (Direction* d : {&up_, &down_}) {
      if (d->pipe_r >= 0) ::close(d->pipe_r);
      if (d->pipe_w >= 0) ::close(d->pipe_w);
    }
  }

  void start(const tcp::endpoint& backend) {
    backend_.async_connect(backend, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) {
        spdlog::warn("agent: {}: backend connect: {}", self->name_, ec.message());
        self->abort();
        return;
      }
      boost::system::error_code ignored;
      self->client_.native_non_blocking(true, ignored);
      self->backend_.native_non_blocking(true, ignored);
      self->backend_.set_option(tcp::no_delay(true), ignored);
      if (!self->open_pipe(self->up_) || !self->open_pipe(self->down_)) {
        spdlog::warn("agent: {}: pipe: {}", self->name_, std::strerror(errno));
        self->abort();
        return;
      }
      self->up_.from = &self->client_;
      self->up_.to = &self->backend_;
      self->down_.from = &self->backend_;
      self->down_.to = &self->client_;
      self->pump(self->up_);
      self->pump(self->down_);
    });
  }

 private:
  struct Direction {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    int pipe_r = -1;
    int pipe_w = -1;
    std::size_t capacity = 0;
    std::size_t in_pipe = 0;
    bool eof = false;
    bool done = false;
    std::uint64_t bytes = 0;
  };

  static bool open_pipe(Direction& d) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    d.pipe_r = fds[0];
    d.pipe_w = fds[1];
    // 1 MiB (the unprivileged maximum) moves a MiB in a few calls; the default 64 KiB if refused.
    int size = ::fcntl(d.pipe_w, F_SETPIPE_SZ, 1 << 20);
    if (size < 0) size = ::fcntl(d.pipe_w, F_GETPIPE_SZ);
    d.capacity = size > 0 ? static_cast<std::size_t>(size) : 65536;
    return true;
  }

  // Splices until it has to wait, then waits for the readiness it needs. Yields to the other
  // connections after a few MiB.
  void pump(Direction& d) {
    if (aborted_ || d.done) return;
    std::size_t moved = 0;
    for (;;) {
      bool want_read = false;
      if (!d.eof && d.in_pipe < d.capacity) {
        ssize_t n = ::splice(d.from->native_handle(), nullptr, d.pipe_w, nullptr,
                             d.capacity - d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe += static_cast<std::size_t>(n);
        } else if (n == 0) {
          d.eof = true;
        } else if (errno == EAGAIN) {
          want_read = true;
        } else if (errno != EINTR) {
          return abort();
        }
      }
      if (d.in_pipe > 0) {
        ssize_t n = ::splice(d.pipe_r, nullptr, d.to->native_handle(), nullptr, d.in_pipe,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe -= static_cast<std::size_t>(n);
          d.bytes += static_cast<std::uint64_t>(n);
          moved += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EAGAIN) {
          return wait(d, *d.to, tcp::socket::wait_write);
        } else if (n == 0 || errno != EINTR) {
          return abort();  // (0: the pipe lost its bytes, which cannot happen)
        }
      }
      if (d.eof && d.in_pipe == 0) {
        boost::system::error_code ignored;
        d.to->shutdown(tcp::socket::shutdown_send, ignored);
        d.done = true;
        return maybe_finish();
      }
      if (want_read && d.in_pipe == 0) return wait(d, *d.from, tcp::socket::wait_read);
      if (moved >= (4u << 20)) {
        asio::post(client_.get_executor(), [self = shared_from_this(), &d] { self->pump(d); });
        return;
      }
    }
  }

  void wait(Direction& d, tcp::socket& s, tcp::socket::wait_type what) {
    s.async_wait(what, [self = shared_from_this(), &d](boost::system::error_code ec) {
      if (ec) return self->abort();
      self->pump(d);
    });
  }

  void maybe_finish() {
    if (up_.done && down_.done) {
      spdlog::info("agent: {}: done, {} bytes in, {} bytes out", name_, up_.bytes, down_.bytes);
      boost::system::error_code ignored;
      client_.close(ignored);
      backend_.close(ignored);
    }
  }

  void abort() {
    if (aborted_) return;
    aborted_ = true;
    boost::system::error_code ignored;
    client_.close(ignored);
    backend_.close(ignored);
  }

  tcp::socket client_;
  tcp::socket backend_;
  std::string name_;
  Direction up_, down_;
  bool aborted_ = false;
};

// One front end's control connection.
class Control : public std::enable_shared_from_this<Control> {
 public:
  Control(asio::io_context& io, tcp::socket s, const Options& o)
      : io_(io), sock_(std::move(s)), opts_(o), channel_(Channel::Side::kAgent, o.key) {
    boost::system::error_code ec;
    auto ep = sock_.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void start() {
    out_ = channel_.hello();
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

 private:
  void read() {
    std::size_t need = Channel::frame_size(in_);
    if (need != 0 && in_.size() >= need) {
      std::string frame = in_.substr(0, need);
      in_.erase(0, need);
      if (!handle(frame)) return;
      read();
      return;
    }
    sock_.async_read_some(asio::buffer(buf_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            if (ec) {
                              if (ec != asio::error::eof)
                                spdlog::info("agent: front end {}: {}", self->peer_, ec.message());
                              return;  // pending frozen sockets close silently with this object
                            }
                            self->in_.append(self->buf_.data(), n);
                            self->read();
                          });
  }

  bool handle(const std::string& data) {
    std::string error;
    auto f = channel_.decode(data, error);
    if (!f) {
      spdlog::warn("agent: front end {}: {}; closing the channel", peer_, error);
      boost::system::error_code ignored;
      sock_.close(ignored);
      return false;
    }
    switch (f->type) {
      case FrameType::kOffer: {
        std::string why;
        core::UniqueFd fd = restore(f->state, f->unread, why);
        Frame reply;
        reply.id = f->id;
        if (fd) {
          reply.type = FrameType::kReady;
          names_[f->id] = describe(f->state);
          frozen_[f->id] = std::move(fd);
        } else {
          reply.type = FrameType::kFailed;
          reply.reason = why;
          spdlog::warn("agent: cannot restore {}: {}", describe(f->state), why);
        }
        send(channel_.encode(reply));
        break;
      }
      case FrameType::kGo: {
        auto it = frozen_.find(f->id);
        if (it == frozen_.end()) break;
        core::UniqueFd fd = std::move(it->second);
        frozen_.erase(it);
        std::string name = std::move(names_[f->id]);
        names_.erase(f->id);
        std::string why;
        if (!resume(fd.get(), why)) {
          spdlog::warn("agent: {}: {}", name, why);
          break;
        }
        spdlog::info("agent: adopted {}", name);
        std::make_shared<Relay>(io_, std::move(fd), name)->start(opts_.backend);
        break;
      }
      case FrameType::kAbort:
        frozen_.erase(f->id);  // closing a frozen socket sends nothing
        names_.erase(f->id);
        break;
      default:
        spdlog::warn("agent: front end {}: unexpected frame", peer_);
        break;
    }
    return true;
  }

  void send(std::string frame) {
    bool idle = pending_.empty();
    pending_.push_back(std::move(frame));
    if (idle) write_next();
  }

  void write_next() {
    asio::async_write(sock_, asio::buffer(pending_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec) return;
                        self->pending_.erase(self->pending_.begin());
                        if (!self->pending_.empty()) self->write_next();
                      });
  }

  asio::io_context& io_;
  tcp::socket sock_;
  const Options& opts_;
  Channel channel_;
  std::string peer_;
  std::string out_;
  std::string in_;
  std::array<char, 16 * 1024> buf_;
  std::vector<std::string> pending_;
  std::map<std::uint64_t, core::UniqueFd> frozen_;
  std::map<std::uint64_t, std::string> names_;
};

void accept_loop(asio::io_context& io, tcp::acceptor& acc, const Options& o) {
  acc.async_accept([&io, &acc, &o](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<Control>(io, std::move(s), o)->start();
    }
    if (acc.is_open()) accept_loop(io, acc, o);
  });
}

int usage(const std::string& msg) {
  std::fprintf(stderr, "switchyard agent: %s\n\n%s", msg.c_str(), kUsage);
  return 2;
}

}  // namespace

int agent_main(int argc, char** argv) {
  Options o;
  std::string listen, backend, key_file;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    bool ok = true;
    if (a == "--listen") {
      ok = value(listen);
    } else if (a == "--backend") {
      ok = value(backend);
    } else if (a == "--key") {
      ok = value(key_file);
    } else {
      return usage("unknown option " + a);
    }
    if (!ok) return usage(a + " needs a value");
  }
  if (listen.empty() || backend.empty() || key_file.empty()) {
    return usage("--listen, --key and --backend are required");
  }
  config::SocketAddress la, ba;
  if (std::string e = config::parse_socket_address(listen, la); !e.empty()) {
    return usage("--listen: " + e);
  }
  if (std::string e = config::parse_socket_address(backend, ba); !e.empty()) {
    return usage("--backend: " + e);
  }
  std::string error;
  auto key = read_key_file(key_file, error);
  if (!key) {
    std::fprintf(stderr, "switchyard agent: %s\n", error.c_str());
    return 1;
  }
  o.listen = endpoint_of(la);
  o.backend = endpoint_of(ba);
  o.key = std::move(*key);

  asio::io_context io(1);
  tcp::acceptor acc(io);
  boost::system::error_code ec;
  acc.open(o.listen.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(o.listen, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "switchyard agent: listen %s: %s\n", listen.c_str(), ec.message().c_str());
    return 1;
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    acc.close();
    io.stop();
  });
  accept_loop(io, acc, o);
  spdlog::info("agent: listening on {} for front ends; adopted connections go to {}", listen,
               backend);
  io.run();
  return 0;
}

}  // namespace switchyard::handoff
