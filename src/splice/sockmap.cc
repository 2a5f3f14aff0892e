#include "splice/sockmap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "tunnel.skel.h"

namespace switchyard::splice {
namespace {

// libbpf prints to stderr by default; the caller reports one line instead.
int quiet_libbpf(enum libbpf_print_level, const char*, va_list) {
  return 0;
}

// Makes the kernel run the verdict program over bytes that were already queued on the socket
// before it joined the sockhash: the verdict hook runs on "data ready", which only new segments
// raise. A receive on a sockmap socket finds such bytes still in the TCP queue and raises data
// ready itself, under the socket lock (tcp_bpf_recvmsg_parser), so the verdict cannot run twice
// at once over the same queue. (setsockopt(SO_RCVLOWAT) would raise it too, but without the lock:
// racing the softirq, two segments were forwarded twice in one of ~15 runs of 1 GiB.) MSG_PEEK:
// whatever the receive finds for userspace stays there for the tunnel to read.
void kick(int fd) {
  char c;
  [[maybe_unused]] ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
}

}  // namespace

std::shared_ptr<SockmapEngine> SockmapEngine::load(std::string& error) {
  libbpf_print_fn_t prev = libbpf_set_print(quiet_libbpf);
  tunnel_bpf* skel = tunnel_bpf::open_and_load();
  libbpf_set_print(prev);
  if (!skel) {
    error = fmt::format("loading the sk_skb program failed: {}", std::strerror(errno));
    return nullptr;
  }
  std::shared_ptr<SockmapEngine> e(new SockmapEngine());
  e->skel_ = skel;
  e->socks_fd_ = bpf_map__fd(skel->maps.sy_tunnel_socks);
  e->sides_fd_ = bpf_map__fd(skel->maps.sy_tunnel_sides);
  // libbpf 1.1 has no sockmap attach helper: attach the program to the map directly. It stays
  // attached while the map exists (both are freed when the skeleton is destroyed).
  if (bpf_prog_attach(bpf_program__fd(skel->progs.sy_tunnel_verdict), e->socks_fd_,
                      BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
    error = fmt::format("attaching the stream verdict program failed: {}", std::strerror(errno));
    return nullptr;
  }
  return e;
}

SockmapEngine::~SockmapEngine() {
  if (skel_) tunnel_bpf::destroy(skel_);
}

std::uint64_t SockmapEngine::cookie_of(int fd) {
  std::uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return 0;
  return cookie;
}

bool SockmapEngine::add(const Side& a, const Side& b, std::string& error) const {
  // Sides first, so that a socket's first redirected byte already finds its peer's cookie. If a
  // segment reaches `b` before `a` is in the sockhash, the program cannot redirect it and hands
  // it (and from then on every byte of that side) to userspace, where the tunnel copies it: no
  // byte is lost or reordered either way.
  sy_tunnel_side sa{b.cookie, 0, 0, 0, 0};
  sy_tunnel_side sb{a.cookie, 0, 0, 0, 0};
  if (bpf_map_update_elem(sides_fd_, &a.cookie, &sa, BPF_NOEXIST) != 0 ||
      bpf_map_update_elem(sides_fd_, &b.cookie, &sb, BPF_NOEXIST) != 0) {
    error = fmt::format("sides map: {}", std::strerror(errno));
    remove(a, b);
    return false;
  }
  std::uint64_t fa = static_cast<std::uint64_t>(a.fd), fb = static_cast<std::uint64_t>(b.fd);
  if (bpf_map_update_elem(socks_fd_, &b.cookie, &fb, BPF_NOEXIST) != 0 ||
      bpf_map_update_elem(socks_fd_, &a.cookie, &fa, BPF_NOEXIST) != 0) {
    error = fmt::format("sockhash: {}", std::strerror(errno));
    remove(a, b);
    return false;
  }
  kick(b.fd);
  kick(a.fd);
  return true;
}

void SockmapEngine::remove(const Side& a, const Side& b) const {
  for (const Side* s : {&a, &b}) {
    bpf_map_delete_elem(socks_fd_, &s->cookie);
    bpf_map_delete_elem(sides_fd_, &s->cookie);
  }
}

SockmapEngine::Counts SockmapEngine::read(const Side& s) const {
  sy_tunnel_side v{};
  if (bpf_map_lookup_elem(sides_fd_, &s.cookie, &v) != 0) return {};
  return {v.bytes, v.passed};
}

}  // namespace switchyard::splice
