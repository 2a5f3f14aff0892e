// bench-origin: the benchmark's HTTP/1.1 origin server. One thread, epoll, keep-alive, no files.
//
//   bench-origin --port PORT [--bind 127.0.0.1]
//
//   GET|HEAD /small     200, 64-byte body
//   GET|HEAD /1m        200, 1 MiB body
//   GET|HEAD /16m       200, 16 MiB body
//   POST|PUT  any path  the whole request body (Content-Length or chunked) is read and discarded,
//                       THEN 200 with the body "ok\n" (never an early answer, unlike nginx's
//                       `return 200`, which answers before the upload is in)
//   GET /__stats        {"connections":N,"requests":N,"body_bytes_in":N} (this request included)
//   anything else       404
//
// Responses are prebuilt byte strings sent straight from memory (no per-request formatting, no
// files), pipelined requests are answered in order, "Connection: close" / HTTP/1.0 close after the
// response. Written for bench/run, which compiles it with g++ -O2 (no CMake target needed).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kRecvSize = 256 * 1024;

struct Response {
  std::string keep;   // keep-alive variant
  std::string close;  // "Connection: close" variant
};

Response make(int status, const char* reason, const std::string& body, bool head_only = false) {
  Response r;
  std::string base = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n" +
                     "Server: bench-origin\r\nContent-Type: application/octet-stream\r\n" +
                     "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r.keep = base + "\r\n" + (head_only ? std::string() : body);
  r.close = base + "Connection: close\r\n\r\n" + (head_only ? std::string() : body);
  return r;
}

std::string pattern(size_t n) {
  std::string s(n, 'x');
  for (size_t i = 0; i < n; ++i) s[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
  return s;
}

Response g_small, g_1m, g_16m, g_small_head, g_1m_head, g_16m_head, g_ok, g_404, g_400;
uint64_t g_connections = 0, g_requests = 0, g_body_in = 0;

enum class State { Head, Body, ChunkSize, ChunkData, ChunkCrlf, Trailer };

struct Conn {
  int fd = -1;
  std::string in;       // unparsed input
  State st = State::Head;
  uint64_t body_left = 0;
  const std::string* after_body = nullptr;  // response to send once the body is read
  bool close_after = false;
  const char* out = nullptr;  // response being sent (points into a Response or `dyn`)
  size_t out_len = 0, out_off = 0;
  std::string dyn;
  bool want_out = false;  // EPOLLOUT armed (input not read meanwhile: back-pressure)
};

int g_ep = -1;

void set_events(Conn* c, bool out) {
  epoll_event ev{};
  ev.events = out ? EPOLLOUT : EPOLLIN;
  ev.data.ptr = c;
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

void close_conn(Conn* c) {
  epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  delete c;
}

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool icontains(std::string_view hay, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (ieq(hay.substr(i, needle.size()), needle)) return true;
  return false;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.remove_suffix(1);
  return v;
}

// Starts sending `r` (keep or close variant). Returns false if the connection was closed.
bool respond(Conn* c, const Response& r) {
  ++g_requests;
  const std::string& s = c->close_after ? r.close : r.keep;
  c->out = s.data();
  c->out_len = s.size();
  c->out_off = 0;
  return true;
}

// Sends pending output; false if the connection died or was closed after its last response.
bool flush(Conn* c) {
  while (c->out && c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) set_events(c, true);
      return true;
    }
    close_conn(c);
    return false;
  }
  c->out = nullptr;
  if (c->close_after) {
    shutdown(c->fd, SHUT_WR);
    close_conn(c);
    return false;
  }
  if (c->want_out) set_events(c, false);
  return true;
}

// Parses what is buffered. Returns false if the connection was closed.
bool process(Conn* c) {
  size_t pos = 0;
  bool ok = true;
  while (ok && !c->out) {
    if (c->st == State::Head) {
      size_t end = c->in.find("\r\n\r\n", pos);
      if (end == std::string::npos) {
        if (c->in.size() - pos > kMaxHead) {
          c->close_after = true;
          respond(c, g_400);
          break;
        }
        break;
      }
      std::string_view head(c->in.data() + pos, end + 2 - pos);
      pos = end + 4;
      size_t eol = head.find("\r\n");
      std::string_view line = head.substr(0, eol);
      size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
      if (sp1 == std::string_view::npos || sp2 == sp1) {
        c->close_after = true;
        respond(c, g_400);
        break;
      }
      std::string_view method = line.substr(0, sp1);
      std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::string_view version = line.substr(sp2 + 1);
      bool http10 = version == "HTTP/1.0";
      bool keep10 = false, chunked = false;
      uint64_t clen = 0;
      bool close = false;
      size_t p = eol + 2;
      while (p < head.size()) {
        size_t e = head.find("\r\n", p);
        if (e == std::string_view::npos) e = head.size();
        std::string_view h = head.substr(p, e - p);
        p = e + 2;
        size_t colon = h.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view name = h.substr(0, colon), value = trim(h.substr(colon + 1));
        if (ieq(name, "content-length")) {
          clen = strtoull(std::string(value).c_str(), nullptr, 10);
        } else if (ieq(name, "transfer-encoding")) {
          chunked = icontains(value, "chunked");
        } else if (ieq(name, "connection")) {
          if (icontains(value, "close")) close = true;
          if (icontains(value, "keep-alive")) keep10 = true;
        }
      }
      c->close_after = close || (http10 && !keep10);
      bool head_only = method == "HEAD";
      size_t q = target.find('?');
      if (q != std::string_view::npos) target = target.substr(0, q);
      if (method == "POST" || method == "PUT") {
        c->after_body = c->close_after ? &g_ok.close : &g_ok.keep;
        if (chunked) {
          c->st = State::ChunkSize;
        } else if (clen > 0) {
          c->st = State::Body;
          c->body_left = clen;
        } else {
          respond(c, g_ok);
        }
        continue;
      }
      if (chunked || clen > 0) {  // a GET with a body: not used by the benchmark
        c->close_after = true;
        respond(c, g_400);
        break;
      }
      if (target == "/small") {
        respond(c, head_only ? g_small_head : g_small);
      } else if (target == "/1m") {
        respond(c, head_only ? g_1m_head : g_1m);
      } else if (target == "/16m") {
        respond(c, head_only ? g_16m_head : g_16m);
      } else if (target == "/__stats") {
        ++g_requests;
        char buf[200];
        int n = snprintf(buf, sizeof buf,
                         "{\"connections\":%llu,\"requests\":%llu,\"body_bytes_in\":%llu}\n",
                         (unsigned long long)g_connections, (unsigned long long)g_requests,
                         (unsigned long long)g_body_in);
        c->dyn = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(n) + "\r\n" + (c->close_after ? "Connection: close\r\n" : "") +
                 "\r\n" + std::string(buf, size_t(n));
        c->out = c->dyn.data();
        c->out_len = c->dyn.size();
        c->out_off = 0;
      } else {
        respond(c, g_404);
      }
    } else if (c->st == State::Body) {
      size_t avail = c->in.size() - pos;
      size_t take = size_t(std::min<uint64_t>(avail, c->body_left));
      pos += take;
      c->body_left -= take;
      g_body_in += take;
      if (c->body_left > 0) break;
      c->st = State::Head;
      ++g_requests;
      c->out = c->after_body->data();
      c->out_len = c->after_body->size();
      c->out_off = 0;
    } else if (c->st == State::ChunkSize || c->st == State::ChunkCrlf || c->st == State::Trailer) {
      size_t e = c->in.find("\r\n", pos);
      if (e == std::string::npos) break;
      std::string_view line(c->in.data() + pos, e - pos);
      pos = e + 2;
      if (c->st == State::ChunkCrlf) {
        c->st = State::ChunkSize;
      } else if (c->st == State::ChunkSize) {
        uint64_t size = strtoull(std::string(line).c_str(), nullptr, 16);
        if (size == 0) {
          c->st = State::Trailer;
        } else {
          c->st = State::ChunkData;
          c->body_left = size;
        }
      } else if (line.empty()) {  // end of the trailer section
        c->st = State::Head;
        ++g_requests;
        c->out = c->after_body->data();
        c->out_len = c->after_body->size();
        c->out_off = 0;
      }
    } else {  // ChunkData
      size_t avail = c->in.size() - pos;
      size_t take = size_t(std::min<uint64_t>(avail, c->body_left));
      pos += take;
      c->body_left -= take;
      g_body_in += take;
      if (c->body_left > 0) break;
      c->st = State::ChunkCrlf;
    }
    if (c->out) ok = flush(c);
  }
  if (!ok) return false;
  c->in.erase(0, pos);
  if (c->out && !c->want_out) return flush(c);  // an answer set up by a `break` above
  return true;
}

void on_readable(Conn* c, char* buf) {
  for (int i = 0; i < 16; ++i) {
    ssize_t n = recv(c->fd, buf, kRecvSize, 0);
    if (n == 0) {
      close_conn(c);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(c);
      return;
    }
    if (c->st == State::Body && c->in.empty() && uint64_t(n) < c->body_left) {
      c->body_left -= uint64_t(n);  // fast path: discard body bytes without copying
      g_body_in += uint64_t(n);
      if (size_t(n) < kRecvSize) return;
      continue;
    }
    c->in.append(buf, size_t(n));
    if (!process(c)) return;
    if (c->out) return;  // waiting for EPOLLOUT; stop reading (back-pressure)
    if (size_t(n) < kRecvSize) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* bind_addr = "127.0.0.1";
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--bind")) bind_addr = argv[i + 1];
    else {
      fprintf(stderr, "usage: %s --port PORT [--bind ADDR]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  g_small = make(200, "OK", pattern(64));
  g_1m = make(200, "OK", pattern(1 << 20));
  g_16m = make(200, "OK", pattern(16 << 20));
  g_small_head = make(200, "OK", pattern(64), true);
  g_1m_head = make(200, "OK", pattern(1 << 20), true);
  g_16m_head = make(200, "OK", pattern(16 << 20), true);
  g_ok = make(200, "OK", "ok\n");
  g_404 = make(404, "Not Found", "not found\n");
  g_400 = make(400, "Bad Request", "bad request\n");

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", bind_addr);
    return 2;
  }
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(lfd, 4096) < 0) {
    perror("bind/listen");
    return 1;
  }
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &lev);
  fprintf(stderr, "bench-origin listening on %s:%d\n", bind_addr, port);

  std::vector<char> buf(kRecvSize);
  std::vector<epoll_event> evs(512);
  for (;;) {
    int n = epoll_wait(g_ep, evs.data(), int(evs.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (!c) {
        for (;;) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          ++g_connections;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* nc = new Conn;
          nc->fd = fd;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = nc;
          epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if (c->want_out) {
        if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLOUT)) {
          close_conn(c);
          continue;
        }
        if (!flush(c)) continue;
        if (!c->out && !c->in.empty()) process(c);  // pipelined requests waiting in the buffer
        continue;
      }
      on_readable(c, buf.data());
    }
  }
}
