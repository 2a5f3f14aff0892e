// The few kinds of io_uring operation a connection issues, each embedded in its owner so that a
// steady-state request allocates nothing. Owners count their in-flight operations and are freed
// only when none remain (the kernel may still write into them until then).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>

#include "proxy/ring.h"

namespace switchyard::proxy {

class Worker;

using OpHandler = void (*)(void* owner, int res, std::uint32_t flags);

// A receive into a buffer from the worker's BufferRing (IOSQE_BUFFER_SELECT). On ENOBUFS the
// operation parks itself with the worker and is resubmitted when a buffer is recycled, so owners
// only ever see data, EOF or a real error.
class RecvOp final : public IoOp {
 public:
  RecvOp(void* owner, OpHandler handler) : owner_(owner), handler_(handler) {}
  void submit(Worker& w, int fd);
  void resubmit();  // after ENOBUFS; or reports -ECANCELED if cancel() was called meanwhile
  void cancel() { cancelled_ = true; }
  bool in_flight() const { return in_flight_; }
  void complete(int res, std::uint32_t flags) override;

  static std::uint16_t buffer_id(std::uint32_t flags) {
    return static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  }
  static bool has_buffer(std::uint32_t flags) { return flags & IORING_CQE_F_BUFFER; }

 private:
  void* owner_;
  OpHandler handler_;
  Worker* worker_ = nullptr;
  int fd_ = -1;
  bool in_flight_ = false;
  bool cancelled_ = false;
};

// A send of up to kMaxRanges byte ranges, resubmitted until all are sent; the owner hears once,
// with the total or an error.
class SendOp final : public IoOp {
 public:
  static constexpr int kMaxRanges = 4;

  SendOp(void* owner, OpHandler handler) : owner_(owner), handler_(handler) {}
  void clear() {
    iovcnt_ = 0;
    total_ = 0;
  }
  void add(const void* data, std::size_t len) {
    if (len == 0) return;
    iov_[iovcnt_++] = iovec{const_cast<void*>(data), len};
    total_ += len;
  }
  std::size_t total() const { return total_; }
  const iovec* iov() const { return iov_; }
  int iovcnt() const { return iovcnt_; }
  void submit(Worker& w, int fd);
  bool in_flight() const { return in_flight_; }
  void complete(int res, std::uint32_t flags) override;

 private:
  void issue();

  void* owner_;
  OpHandler handler_;
  Worker* worker_ = nullptr;
  int fd_ = -1;
  iovec iov_[kMaxRanges]{};
  int iovcnt_ = 0;
  int first_ = 0;  // first iovec not fully sent
  std::size_t total_ = 0;
  msghdr msg_{};
  bool in_flight_ = false;
};

// Any other single-shot operation (connect, eventfd read): forwards the completion.
class SimpleOp final : public IoOp {
 public:
  SimpleOp(void* owner, OpHandler handler) : owner_(owner), handler_(handler) {}
  void complete(int res, std::uint32_t flags) override { handler_(owner_, res, flags); }

 private:
  void* owner_;
  OpHandler handler_;
};

}  // namespace switchyard::proxy
