// The worker's pipe pool and the splice pump, over real loopback TCP sockets.
#include "splice/pipe_pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "splice/body_pump.h"

namespace {

using switchyard::splice::BodyPump;
using switchyard::splice::Pipe;
using switchyard::splice::PipePool;

bool fd_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

// A connected pair of non-blocking loopback TCP sockets, closed on destruction.
struct TcpPair {
  int a = -1;
  int b = -1;
  TcpPair() {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(l, 1) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len);
    a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(::connect(a, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    b = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(b >= 0);
    ::close(l);
    ::fcntl(a, F_SETFL, O_NONBLOCK);
    ::fcntl(b, F_SETFL, O_NONBLOCK);
  }
  ~TcpPair() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
};

// Writes all of `data` to the non-blocking socket `fd`, waiting while it is full.
void send_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
    } else {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
    }
  }
}

void wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
}

}  // namespace

TEST_CASE("a pipe owns its descriptors and gets the capacity asked for", "[splice]") {
  int r = -1, w = -1;
  {
    Pipe p;
    REQUIRE(p.open(256 * 1024) == 0);
    REQUIRE(p.valid());
    r = p.read_fd();
    w = p.write_fd();
    CHECK(p.capacity() == 256 * 1024);
    CHECK((::fcntl(r, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(r, F_GETFD) & FD_CLOEXEC) != 0);
    Pipe moved = std::move(p);
    CHECK_FALSE(p.valid());
    CHECK(moved.read_fd() == r);
    CHECK(fd_open(r));
  }
  CHECK_FALSE(fd_open(r));
  CHECK_FALSE(fd_open(w));
}

TEST_CASE("the pool reuses empty pipes and closes the ones with bytes left", "[splice]") {
  PipePool pool(128 * 1024, 2);
  int err = 1;
  Pipe a = pool.acquire(err);
  REQUIRE(err == 0);
  REQUIRE(a.valid());
  const int a_read = a.read_fd();
  pool.release(std::move(a), /*empty=*/true);
  CHECK(pool.idle() == 1);
  Pipe again = pool.acquire(err);
  CHECK(again.read_fd() == a_read);  // the same pipe, not a new one
  CHECK(pool.created() == 1);

  // Bytes left in a pipe (a splice abandoned halfway): never handed out again.
  REQUIRE(::write(again.write_fd(), "xyz", 3) == 3);
  pool.release(std::move(again), /*empty=*/false);
  CHECK(pool.idle() == 0);
  CHECK_FALSE(fd_open(a_read));

  // At most max_idle are kept.
  std::vector<Pipe> pipes;
  for (int i = 0; i < 4; ++i) pipes.push_back(pool.acquire(err));
  std::vector<int> fds;
  for (auto& p : pipes) fds.push_back(p.read_fd());
  for (auto& p : pipes) pool.release(std::move(p), true);
  CHECK(pool.idle() == 2);
  CHECK(fd_open(fds[0]));
  CHECK(fd_open(fds[1]));
  CHECK_FALSE(fd_open(fds[2]));
  CHECK_FALSE(fd_open(fds[3]));

  // A new size drops the kept pipes.
  pool.set_size(64 * 1024);
  CHECK(pool.idle() == 0);
  Pipe small = pool.acquire(err);
  CHECK(small.capacity() == 64 * 1024);
}

TEST_CASE("a refused pipe size falls back to the kernel's and is reported once", "[splice]") {
  // 64 MiB is above the default pipe-max-size; root may still get it (CAP_SYS_RESOURCE).
  PipePool pool(64 * 1024 * 1024, 1);
  int err = 0;
  Pipe p = pool.acquire(err);
  REQUIRE(err == 0);
  if (p.capacity() < pool.size()) {
    CHECK(pool.take_size_refused());
    CHECK_FALSE(pool.take_size_refused());
  } else {
    CHECK_FALSE(pool.take_size_refused());
  }
}

TEST_CASE("the pump moves exactly the body and leaves what follows in the socket", "[splice]") {
  TcpPair in, out;  // writer -> in.a ... in.b -> pump -> out.a ... out.b -> reader
  Pipe pipe;
  REQUIRE(pipe.open(64 * 1024) == 0);
  const std::size_t body = 3 * 1024 * 1024 + 17;
  std::string data(body + 5, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  std::memcpy(data.data() + body, "NEXT!", 5);  // the next message: must stay unread

  std::thread writer([&] { send_all(in.a, data); });
  std::string got;
  got.reserve(body);
  BodyPump pump;
  pump.start(in.b, out.a, pipe, body);
  std::uint64_t moved = 0;
  bool done = false;
  char buf[65536];
  while (!done) {
    BodyPump::Result r = pump.run(moved, 256 * 1024);
    REQUIRE((r == BodyPump::Result::kDone || r == BodyPump::Result::kWantRead ||
             r == BodyPump::Result::kWantWrite));
    if (r == BodyPump::Result::kDone) done = true;
    // Be the reader as well: drain what was spliced so far.
    for (;;) {
      ssize_t n = ::recv(out.b, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    if (!done && r == BodyPump::Result::kWantRead) wait_for(in.b, POLLIN);
  }
  writer.join();
  while (got.size() < body) {
    wait_for(out.b, POLLIN);
    ssize_t n = ::recv(out.b, buf, sizeof buf, MSG_DONTWAIT);
    REQUIRE(n > 0);
    got.append(buf, static_cast<std::size_t>(n));
  }
  CHECK(moved == body);
  CHECK(pump.left() == 0);
  CHECK(got.size() == body);
  CHECK(got == data.substr(0, body));
  wait_for(in.b, POLLIN);
  char next[8] = {};
  CHECK(::recv(in.b, next, sizeof next, 0) == 5);
  CHECK(std::string(next, 5) == "NEXT!");
}

TEST_CASE("the pump reports a source that ends early and a sink that resets", "[splice]") {
  Pipe pipe;
  REQUIRE(pipe.open(64 * 1024) == 0);
  SECTION("EOF before the end of the body") {
    TcpPair in, out;
    REQUIRE(::send(in.a, "abc", 3, 0) == 3);
    ::shutdown(in.a, SHUT_WR);
    wait_for(in.b, POLLIN);
    BodyPump pump;
    pump.start(in.b, out.a, pipe, 1000);
    std::uint64_t moved = 0;
    BodyPump::Result r = pump.run(moved);
    if (r == BodyPump::Result::kWantRead) r = pump.run(moved);  // the FIN after the bytes
    CHECK(r == BodyPump::Result::kSourceClosed);
    CHECK(moved == 3);
  }
  SECTION("the destination resets") {
    TcpPair in, out;
    linger lg{1, 0};
    ::setsockopt(out.b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(out.b);
    out.b = -1;
    std::string chunk(64 * 1024, 'x');
    REQUIRE(::send(in.a, chunk.data(), chunk.size(), 0) > 0);
    wait_for(in.b, POLLIN);
    usleep(50 * 1000);  // the RST has arrived
    BodyPump pump;
    pump.start(in.b, out.a, pipe, 10 * 1024 * 1024);
    std::uint64_t moved = 0;
    BodyPump::Result r = pump.run(moved);
    CHECK(r == BodyPump::Result::kSinkError);
    CHECK((pump.error() == ECONNRESET || pump.error() == EPIPE));
    CHECK(pump.in_pipe() > 0);  // so the pool must not reuse this pipe
  }
}

TEST_CASE("a stream pump moves bytes until the source's EOF, then drains its pipe", "[splice]") {
  Pipe pipe;
  REQUIRE(pipe.open(64 * 1024) == 0);
  TcpPair in, out;
  // More than the pipe holds, then FIN: the pump must not stop at the EOF with bytes piped.
  std::string data(200 * 1024, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13 + i / 1000);
  std::thread writer([&] {
    send_all(in.a, data);
    ::shutdown(in.a, SHUT_WR);
  });
  BodyPump pump;
  pump.start_stream(in.b, out.a, pipe);
  std::uint64_t moved = 0;
  std::string got;
  char buf[65536];
  for (;;) {
    BodyPump::Result r = pump.run(moved, 64 * 1024);
    REQUIRE((r == BodyPump::Result::kDone || r == BodyPump::Result::kWantRead ||
             r == BodyPump::Result::kWantWrite));
    for (;;) {
      ssize_t n = ::recv(out.b, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    if (r == BodyPump::Result::kDone) break;
    if (r == BodyPump::Result::kWantRead) wait_for(in.b, POLLIN);
  }
  writer.join();
  CHECK(pump.source_ended());
  CHECK(pump.in_pipe() == 0);
  while (got.size() < data.size()) {
    wait_for(out.b, POLLIN);
    ssize_t n = ::recv(out.b, buf, sizeof buf, MSG_DONTWAIT);
    REQUIRE(n > 0);
    got.append(buf, static_cast<std::size_t>(n));
  }
  CHECK(moved == data.size());
  CHECK(got == data);
}

TEST_CASE("kept pipes are closed once the pool goes unused for a while", "[splice]") {
  PipePool pool(64 * 1024, 4);
  int err = 0;
  Pipe a = pool.acquire(err);
  const int fd = a.read_fd();
  pool.release(std::move(a), true);
  CHECK(pool.expire_unused(3) == 0);  // first tick notices the acquire
  CHECK(pool.expire_unused(3) == 0);
  CHECK(pool.expire_unused(3) == 0);
  // In use again: the count starts over.
  Pipe b = pool.acquire(err);
  pool.release(std::move(b), true);
  CHECK(pool.expire_unused(3) == 0);
  CHECK(pool.expire_unused(3) == 0);
  CHECK(pool.expire_unused(3) == 0);
  CHECK(fd_open(fd));
  CHECK(pool.expire_unused(3) == 1);
  CHECK(pool.idle() == 0);
  CHECK_FALSE(fd_open(fd));
}
