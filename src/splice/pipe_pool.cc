#include "splice/pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace switchyard::splice {

Pipe& Pipe::operator=(Pipe&& o) noexcept {
  if (this != &o) {
    reset();
    read_ = std::exchange(o.read_, -1);
    write_ = std::exchange(o.write_, -1);
    capacity_ = std::exchange(o.capacity_, 0);
  }
  return *this;
}

int Pipe::open(std::size_t size) {
  reset();
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -errno;
  read_ = fds[0];
  write_ = fds[1];
  if (size > 0) ::fcntl(write_, F_SETPIPE_SZ, static_cast<int>(size));
  int cap = ::fcntl(write_, F_GETPIPE_SZ);
  capacity_ = cap > 0 ? static_cast<std::size_t>(cap) : 64 * 1024;
  return 0;
}

void Pipe::reset() {
  if (read_ >= 0) ::close(read_);
  if (write_ >= 0) ::close(write_);
  read_ = write_ = -1;
  capacity_ = 0;
}

Pipe PipePool::acquire(int& error) {
  error = 0;
  ++acquired_;
  if (!idle_.empty()) {
    Pipe p = std::move(idle_.back());
    idle_.pop_back();
    return p;
  }
  Pipe p;
  error = p.open(size_);
  if (error == 0) {
    ++created_;
    if (p.capacity() < size_) size_refused_ = true;
  }
  return p;
}

void PipePool::release(Pipe pipe, bool empty) {
  if (!pipe.valid() || !empty || idle_.size() >= max_idle_) return;  // closed by ~Pipe
  // A refused F_SETPIPE_SZ leaves a smaller pipe: still worth keeping (same for every pipe).
  idle_.push_back(std::move(pipe));
}

std::size_t PipePool::expire_unused(unsigned ticks) {
  if (acquired_ != seen_acquired_) {
    seen_acquired_ = acquired_;
    unused_ticks_ = 0;
    return 0;
  }
  if (idle_.empty() || ++unused_ticks_ < ticks) return 0;
  std::size_t n = idle_.size();
  idle_.clear();
  unused_ticks_ = 0;
  return n;
}

void PipePool::set_size(std::size_t size) {
  if (size == size_) return;
  size_ = size;
  size_refused_ = size_refused_reported_ = false;
  idle_.clear();
}

}  // namespace switchyard::splice
