#include "handoff/tcp_state.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace switchyard::handoff {
namespace {

int set_int(int fd, int opt, int v) {
  return ::setsockopt(fd, IPPROTO_TCP, opt, &v, sizeof v);
}

bool get_u32(int fd, int opt, std::uint32_t& v) {
  socklen_t len = sizeof v;
  return ::getsockopt(fd, IPPROTO_TCP, opt, &v, &len) == 0 && len == sizeof v;
}

bool fail(std::string& error, const char* what) {
  error = fmt::format("{}: {}", what, std::strerror(errno));
  return false;
}

socklen_t length_of(const sockaddr_storage& a) {
  return a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string text_of(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (a.ss_family == AF_INET6) {
    const auto& s6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &s6.sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(s6.sin6_port));
  }
  const auto& s4 = reinterpret_cast<const sockaddr_in&>(a);
  ::inet_ntop(AF_INET, &s4.sin_addr, host, sizeof host);
  return fmt::format("{}:{}", host, ntohs(s4.sin_port));
}

// Reads the state of a socket already in repair mode.
bool read_state(int fd, TcpState& st, std::string& error) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return fail(error, "TCP_INFO");
  if (info.tcpi_state != TCP_ESTABLISHED) {
    error = fmt::format("connection is not established (state {})", info.tcpi_state);
    return false;
  }
  // Output not yet acknowledged would have to be moved and retransmitted from the new host;
  // the front end only hands off after reading a request, before answering, so refuse instead.
  int outq = 0;
  if (::ioctl(fd, SIOCOUTQ, &outq) != 0) return fail(error, "SIOCOUTQ");
  if (outq != 0) {
    error = fmt::format("{} bytes sent but not yet acknowledged", outq);
    return false;
  }
  socklen_t alen = sizeof st.local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&st.local), &alen) != 0) {
    return fail(error, "getsockname");
  }
  alen = sizeof st.peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&st.peer), &alen) != 0) {
    return fail(error, "getpeername");
  }
  if (set_int(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) != 0) return fail(error, "TCP_REPAIR_QUEUE");
  if (!get_u32(fd, TCP_QUEUE_SEQ, st.snd_seq)) return fail(error, "TCP_QUEUE_SEQ (send)");
  if (set_int(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) != 0) return fail(error, "TCP_REPAIR_QUEUE");
  if (!get_u32(fd, TCP_QUEUE_SEQ, st.rcv_seq)) return fail(error, "TCP_QUEUE_SEQ (receive)");
  // Bytes the kernel received but the application has not read: part of what the new socket
  // must deliver. rcv_seq counts them already.
  int inq = 0;
  if (::ioctl(fd, SIOCINQ, &inq) != 0) return fail(error, "SIOCINQ");
  st.queued.resize(static_cast<std::size_t>(inq));
  if (inq > 0) {
    ssize_t n = ::recv(fd, st.queued.data(), st.queued.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n != inq) return fail(error, "reading the receive queue");
  }
  std::uint32_t mss = 0;
  if (!get_u32(fd, TCP_MAXSEG, mss)) return fail(error, "TCP_MAXSEG");
  st.mss = static_cast<std::uint16_t>(mss);
  st.timestamps = info.tcpi_options & TCPI_OPT_TIMESTAMPS;
  st.sack = info.tcpi_options & TCPI_OPT_SACK;
  st.window_scaling = info.tcpi_options & TCPI_OPT_WSCALE;
  st.snd_wscale = info.tcpi_snd_wscale;
  st.rcv_wscale = info.tcpi_rcv_wscale;
  if (!get_u32(fd, TCP_TIMESTAMP, st.timestamp)) return fail(error, "TCP_TIMESTAMP");
  tcp_repair_window w{};
  len = sizeof w;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &len) != 0) {
    return fail(error, "TCP_REPAIR_WINDOW");
  }
  st.snd_wl1 = w.snd_wl1;
  st.snd_wnd = w.snd_wnd;
  st.max_window = w.max_window;
  st.rcv_wnd = w.rcv_wnd;
  st.rcv_wup = w.rcv_wup;
  return true;
}

}  // namespace

std::optional<TcpState> freeze(int fd, std::string& error) {
  if (set_int(fd, TCP_REPAIR, TCP_REPAIR_ON) != 0) {
    fail(error, "TCP_REPAIR");
    return std::nullopt;
  }
  TcpState st;
  if (!read_state(fd, st, error)) {
    std::string ignored;
    resume(fd, ignored);
    return std::nullopt;
  }
  return st;
}

bool resume(int fd, std::string& error) {
  if (set_int(fd, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP) != 0) return fail(error, "TCP_REPAIR off");
  return true;
}

core::UniqueFd restore(const TcpState& st, std::span<const char> unread, std::string& error) {
  core::UniqueFd fd(::socket(st.local.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) {
    fail(error, "socket");
    return {};
  }
  int s = fd.get();
  if (set_int(s, TCP_REPAIR, TCP_REPAIR_ON) != 0) {
    fail(error, "TCP_REPAIR");
    return {};
  }
  // Sequence numbers first: connect() in repair mode takes them as the connection's.
  std::uint32_t rcv = st.rcv_seq - static_cast<std::uint32_t>(unread.size());
  if (set_int(s, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) != 0 ||
      ::setsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &st.snd_seq, sizeof st.snd_seq) != 0 ||
      set_int(s, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) != 0 ||
      ::setsockopt(s, IPPROTO_TCP, TCP_QUEUE_SEQ, &rcv, sizeof rcv) != 0) {
    fail(error, "TCP_QUEUE_SEQ");
    return {};
  }
  // The address is usually bound by a listener too (the web server on *:80, the VIP on lo):
  // repair mode lets the socket share it (SK_FORCE_REUSE). Setting SO_REUSEADDR now would
  // replace that with the ordinary rule, under which a listener's port is taken.
  if (::bind(s, reinterpret_cast<const sockaddr*>(&st.local), length_of(st.local)) != 0) {
    error = fmt::format("bind {}: {}", text_of(st.local), std::strerror(errno));
    return {};
  }
  if (::connect(s, reinterpret_cast<const sockaddr*>(&st.peer), length_of(st.peer)) != 0) {
    fail(error, "connect (repair)");
    return {};
  }
  tcp_repair_opt opts[4];
  int n = 0;
  opts[n++] = {TCPOPT_MAXSEG, st.mss};
  if (st.window_scaling) {
    opts[n++] = {TCPOPT_WINDOW, st.snd_wscale | (std::uint32_t{st.rcv_wscale} << 16)};
  }
  if (st.sack) opts[n++] = {TCPOPT_SACK_PERMITTED, 0};
  if (st.timestamps) opts[n++] = {TCPOPT_TIMESTAMP, 0};
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, n * sizeof opts[0]) != 0) {
    fail(error, "TCP_REPAIR_OPTIONS");
    return {};
  }
  if (st.timestamps &&
      ::setsockopt(s, IPPROTO_TCP, TCP_TIMESTAMP, &st.timestamp, sizeof st.timestamp) != 0) {
    fail(error, "TCP_TIMESTAMP");
    return {};
  }
  if (!unread.empty()) {
    // In repair mode a send on the receive queue appends to it, advancing rcv_nxt to rcv_seq.
    if (set_int(s, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) != 0) {
      fail(error, "TCP_REPAIR_QUEUE");
      return {};
    }
    std::size_t done = 0;
    while (done < unread.size()) {
      ssize_t k = ::send(s, unread.data() + done, unread.size() - done, 0);
      if (k <= 0) {
        fail(error, "restoring the receive queue");
        return {};
      }
      done += static_cast<std::size_t>(k);
    }
  }
  tcp_repair_window w{st.snd_wl1, st.snd_wnd, st.max_window, st.rcv_wnd, st.rcv_wup};
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) != 0) {
    fail(error, "TCP_REPAIR_WINDOW");
    return {};
  }
  return fd;
}

std::string describe(const TcpState& st) {
  std::string ws = st.window_scaling ? fmt::format("{}/{}", st.snd_wscale, st.rcv_wscale) : "off";
  return fmt::format("{} <- {} snd {} rcv {} mss {} ws {}{}{}", text_of(st.local), text_of(st.peer),
                     st.snd_seq, st.rcv_seq, st.mss, ws, st.sack ? " sack" : "",
                     st.timestamps ? " ts" : "");
}

}  // namespace switchyard::handoff
