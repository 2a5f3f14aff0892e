// bench-loadgen: open-loop HTTP/1.1 GET load at a fixed rate, for latency at a given load.
//
//   bench-loadgen --port PORT --rate REQ_PER_S --connections N --duration SECONDS
//                 [--host 127.0.0.1] [--path /small] [--warmup SECONDS] [--timeout SECONDS]
//
// wrk (closed loop) measures latency only at saturation; wrk2 is not in Debian. This sends request
// i at t0 + i/rate whatever happened before (open loop), over N keep-alive connections, each with
// at most one request outstanding; a request whose time has come while every connection is busy
// waits in a queue, and its latency still counts from its scheduled time (no coordinated
// omission: a stall shows up in the percentiles instead of slowing the load down).
//
// Prints one JSON object on stdout: counts, achieved rate, latency percentiles in microseconds
// ("latency_us": from the scheduled time; "service_us": from the moment the request was written).
// The warm-up (same rate) is not recorded. After the duration, requests still outstanding get up
// to --timeout seconds to finish, then count as timeouts. Single thread, epoll; loopback use.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Conn {
  int fd = -1;
  bool connected = false;
  bool busy = false;
  int64_t intended = 0, sent = 0;
  bool recorded = false;
  std::string req;  // unsent part of the request
  std::string in;
  long long body_left = -1;  // -1: reading the head
  int status = 0;
  bool close_after = false;
};

struct Stats {
  std::vector<uint32_t> lat, svc;
  uint64_t completed = 0, non2xx = 0, errors = 0, connect_errors = 0, reconnects = 0;
};

sockaddr_in g_addr{};
int g_ep = -1;
std::string g_request;

bool open_conn(Conn& c) {
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return false;
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = connect(c.fd, reinterpret_cast<sockaddr*>(&g_addr), sizeof g_addr);
  if (r < 0 && errno != EINPROGRESS) {
    close(c.fd);
    c.fd = -1;
    return false;
  }
  c.connected = r == 0;
  c.busy = false;
  c.in.clear();
  c.body_left = -1;
  epoll_event ev{};
  ev.events = EPOLLIN | (c.connected ? 0u : EPOLLOUT);
  ev.data.ptr = &c;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, c.fd, &ev);
  return true;
}

void close_conn(Conn& c) {
  if (c.fd >= 0) {
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
  }
  c.fd = -1;
  c.connected = false;
  c.busy = false;
}

void want_out(Conn& c, bool out) {
  epoll_event ev{};
  ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
  ev.data.ptr = &c;
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c.fd, &ev);
}

bool write_pending(Conn& c) {
  while (!c.req.empty()) {
    ssize_t n = send(c.fd, c.req.data(), c.req.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.req.erase(0, size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      want_out(c, true);
      return true;
    }
    return false;
  }
  want_out(c, false);
  return true;
}

void fail(Conn& c, Stats& st) {
  if (c.busy && c.recorded) ++st.errors;
  close_conn(c);
  ++st.reconnects;
  open_conn(c);
}

bool ieq_prefix(const char* p, const char* name) {
  for (; *name; ++p, ++name)
    if (tolower(static_cast<unsigned char>(*p)) != *name) return false;
  return true;
}

// Parses the buffered response bytes; returns 1 when a response completed, 0 if more is needed,
// -1 on a protocol error.
int parse(Conn& c) {
  if (c.body_left < 0) {
    size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return c.in.size() > 65536 ? -1 : 0;
    if (c.in.size() < 12 || c.in.compare(0, 5, "HTTP/") != 0) return -1;
    c.status = atoi(c.in.c_str() + 9);
    long long clen = -1;
    c.close_after = c.in.compare(0, 8, "HTTP/1.0") == 0;
    size_t p = c.in.find("\r\n") + 2;
    while (p < end) {
      size_t e = c.in.find("\r\n", p);
      const char* h = c.in.c_str() + p;
      if (ieq_prefix(h, "content-length:")) clen = atoll(h + 15);
      else if (ieq_prefix(h, "transfer-encoding:")) return -1;  // not used by the benchmark
      else if (ieq_prefix(h, "connection:")) {
        std::string v = c.in.substr(p + 11, e - p - 11);
        for (auto& ch : v) ch = char(tolower(static_cast<unsigned char>(ch)));
        if (v.find("close") != std::string::npos) c.close_after = true;
      }
      p = e + 2;
    }
    if (clen < 0) return -1;
    c.in.erase(0, end + 4);
    c.body_left = clen;
  }
  long long take = std::min<long long>(c.body_left, (long long)c.in.size());
  c.in.erase(0, size_t(take));
  c.body_left -= take;
  if (c.body_left > 0) return 0;
  c.body_left = -1;
  return 1;
}

uint32_t pct(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t idx = size_t(std::ceil(p / 100.0 * double(v.size())));
  if (idx > 0) --idx;
  return v[std::min(idx, v.size() - 1)];
}

void print_lat(const char* name, std::vector<uint32_t>& v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (auto x : v) sum += x;
  printf("\"%s\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p999\":%u,\"max\":%u,\"mean\":%.1f}", name,
         pct(v, 50), pct(v, 90), pct(v, 99), pct(v, 99.9), v.empty() ? 0 : v.back(),
         v.empty() ? 0.0 : sum / double(v.size()));
}

}  // namespace

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  const char* path = "/small";
  int port = 0, conns = 16;
  double rate = 1000, duration = 5, warmup = 0, timeout = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--host") host = v;
    else if (a == "--port") port = atoi(v);
    else if (a == "--path") path = v;
    else if (a == "--rate") rate = atof(v);
    else if (a == "--connections") conns = atoi(v);
    else if (a == "--duration") duration = atof(v);
    else if (a == "--warmup") warmup = atof(v);
    else if (a == "--timeout") timeout = atof(v);
    else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (port <= 0 || rate <= 0 || conns <= 0 || duration <= 0) {
    fprintf(stderr,
            "usage: %s --port PORT --rate R --connections N --duration S [--host H] [--path P] "
            "[--warmup S] [--timeout S]\n",
            argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
    fprintf(stderr, "bad host %s (numeric IPv4 only)\n", host);
    return 2;
  }
  g_request = std::string("GET ") + path + " HTTP/1.1\r\nHost: " + host + ":" +
              std::to_string(port) + "\r\nUser-Agent: bench-loadgen\r\n\r\n";
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> cs(static_cast<size_t>(conns));
  for (auto& c : cs) {
    if (!open_conn(c)) {
      perror("connect");
      return 1;
    }
  }

  Stats st;
  const double interval_ns = 1e9 / rate;
  const int64_t t0 = now_ns() + 20000000;  // 20 ms to finish connecting
  const int64_t t_meas = t0 + int64_t(warmup * 1e9);
  const int64_t t_end = t_meas + int64_t(duration * 1e9);
  const uint64_t total = uint64_t(std::llround((warmup + duration) * rate));
  uint64_t next = 0;  // index of the next request to schedule
  uint64_t scheduled_meas = 0, sent_meas = 0;
  std::deque<int64_t> queue;  // intended send times of requests waiting for a free connection
  std::vector<epoll_event> evs(1024);
  int64_t drain_deadline = 0;
  for (;;) {
    int64_t now = now_ns();
    while (next < total) {
      int64_t when = t0 + int64_t(double(next) * interval_ns);
      if (when > now) break;
      queue.push_back(when);
      if (when >= t_meas) ++scheduled_meas;
      ++next;
    }
    // hand queued requests to free connections
    if (!queue.empty()) {
      for (auto& c : cs) {
        if (queue.empty()) break;
        if (c.fd < 0 || !c.connected || c.busy) continue;
        c.busy = true;
        c.intended = queue.front();
        queue.pop_front();
        c.recorded = c.intended >= t_meas;
        if (c.recorded) ++sent_meas;
        c.sent = now_ns();
        c.req = g_request;
        if (!write_pending(c)) fail(c, st);
      }
    }
    bool outstanding = !queue.empty();
    for (auto& c : cs) outstanding = outstanding || c.busy;
    if (next >= total && !outstanding) break;
    if (next >= total) {
      if (!drain_deadline) drain_deadline = now + int64_t(timeout * 1e9);
      if (now >= drain_deadline) break;
    }
    int64_t wake = next < total ? t0 + int64_t(double(next) * interval_ns)
                                : drain_deadline;
    int64_t wait_ns = std::max<int64_t>(0, wake - now_ns());
    if (!queue.empty()) wait_ns = std::min<int64_t>(wait_ns, 1000000);  // waiting for a conn
    timespec ts{time_t(wait_ns / 1000000000), long(wait_ns % 1000000000)};
    int n = epoll_pwait2(g_ep, evs.data(), int(evs.size()), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_pwait2");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (c.fd < 0) continue;
      uint32_t e = evs[i].events;
      if (!c.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (e & (EPOLLERR | EPOLLHUP))) {
          ++st.connect_errors;
          fail(c, st);
          continue;
        }
        c.connected = true;
        want_out(c, false);
        continue;
      }
      if ((e & EPOLLOUT) && !c.req.empty()) {
        if (!write_pending(c)) {
          fail(c, st);
          continue;
        }
      }
      if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        char buf[65536];
        bool dead = false;
        for (;;) {
          ssize_t r = recv(c.fd, buf, sizeof buf, 0);
          if (r > 0) {
            c.in.append(buf, size_t(r));
            if (size_t(r) < sizeof buf) break;
            continue;
          }
          if (r < 0 && errno == EINTR) continue;
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          dead = true;  // EOF or error
          break;
        }
        while (c.busy && !c.in.empty()) {
          int pr = parse(c);
          if (pr < 0) {
            dead = true;
            break;
          }
          if (pr == 0) break;
          int64_t t = now_ns();
          if (c.recorded) {
            ++st.completed;
            if (c.status < 200 || c.status > 399) ++st.non2xx;
            st.lat.push_back(uint32_t(std::min<int64_t>((t - c.intended) / 1000, UINT32_MAX)));
            st.svc.push_back(uint32_t(std::min<int64_t>((t - c.sent) / 1000, UINT32_MAX)));
          }
          c.busy = false;
          if (c.close_after) {
            close_conn(c);
            ++st.reconnects;
            open_conn(c);
            break;
          }
        }
        if (dead) fail(c, st);
      }
    }
  }
  int64_t finished = now_ns();
  uint64_t timeouts = 0;
  for (auto& c : cs) {
    if (c.busy && c.recorded) ++timeouts;
    close_conn(c);
  }
  timeouts += queue.size();
  (void)finished;
  (void)t_end;
  printf("{\"rate\":%.1f,\"connections\":%d,\"duration_s\":%.3f,\"scheduled\":%llu,\"sent\":%llu,"
         "\"completed\":%llu,\"achieved_rps\":%.1f,\"non2xx\":%llu,\"errors\":%llu,"
         "\"connect_errors\":%llu,\"timeouts\":%llu,\"reconnects\":%llu,",
         rate, conns, duration, (unsigned long long)scheduled_meas, (unsigned long long)sent_meas,
         (unsigned long long)st.completed, double(st.completed) / duration,
         (unsigned long long)st.non2xx, (unsigned long long)st.errors,
         (unsigned long long)st.connect_errors,
         (unsigned long long)timeouts, (unsigned long long)st.reconnects);
  print_lat("latency_us", st.lat);
  printf(",");
  print_lat("service_us", st.svc);
  printf("}\n");
  return 0;
}
