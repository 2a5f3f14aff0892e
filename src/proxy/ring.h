// A worker's io_uring: submission helpers, completion dispatch and the provided-buffer ring that
// all receives draw from.
//
// Owned by one worker thread (the ring is created SINGLE_ISSUER); nothing here is thread-safe.
// Every SQE carries a pointer to an IoOp (or 0 for completions nobody needs); the completion calls
// IoOp::complete on the worker thread, never synchronously from a submit.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace switchyard::proxy {

// One outstanding operation. The object must outlive the operation: owners count their in-flight
// ops and are freed only when none remain.
class IoOp {
 public:
  virtual void complete(int res, std::uint32_t flags) = 0;

 protected:
  ~IoOp() = default;
};

class Ring {
 public:
  // Creates the ring; returns an error message (empty on success) naming the missing feature.
  std::string init(unsigned entries);
  ~Ring();
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // A zeroed SQE whose user_data is `op` (nullptr: completion ignored). Flushes to the kernel if
  // the submission queue is full, so it never fails.
  io_uring_sqe* sqe(IoOp* op);

  // Submits pending SQEs, waits up to `timeout_ms` for at least one completion, and dispatches
  // all available completions. Returns the number dispatched.
  unsigned run_once(unsigned timeout_ms);

  io_uring* raw() { return &ring_; }

 private:
  io_uring ring_{};
  bool initialised_ = false;
};

// Receive buffers registered with the kernel (IORING_REGISTER_PBUF_RING): a recv with
// IOSQE_BUFFER_SELECT picks one; the receiver gives it back with recycle() once the bytes have
// been forwarded. Buffer group id 0.
class BufferRing {
 public:
  static constexpr std::uint16_t kGroup = 0;

  std::string init(Ring& ring, unsigned count, std::size_t size);
  ~BufferRing();
  BufferRing() = default;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  char* data(std::uint16_t bid) { return storage_.get() + static_cast<std::size_t>(bid) * size_; }
  std::size_t buffer_size() const { return size_; }
  void recycle(std::uint16_t bid);
  unsigned available() const { return available_; }
  unsigned count() const { return count_; }
  void taken() { --available_; }

 private:
  Ring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::unique_ptr<char[]> storage_;
  unsigned count_ = 0;
  std::size_t size_ = 0;
  unsigned available_ = 0;
};

}  // namespace switchyard::proxy
