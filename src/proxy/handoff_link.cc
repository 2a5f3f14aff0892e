#include "proxy/handoff_link.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace switchyard::proxy {
namespace {

// After a failure, offers are refused at once for this long: a dead agent must not cost every
// request a connect attempt (the requests are proxied instead).
constexpr std::chrono::seconds kDownTime{1};

}  // namespace

AgentLink::AgentLink(Worker& w, const config::SocketAddress& agent, std::string key)
    : w_(w),
      agent_(agent),
      key_(key),
      channel_(handoff::Channel::Side::kFrontEnd, std::move(key)),
      connect_op_(this, &AgentLink::on_connect_cb),
      recv_(this, &AgentLink::on_recv_cb),
      send_(this, &AgentLink::on_send_cb) {}

AgentLink::~AgentLink() {
  if (fd_ >= 0) ::close(fd_);
}

bool AgentLink::offer(std::uint64_t id, const handoff::TcpState& state, std::string_view unread,
                      void* owner, Answer answer) {
  if (state_ == State::kClosing) return false;
  if (state_ == State::kIdle) {
    if (w_.now() < down_until_) return false;
    connect();
    if (state_ != State::kConnecting) return false;
  }
  handoff::Frame f;
  f.type = handoff::FrameType::kOffer;
  f.id = id;
  f.state = state;
  f.unread.assign(unread);
  const bool ready = state_ == State::kReady;
  waiters_.push_back(Waiter{id, owner, answer, ready});
  if (ready) {
    send(f);
  } else {
    queued_.push_back(std::move(f));
  }
  return true;
}

void AgentLink::go(std::uint64_t id) {
  if (state_ != State::kReady) return;  // the agent's frozen copy dies with the link
  handoff::Frame f;
  f.type = handoff::FrameType::kGo;
  f.id = id;
  send(f);
}

void AgentLink::abort(std::uint64_t id) {
  auto it =
      std::find_if(waiters_.begin(), waiters_.end(), [id](const Waiter& x) { return x.id == id; });
  if (it == waiters_.end()) return;
  const bool sent = it->sent;
  waiters_.erase(it);
  std::erase_if(queued_, [id](const handoff::Frame& f) { return f.id == id; });
  if (state_ != State::kReady) {
    // Still connecting or waiting for the Hello past the handoff timeout: the agent is not
    // answering. Give up on it for a while rather than make every request wait.
    return fail("the agent did not answer in time");
  }
  if (sent) {
    handoff::Frame f;
    f.type = handoff::FrameType::kAbort;
    f.id = id;
    send(f);
  }
}

void AgentLink::connect() {
  fd_ = ::socket(agent_.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    spdlog::warn("handoff: agent {}: socket: {}", agent_.text, std::strerror(errno));
    down_until_ = w_.now() + kDownTime;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  channel_ = handoff::Channel(handoff::Channel::Side::kFrontEnd, key_);
  in_.clear();
  out_.clear();
  next_out_.clear();
  state_ = State::kConnecting;
  ++inflight_;
  io_uring_prep_connect(w_.ring().sqe(&connect_op_), fd_, agent_.sa(), agent_.length);
}

void AgentLink::on_connect_cb(void* self, int res, std::uint32_t) {
  auto* l = static_cast<AgentLink*>(self);
  --l->inflight_;
  if (l->state_ == State::kClosing) return l->maybe_closed();
  if (res < 0) return l->fail(fmt::format("connect: {}", std::strerror(-res)));
  l->state_ = State::kHello;
  ++l->inflight_;
  l->recv_.submit(l->w_, l->fd_);
}

void AgentLink::on_recv_cb(void* self, int res, std::uint32_t flags) {
  static_cast<AgentLink*>(self)->on_recv(res, flags);
}

void AgentLink::on_recv(int res, std::uint32_t flags) {
  --inflight_;
  if (RecvOp::has_buffer(flags)) {
    const std::uint16_t bid = RecvOp::buffer_id(flags);
    if (res > 0 && state_ != State::kClosing) {
      in_.append(w_.buffers().data(bid), static_cast<std::size_t>(res));
    }
    w_.buffers().recycle(bid);
  }
  if (state_ == State::kClosing) return maybe_closed();
  if (res <= 0) return fail(res == 0 ? "closed by the agent" : std::strerror(-res));
  std::size_t used = 0;
  while (state_ != State::kClosing) {
    std::string_view rest(in_.data() + used, in_.size() - used);
    std::size_t need = handoff::Channel::frame_size(rest);  // 0: header incomplete
    if (need == 0 || rest.size() < need) break;
    used += need;
    on_frame(rest.substr(0, need));
  }
  if (state_ == State::kClosing) return maybe_closed();
  in_.erase(0, used);
  ++inflight_;
  recv_.submit(w_, fd_);
}

void AgentLink::on_frame(std::string_view frame) {
  std::string error;
  if (state_ == State::kHello) {
    if (!channel_.accept_hello(frame, error)) return fail(error);
    state_ = State::kReady;
    for (Waiter& x : waiters_) x.sent = true;
    std::vector<handoff::Frame> offers = std::move(queued_);
    queued_.clear();
    for (const handoff::Frame& f : offers) send(f);
    return;
  }
  auto f = channel_.decode(frame, error);
  if (!f) return fail(error);
  if (f->type != handoff::FrameType::kReady && f->type != handoff::FrameType::kFailed) {
    return fail("unexpected frame from the agent");
  }
  auto it = std::find_if(waiters_.begin(), waiters_.end(),
                         [&](const Waiter& x) { return x.id == f->id; });
  if (it == waiters_.end()) {
    // Answer to an offer the session gave up on: Abort went (or goes) out; nothing to do.
    return;
  }
  Waiter x = *it;
  waiters_.erase(it);
  const bool ready = f->type == handoff::FrameType::kReady;
  x.answer(x.owner, ready, ready ? std::string_view() : std::string_view(f->reason));
}

void AgentLink::send(const handoff::Frame& f) {
  next_out_ += channel_.encode(f);
  flush();
}

void AgentLink::flush() {
  if (send_.in_flight() || next_out_.empty() || state_ != State::kReady) return;
  out_.swap(next_out_);
  next_out_.clear();
  send_.clear();
  send_.add(out_.data(), out_.size());
  ++inflight_;
  send_.submit(w_, fd_);
}

void AgentLink::on_send_cb(void* self, int res, std::uint32_t) {
  auto* l = static_cast<AgentLink*>(self);
  --l->inflight_;
  if (l->state_ == State::kClosing) return l->maybe_closed();
  if (res < 0) return l->fail(fmt::format("send: {}", std::strerror(-res)));
  l->out_.clear();
  l->flush();
}

void AgentLink::fail(std::string_view why) {
  if (state_ == State::kClosing || state_ == State::kIdle) return;
  spdlog::warn("handoff: agent {}: {}; its connections are proxied for {} s", agent_.text, why,
               kDownTime.count());
  state_ = State::kClosing;
  down_until_ = w_.now() + kDownTime;
  queued_.clear();
  // Wake what is in flight (a shutdown makes a pending receive return), close when all is back.
  ::shutdown(fd_, SHUT_RDWR);
  recv_.cancel();  // if parked waiting for a buffer
  if (inflight_ > 0) {
    io_uring_prep_cancel_fd(w_.ring().sqe(nullptr), fd_, IORING_ASYNC_CANCEL_ALL);
  }
  std::vector<Waiter> waiters = std::move(waiters_);
  waiters_.clear();
  const std::string reason = fmt::format("agent {}: {}", agent_.text, why);
  for (const Waiter& x : waiters) x.answer(x.owner, false, reason);
  maybe_closed();
}

void AgentLink::maybe_closed() {
  if (state_ != State::kClosing || inflight_ > 0) return;
  ::close(fd_);
  fd_ = -1;
  state_ = State::kIdle;
}

}  // namespace switchyard::proxy
