// Moves a body of known length from one socket to another through a pipe with non-blocking
// splice(2): source socket -> pipe -> destination socket, the bytes never copied to userspace.
//
// Why plain splice(2) from the worker thread and not IORING_OP_SPLICE: io_uring cannot do a
// socket splice without blocking, so it hands every one to an io-wq worker thread. Measured here
// (bench/splice_mech.cc, BENCHMARKS.md "Copy vs splice"): with 64 KiB pipes that costs as much
// CPU per MiB as copying (744 vs 686 µs/MiB), while polling for readiness and then calling
// splice() with SPLICE_F_NONBLOCK until EAGAIN, as HAProxy does, costs 425; with 1 MiB pipes both
// reach ~233. What decides it is what the numbers do not show: an io-wq splice *blocks* in the
// kernel, so every stalled client or upload would hold a kernel thread for as long as it stalls,
// and a timeout could not simply cancel it. Here a stalled transfer costs one armed poll, which a
// timeout removes. Bigger pipes mean fewer calls: 1 MiB (the unprivileged maximum) moves a MiB in
// 3-6 splice calls instead of 2 x 64 receives and sends of 16 KiB, and copies nothing.
//
// The pump only does system calls; waiting (poll), timeouts and what a result means for the
// connection are the caller's. Both sockets must be O_NONBLOCK (a socket splice honours the
// file's flag, not SPLICE_F_NONBLOCK). Not thread-safe; one pump per direction of a connection.
#pragma once

#include <cstddef>
#include <cstdint>

#include "splice/pipe_pool.h"

namespace switchyard::splice {

class BodyPump {
 public:
  enum class Result {
    kDone,          // every byte of the body has been written to the destination (a stream:
                    // the source ended and every byte it sent has been written)
    kWantRead,      // the source has nothing more now: wait until it is readable (pipe empty)
    kWantWrite,     // the destination is full: wait until it is writable (pipe holds bytes)
    kSourceClosed,  // the source ended (EOF) before the body did (never for a stream)
    kSourceError,   // reading failed (error()); e.g. ECONNRESET
    kSinkError,     // writing failed (error()); e.g. EPIPE, ECONNRESET
  };

  // Moves `length` bytes from `src` to `dst` through `pipe` (empty; must outlive the pump's use).
  void start(int src, int dst, const Pipe& pipe, std::uint64_t length);
  // A stream of unknown length (a tunnel direction): moves bytes until the source ends (EOF),
  // then drains the pipe; kDone once both happened. Same pipe and socket rules as start().
  void start_stream(int src, int dst, const Pipe& pipe);

  // Splices until it has to wait, the body is done, something fails, or about `budget` bytes
  // have moved this call (fairness towards the worker's other connections: then kWantRead or
  // kWantWrite, whose readiness is already there). Adds the bytes written to `dst` to `moved`.
  Result run(std::uint64_t& moved, std::size_t budget = 4 * 1024 * 1024);

  int error() const { return error_; }
  std::uint64_t left_to_read() const { return to_read_; }
  std::size_t in_pipe() const { return in_pipe_; }
  // Bytes not yet written to the destination.
  std::uint64_t left() const { return to_read_ + in_pipe_; }
  // System calls made so far (for tests and the benchmark note).
  std::uint64_t calls() const { return calls_; }
  // A stream whose source has ended (its remaining bytes may still be in the pipe).
  bool source_ended() const { return ended_; }

 private:
  int src_ = -1;
  int dst_ = -1;
  int pipe_r_ = -1;
  int pipe_w_ = -1;
  std::size_t capacity_ = 0;
  std::uint64_t to_read_ = 0;
  std::size_t in_pipe_ = 0;
  int error_ = 0;
  std::uint64_t calls_ = 0;
  bool stream_ = false;
  bool ended_ = false;
};

}  // namespace switchyard::splice
