#include "proxy/demo.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "config/config_loader.h"
#include "http/message_parser.h"
#include "proxy/server.h"

namespace switchyard::proxy {

DemoOrigin::DemoOrigin(std::string name) : name_(std::move(name)) {}

DemoOrigin::~DemoOrigin() {
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
}

std::string DemoOrigin::start(std::uint16_t port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 ||
      ::listen(listen_fd_, 1024) < 0) {
    return fmt::format("demo origin {}: {}", name_, std::strerror(errno));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  int fd = listen_fd_;
  std::thread([this, fd] {
    for (;;) {
      int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::thread([this, c] { serve(c); }).detach();
    }
  }).detach();
  return {};
}

void DemoOrigin::serve(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  http::MessageParser parser(http::MessageParser::Kind::kRequest, 256);
  std::vector<char> buf(64 * 1024);
  std::size_t len = 0, parsed = 0;
  parser.begin_head(buf.data());
  std::string method, target;
  bool keep_alive = true;
  bool need_more = true;
  for (;;) {
    if (need_more) {
      if (len == buf.size()) break;  // head too large for a demo
      ssize_t n = ::recv(fd, buf.data() + len, buf.size() - len, 0);
      if (n <= 0) break;
      len += static_cast<std::size_t>(n);
    }
    std::size_t consumed = 0;
    auto st = parser.parse(buf.data() + parsed, len - parsed, consumed);
    parsed += consumed;
    need_more = st == http::MessageParser::Status::kNeedMore;
    if (st == http::MessageParser::Status::kError) break;
    if (st == http::MessageParser::Status::kHeadComplete) {
      const http::Head& h = parser.head();
      method = std::string(h.method.in(buf.data()));
      target = std::string(h.target.in(buf.data()));
      keep_alive = h.keep_alive;
      continue;
    }
    if (st == http::MessageParser::Status::kMessageComplete) {
      std::string body = fmt::format("Hello from demo origin {} (127.0.0.1:{}): {} {}\n", name_,
                                     port_, method, target);
      std::string resp = fmt::format(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n"
          "X-Demo-Origin: {}\r\n{}\r\n{}",
          body.size(), name_, keep_alive ? "" : "Connection: close\r\n",
          method == "HEAD" ? "" : body);
      if (::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL) < 0 || !keep_alive) break;
      // Pipelined bytes move to the front for the next head.
      std::memmove(buf.data(), buf.data() + parsed, len - parsed);
      len -= parsed;
      parsed = 0;
      parser.begin_head(buf.data());
      continue;
    }
    // kNeedMore: the body of this request is being skipped; drop consumed bytes.
    if (!parser.in_head()) {
      len = parsed = 0;
    }
  }
  ::close(fd);
}

int run_demo(std::uint16_t port, unsigned origins) {
  std::vector<std::unique_ptr<DemoOrigin>> servers;
  std::string server_list;
  for (unsigned i = 0; i < origins; ++i) {
    auto o = std::make_unique<DemoOrigin>(std::string(1, static_cast<char>('a' + i)));
    if (std::string err = o->start(); !err.empty()) {
      spdlog::error("{}", err);
      return 1;
    }
    server_list += fmt::format("      - 127.0.0.1:{}\n", o->port());
    servers.push_back(std::move(o));
  }
  std::string yaml = fmt::format(
      "# switchyard demo: three built-in origins behind one listener, round robin\n"
      "workers: 2\n"
      "access_log: {{ format: common }}\n"
      "listeners:\n"
      "  - name: demo\n"
      "    bind: 127.0.0.1:{}\n"
      "    routes: main\n"
      "routes:\n"
      "  main:\n"
      "    - pool: demo\n"
      "pools:\n"
      "  demo:\n"
      "    scheduler: rr\n"
      "    servers:\n{}",
      port, server_list);
  config::LoadResult loaded = config::load_string(yaml, "<demo>");
  if (!loaded.ok()) {
    for (const auto& d : loaded.diagnostics) spdlog::error("{}", d.to_string());
    return 1;
  }
  std::printf("switchyard demo — configuration in use:\n\n%s\n", yaml.c_str());
  std::fflush(stdout);
  std::string err;
  auto snapshot = make_snapshot(loaded.config, err);
  if (!snapshot) {
    spdlog::error("{}", err);
    return 1;
  }
  return run_server(snapshot, "", [](std::uint16_t port) {
    std::printf(
        "\nTry:\n  curl -v http://127.0.0.1:%u/\n  curl http://127.0.0.1:%u/hello   (repeat: "
        "the origin changes, round robin)\n  curl -I http://127.0.0.1:%u/\n\nCtrl-C stops the "
        "demo.\n\n",
        port, port, port);
    std::fflush(stdout);
  });
}

}  // namespace switchyard::proxy
