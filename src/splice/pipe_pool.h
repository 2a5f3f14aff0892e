// Pipes for splice(2): socket -> pipe -> socket moves bytes between two sockets without copying
// them to userspace (the pipe holds references to the socket buffers' pages).
//
// A Pipe owns its two descriptors (RAII). A PipePool keeps a worker's empty pipes for reuse, so
// that a body in steady state costs no pipe2()/F_SETPIPE_SZ/close() system calls.
//
// Owned and used by one worker thread; nothing here is thread-safe. No io_uring: pure system
// calls, testable on their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace switchyard::splice {

class Pipe {
 public:
  Pipe() = default;
  ~Pipe() { reset(); }
  Pipe(Pipe&& o) noexcept : read_(o.read_), write_(o.write_), capacity_(o.capacity_) {
    o.read_ = o.write_ = -1;
    o.capacity_ = 0;
  }
  Pipe& operator=(Pipe&& o) noexcept;
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  // Creates a non-blocking, close-on-exec pipe and asks for `size` bytes of capacity. Returns
  // 0, or -errno if pipe2() failed. A refused F_SETPIPE_SZ is not an error: capacity() says what
  // the pipe holds (the kernel's default, 64 KiB, then).
  int open(std::size_t size);
  void reset();  // closes both ends

  bool valid() const { return read_ >= 0; }
  int read_fd() const { return read_; }
  int write_fd() const { return write_; }
  std::size_t capacity() const { return capacity_; }

 private:
  int read_ = -1;
  int write_ = -1;
  std::size_t capacity_ = 0;
};

class PipePool {
 public:
  // `size`: requested capacity of each pipe; `max_idle`: empty pipes kept for reuse (more are
  // closed when given back).
  PipePool(std::size_t size, std::size_t max_idle) : size_(size), max_idle_(max_idle) {}

  // An empty pipe: a kept one, else a new one. An invalid Pipe (with `error` set to -errno) if
  // the process is out of descriptors or memory; the caller then copies instead.
  Pipe acquire(int& error);
  // Gives a pipe back. `empty` must say whether every byte written into it was read out: a pipe
  // with bytes left (a splice abandoned halfway) is closed, never reused.
  void release(Pipe pipe, bool empty);

  // Applies a new requested size (a reload): kept pipes of another size are closed.
  void set_size(std::size_t size);

  // Called on every worker tick: once no pipe has been taken for `ticks` ticks in a row, the kept
  // ones are closed (a burst of large bodies must not hold two descriptors per pipe for ever;
  // steady splicing keeps its pipes). Returns the number closed.
  std::size_t expire_unused(unsigned ticks);

  std::size_t size() const { return size_; }
  std::size_t idle() const { return idle_.size(); }
  std::uint64_t created() const { return created_; }  // pipes opened over the pool's life
  // True once: the kernel refused the requested size (for a single log line).
  bool take_size_refused() {
    bool r = size_refused_ && !size_refused_reported_;
    if (r) size_refused_reported_ = true;
    return r;
  }

 private:
  std::size_t size_;
  std::size_t max_idle_;
  std::vector<Pipe> idle_;
  std::uint64_t created_ = 0;
  std::uint64_t acquired_ = 0;  // acquire() calls, for expire_unused()
  std::uint64_t seen_acquired_ = 0;
  unsigned unused_ticks_ = 0;
  bool size_refused_ = false;
  bool size_refused_reported_ = false;
};

}  // namespace switchyard::splice
