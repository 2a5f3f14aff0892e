// The front end's end of the TCP handoff control channel (handoff/message.h), on a worker's
// io_uring: one AgentLink per worker and agent, opened on the first offer and kept open.
//
// A session freezes its client socket, offers it with offer(), and hears the agent's answer
// through its callback: ready (the agent holds a frozen copy; steer the client's packets there,
// close the local socket, then go()) or not (resume the local socket and proxy the request).
// Never blocks the worker: connect, send and receive are ring operations.
//
// Worker thread only. Links live as long as their worker (operations may refer to them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "handoff/message.h"
#include "proxy/io_ops.h"
#include "proxy/worker.h"

namespace switchyard::proxy {

class AgentLink {
 public:
  // ready: the agent restored the connection (frozen) and waits for Go; otherwise `why` says why
  // not. Called from a completion, never from inside offer().
  using Answer = void (*)(void* owner, bool ready, std::string_view why);

  AgentLink(Worker& w, const config::SocketAddress& agent, std::string key);
  ~AgentLink();
  AgentLink(const AgentLink&) = delete;
  AgentLink& operator=(const AgentLink&) = delete;

  const config::SocketAddress& agent() const { return agent_; }
  const std::string& key() const { return key_; }

  // Offers connection `id`; false (nothing sent, no answer will come) while the link is down
  // after a failure (one second) or closing.
  bool offer(std::uint64_t id, const handoff::TcpState& state, std::string_view unread, void* owner,
             Answer answer);
  // The flow is steered and the local socket closed: the agent may serve it.
  void go(std::uint64_t id);
  // The session gives up on `id` (timeout, steering failed, closing): no answer will come, and
  // the agent drops its copy. A link that never became ready is closed (and down for a second).
  void abort(std::uint64_t id);

 private:
  enum class State { kIdle, kConnecting, kHello, kReady, kClosing };
  struct Waiter {
    std::uint64_t id;
    void* owner;
    Answer answer;
    bool sent;  // the Offer went out (else it waits for the Hello in queued_)
  };

  static void on_connect_cb(void* self, int res, std::uint32_t flags);
  static void on_recv_cb(void* self, int res, std::uint32_t flags);
  static void on_send_cb(void* self, int res, std::uint32_t flags);
  void connect();
  void on_recv(int res, std::uint32_t flags);
  void on_frame(std::string_view frame);
  void send(const handoff::Frame& f);
  void flush();
  // Answers every waiter "not ready" and closes the socket; the link stays down for a second.
  void fail(std::string_view why);
  void maybe_closed();

  Worker& w_;
  config::SocketAddress agent_;
  std::string key_;
  handoff::Channel channel_;
  State state_ = State::kIdle;
  int fd_ = -1;
  int inflight_ = 0;
  Clock::time_point down_until_{};
  std::vector<Waiter> waiters_;
  std::vector<handoff::Frame> queued_;  // offers waiting for the Hello (encoded after it)
  std::string in_;                      // received bytes not yet framed
  std::string out_;                     // being sent
  std::string next_out_;                // to send after out_
  SimpleOp connect_op_;
  RecvOp recv_;
  SendOp send_;
};

}  // namespace switchyard::proxy
