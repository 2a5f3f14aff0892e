// Mechanism micro-benchmark for issue 6: what does it cost a relay thread to move bytes from one
// loopback TCP socket to another, per MiB, with
//   copy     io_uring recv into a 16 KiB buffer, then send (the proxy's copy path, one buffer)
//   uring    IORING_OP_SPLICE socket -> pipe, linked to IORING_OP_SPLICE pipe -> socket
//   poll     HAProxy's way: non-blocking splice(2) from the relay thread until EAGAIN, then an
//            io_uring poll for readiness (what src/splice/body_pump.cc does)
// with pipes of --pipe bytes. A writer thread (on --load-cpu) sends from memory as fast as it
// can, a reader thread (same core) discards; the relay runs on --relay-cpu. The relay's CPU is
// the process's (utime + stime, which includes io_uring's io-wq worker threads) minus the
// writer's and reader's own (RUSAGE_THREAD).
//
//   g++ -O2 -std=c++20 -o /tmp/splice_mech bench/splice_mech.cc -luring -lpthread
//   /tmp/splice_mech --mech poll --pipe 1048576 --mib 4096
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double thread_cpu() {
  rusage r{};
  getrusage(RUSAGE_THREAD, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

double process_cpu() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void pair(int& a, int& b) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  listen(l, 1);
  socklen_t len = sizeof addr;
  getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len);
  a = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(a, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) abort();
  b = accept(l, nullptr, nullptr);
  close(l);
  int one = 1;
  setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

int main(int argc, char** argv) {
  std::string mech = "poll";
  std::size_t pipe_size = 1 << 20;
  std::uint64_t mib = 2048;
  int relay_cpu = 1, load_cpu = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--mech") mech = argv[i + 1];
    if (k == "--pipe") pipe_size = std::strtoull(argv[i + 1], nullptr, 10);
    if (k == "--mib") mib = std::strtoull(argv[i + 1], nullptr, 10);
    if (k == "--relay-cpu") relay_cpu = std::atoi(argv[i + 1]);
    if (k == "--load-cpu") load_cpu = std::atoi(argv[i + 1]);
  }
  const std::uint64_t total = mib << 20;
  int w_end, src, dst, r_end;
  pair(w_end, src);  // writer -> src (relay reads)
  pair(dst, r_end);  // relay writes dst -> reader
  std::atomic<double> writer_cpu{0}, reader_cpu{0};
  std::thread writer([&] {
    pin(load_cpu);
    std::vector<char> buf(256 << 10, 'x');
    std::uint64_t left = total;
    while (left) {
      ssize_t n = send(w_end, buf.data(), std::min<std::uint64_t>(left, buf.size()), 0);
      if (n <= 0) abort();
      left -= static_cast<std::uint64_t>(n);
    }
    writer_cpu = thread_cpu();
  });
  std::thread reader([&] {
    pin(load_cpu);
    std::vector<char> buf(256 << 10);
    std::uint64_t got = 0;
    while (got < total) {
      ssize_t n = recv(r_end, buf.data(), buf.size(), 0);
      if (n <= 0) abort();
      got += static_cast<std::uint64_t>(n);
    }
    reader_cpu = thread_cpu();
  });
  pin(relay_cpu);
  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(256, &ring, &p) != 0) abort();
  int pfd[2];
  if (pipe2(pfd, O_NONBLOCK) != 0) abort();
  fcntl(pfd[1], F_SETPIPE_SZ, static_cast<int>(pipe_size));
  std::size_t cap = static_cast<std::size_t>(fcntl(pfd[1], F_GETPIPE_SZ));
  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = process_cpu();
  std::uint64_t moved = 0, syscalls = 0, waits = 0;
  io_uring_cqe* cqe;
  if (mech == "copy") {
    std::vector<char> buf(16 << 10);
    while (moved < total) {
      io_uring_sqe* s = io_uring_get_sqe(&ring);
      io_uring_prep_recv(s, src, buf.data(), buf.size(), 0);
      io_uring_submit_and_wait(&ring, 1);
      io_uring_wait_cqe(&ring, &cqe);
      int n = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
      if (n <= 0) abort();
      int off = 0;
      while (off < n) {
        s = io_uring_get_sqe(&ring);
        io_uring_prep_send(s, dst, buf.data() + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
        io_uring_submit_and_wait(&ring, 1);
        io_uring_wait_cqe(&ring, &cqe);
        if (cqe->res <= 0) abort();
        off += cqe->res;
        io_uring_cqe_seen(&ring, cqe);
      }
      moved += static_cast<std::uint64_t>(n);
      waits += 2;
    }
  } else if (mech == "uring") {
    // Blocking sockets and pipe: io_uring punts both splices to io-wq anyway.
    int fl = fcntl(pfd[0], F_GETFL);
    fcntl(pfd[0], F_SETFL, fl & ~O_NONBLOCK);
    fl = fcntl(pfd[1], F_GETFL);
    fcntl(pfd[1], F_SETFL, fl & ~O_NONBLOCK);
    while (moved < total) {
      unsigned want = static_cast<unsigned>(std::min<std::uint64_t>(total - moved, cap));
      io_uring_sqe* s = io_uring_get_sqe(&ring);
      io_uring_prep_splice(s, src, -1, pfd[1], -1, want, SPLICE_F_MOVE);
      s->flags |= IOSQE_IO_LINK;
      s->user_data = 1;
      s = io_uring_get_sqe(&ring);
      io_uring_prep_splice(s, pfd[0], -1, dst, -1, want, SPLICE_F_MOVE);
      s->user_data = 2;
      io_uring_submit_and_wait(&ring, 2);
      int in = 0, out = 0;
      for (int i = 0; i < 2; ++i) {
        io_uring_wait_cqe(&ring, &cqe);
        if (cqe->user_data == 1) in = cqe->res; else out = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
      }
      // A short in-splice fails the link (io_uring sets REQ_F_FAIL when a splice moves less than
      // asked), so the out-splice is then cancelled: finish it by hand.
      if (out < 0) out = 0;
      if (in <= 0 || out != in) {
        // The out splice may have moved less than came in: finish it.
        if (in <= 0) abort();
        while (out < in) {
          s = io_uring_get_sqe(&ring);
          io_uring_prep_splice(s, pfd[0], -1, dst, -1, static_cast<unsigned>(in - out), SPLICE_F_MOVE);
          io_uring_submit_and_wait(&ring, 1);
          io_uring_wait_cqe(&ring, &cqe);
          if (cqe->res <= 0) abort();
          out += cqe->res;
          io_uring_cqe_seen(&ring, cqe);
        }
      }
      moved += static_cast<std::uint64_t>(in);
      waits += 1;
    }
  } else {
    fcntl(src, F_SETFL, O_NONBLOCK);
    fcntl(dst, F_SETFL, O_NONBLOCK);
    std::size_t in_pipe = 0;
    std::uint64_t to_read = total;
    const unsigned fl = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    while (moved < total) {
      bool dry = false;
      if (to_read && in_pipe < cap) {
        std::size_t want = std::min<std::uint64_t>(to_read, cap - in_pipe);
        ++syscalls;
        ssize_t n = splice(src, nullptr, pfd[1], nullptr, want, fl);
        if (n > 0) {
          to_read -= n;
          in_pipe += n;
          if (static_cast<std::size_t>(n) < want) dry = true;
        } else if (n < 0 && errno == EAGAIN) {
          dry = true;
        } else {
          abort();
        }
      }
      bool wait_out = false;
      if (in_pipe) {
        ++syscalls;
        ssize_t n = splice(pfd[0], nullptr, dst, nullptr, in_pipe, fl);
        if (n > 0) {
          in_pipe -= n;
          moved += n;
          if (in_pipe) wait_out = true;
        } else if (n < 0 && errno == EAGAIN) {
          wait_out = true;
        } else {
          abort();
        }
      }
      if (moved == total) break;
      if (wait_out || dry) {
        io_uring_sqe* s = io_uring_get_sqe(&ring);
        io_uring_prep_poll_add(s, wait_out ? dst : src, wait_out ? POLLOUT : POLLIN);
        io_uring_submit_and_wait(&ring, 1);
        io_uring_wait_cqe(&ring, &cqe);
        io_uring_cqe_seen(&ring, cqe);
        ++waits;
      }
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  writer.join();
  reader.join();
  double cpu = process_cpu() - cpu0 - writer_cpu - reader_cpu;
  std::printf("mech=%s pipe=%zu MiB=%llu wall=%.2fs MiB/s=%.0f relay_cpu=%.3fs us/MiB=%.1f "
              "splice_calls/MiB=%.1f waits/MiB=%.1f\n",
              mech.c_str(), cap, static_cast<unsigned long long>(mib), secs, mib / secs, cpu,
              cpu * 1e6 / mib, syscalls / double(mib), waits / double(mib));
  return 0;
}
