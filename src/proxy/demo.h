// `switchyard demo`: the proxy in front of a few built-in origin servers on loopback, so a new
// user sees it work with one command.
#pragma once

#include <cstdint>
#include <string>

namespace switchyard::proxy {

// A minimal HTTP/1.1 origin (thread per connection, keep-alive) that answers every request with
// which origin it is and what it was asked. For demos and smoke tests, not for load.
class DemoOrigin {
 public:
  explicit DemoOrigin(std::string name);
  ~DemoOrigin();
  // Listens on 127.0.0.1 (port 0 = any); returns an error message, empty on success.
  std::string start(std::uint16_t port = 0);
  std::uint16_t port() const { return port_; }

 private:
  void serve(int fd);

  std::string name_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
};

// Runs the demo until Ctrl-C; returns the exit code.
int run_demo(std::uint16_t port, unsigned origins);

}  // namespace switchyard::proxy
