// Moving an established TCP connection between sockets (and hosts) with TCP_REPAIR.
//
// The front end freezes the client's socket after reading a request, ships its TcpState to the
// real server's agent, which restores it into a fresh socket bound to the same VIP:port; from
// then on the real server answers the client directly. Frozen sockets neither send nor answer
// segments, and closing one sends no FIN or RST, so the client sees one connection throughout.
//
// What is carried: sequence numbers of both directions, the options negotiated at the handshake
// (MSS, window scaling, SACK, timestamps), the timestamp clock (TCP_TIMESTAMP, so the peer's
// PAWS check keeps passing) and the window state (TCP_REPAIR_WINDOW). Bytes the front end read
// but did not answer (the request) go back into the restored socket's receive queue. A socket
// with unsent or unacknowledged output cannot be moved: freeze() refuses it.
//
// Needs CAP_NET_ADMIN (the kernel's rule for TCP_REPAIR). IPv4 and IPv6.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/unique_fd.h"

namespace switchyard::handoff {

struct TcpState {
  sockaddr_storage local{};   // the address the client connected to (VIP:port)
  sockaddr_storage peer{};    // the client
  std::uint32_t snd_seq = 0;  // next sequence number we send
  std::uint32_t rcv_seq = 0;  // next sequence number we expect
  std::uint16_t mss = 0;      // the peer's MSS as negotiated
  bool sack = false;
  bool timestamps = false;
  bool window_scaling = false;
  std::uint8_t snd_wscale = 0;  // the peer's shift, applied to windows it advertises
  std::uint8_t rcv_wscale = 0;  // our shift
  std::uint32_t timestamp = 0;  // TCP_TIMESTAMP: this connection's timestamp clock now
  // TCP_REPAIR_WINDOW (struct tcp_repair_window).
  std::uint32_t snd_wl1 = 0, snd_wnd = 0, max_window = 0, rcv_wnd = 0, rcv_wup = 0;
  // Bytes in the kernel's receive queue that the application had not read when frozen (say, a
  // pipelined request): they follow whatever the application read and passes to restore().
  std::string queued;
};

// Puts `fd` (an established TCP socket) in repair mode and reads its state. On failure the
// socket is left as it was (out of repair mode) and `error` says why.
std::optional<TcpState> freeze(int fd, std::string& error);

// Takes a frozen socket out of repair mode: the handoff did not happen and this host keeps
// serving the connection. No window probe is sent (TCP_REPAIR_OFF_NO_WP): the peer saw nothing.
bool resume(int fd, std::string& error);

// Creates a socket holding the connection described by `state`, with `unread` in its receive
// queue (read by the application as if the client had just sent it). The socket stays frozen
// until resume(): whoever steers the client's packets here does that first, so that no segment
// meets a host without the connection (which would answer it with a reset).
core::UniqueFd restore(const TcpState& state, std::span<const char> unread, std::string& error);

// "10.0.0.1:80 <- 10.0.0.9:40312 snd 123 rcv 456 mss 1460 ws 7/7 sack ts" for logs.
std::string describe(const TcpState& state);

}  // namespace switchyard::handoff
