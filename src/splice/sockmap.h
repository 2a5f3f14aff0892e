// The sockmap engine for tunnels: one BPF sockhash with an sk_skb stream-verdict program attached
// (src/splice/bpf/tunnel.bpf.c) that redirects each member socket's received bytes to its peer's
// transmit path, so the bytes of a tunnel never reach userspace.
//
// Ownership and threads: loaded once at start-up (control-plane thread) and then shared read-only
// by every worker through a shared_ptr; the object itself has no mutable state after load(). The
// map operations are bpf(2) system calls, which the kernel serialises per map entry: workers call
// add()/remove()/read() concurrently without any lock of ours (each tunnel touches only the
// entries of its own two sockets, keyed by their socket cookies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "splice/abi/tunnel_abi.h"

struct tunnel_bpf;

namespace switchyard::splice {

class SockmapEngine {
 public:
  // Loads and attaches the program. Null with `error` set when BPF is unavailable (not root, no
  // CAP_BPF, kernel without sockmap): callers then use the copy engine.
  static std::shared_ptr<SockmapEngine> load(std::string& error);
  ~SockmapEngine();
  SockmapEngine(const SockmapEngine&) = delete;
  SockmapEngine& operator=(const SockmapEngine&) = delete;

  // One side of a tunnel as the kernel sees it.
  struct Side {
    std::uint64_t cookie = 0;  // SO_COOKIE of the socket
    int fd = -1;
  };
  struct Counts {
    std::uint64_t redirected = 0;  // bytes received on the socket and sent on by the kernel
    std::uint64_t passed = 0;      // bytes handed to userspace instead (see tunnel.bpf.c)
  };

  // The socket's cookie, or 0 on error.
  static std::uint64_t cookie_of(int fd);
  // Puts both sockets into the sockhash, each redirecting to the other. Bytes already waiting in
  // either receive queue are redirected too (see kick in sockmap.cc). On failure (map full,
  // socket not in a state the kernel accepts) nothing stays behind and `error` says why.
  bool add(const Side& a, const Side& b, std::string& error) const;
  // Forgets both sides' entries (the sockets leave the sockhash by themselves when closed; this
  // also takes them out at once).
  void remove(const Side& a, const Side& b) const;
  // The side's counters (zeros if unknown).
  Counts read(const Side& s) const;

 private:
  SockmapEngine() = default;
  tunnel_bpf* skel_ = nullptr;
  int socks_fd_ = -1;
  int sides_fd_ = -1;
};

}  // namespace switchyard::splice
