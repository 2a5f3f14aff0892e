#include "splice/body_pump.h"

#include <fcntl.h>
#include <sys/types.h>

#include <cerrno>

namespace switchyard::splice {

void BodyPump::start(int src, int dst, const Pipe& pipe, std::uint64_t length) {
  src_ = src;
  dst_ = dst;
  pipe_r_ = pipe.read_fd();
  pipe_w_ = pipe.write_fd();
  capacity_ = pipe.capacity();
  to_read_ = length;
  in_pipe_ = 0;
  error_ = 0;
  stream_ = false;
  ended_ = false;
}

void BodyPump::start_stream(int src, int dst, const Pipe& pipe) {
  start(src, dst, pipe, UINT64_MAX);
  stream_ = true;
}

BodyPump::Result BodyPump::run(std::uint64_t& moved, std::size_t budget) {
  constexpr unsigned kFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  std::size_t this_call = 0;
  for (;;) {
    // Fill the pipe from the source. A short read means the socket is (almost certainly) empty:
    // rather than a further splice that would only say EAGAIN, write and then poll (if bytes
    // arrived meanwhile, the poll completes at once).
    bool source_dry = false;
    if (to_read_ > 0 && in_pipe_ < capacity_) {
      std::size_t room = capacity_ - in_pipe_;
      std::size_t want = to_read_ < room ? static_cast<std::size_t>(to_read_) : room;
      ++calls_;
      ssize_t n = ::splice(src_, nullptr, pipe_w_, nullptr, want, kFlags);
      if (n > 0) {
        to_read_ -= static_cast<std::uint64_t>(n);
        in_pipe_ += static_cast<std::size_t>(n);
        if (static_cast<std::size_t>(n) < want) source_dry = true;
      } else if (n == 0) {
        if (!stream_) return Result::kSourceClosed;
        // The stream ended: what is left in the pipe still goes out, then kDone.
        ended_ = true;
        to_read_ = 0;
      } else if (errno == EAGAIN) {
        // Nothing to read, or the pipe's slots are full of small fragments (then in_pipe_ > 0).
        source_dry = true;
      } else if (errno != EINTR) {
        error_ = errno;
        return Result::kSourceError;
      }
    }
    // Drain the pipe into the destination. A short write means its send buffer is full.
    if (in_pipe_ > 0) {
      ++calls_;
      ssize_t n = ::splice(pipe_r_, nullptr, dst_, nullptr, in_pipe_, kFlags);
      if (n > 0) {
        in_pipe_ -= static_cast<std::size_t>(n);
        moved += static_cast<std::uint64_t>(n);
        this_call += static_cast<std::size_t>(n);
        if (in_pipe_ > 0) return Result::kWantWrite;
      } else if (n < 0 && errno == EAGAIN) {
        return Result::kWantWrite;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        error_ = n < 0 ? errno : EPIPE;
        return Result::kSinkError;
      }
    }
    if (to_read_ == 0 && in_pipe_ == 0) return Result::kDone;
    if (source_dry || this_call >= budget) return Result::kWantRead;
  }
}

}  // namespace switchyard::splice
