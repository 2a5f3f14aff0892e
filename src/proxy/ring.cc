#include "proxy/ring.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace switchyard::proxy {

std::string Ring::init(unsigned entries) {
  io_uring_params params{};
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
                 IORING_SETUP_DEFER_TASKRUN;
  params.cq_entries = entries * 4;
  params.flags |= IORING_SETUP_CQSIZE;
  int rc = io_uring_queue_init_params(entries, &ring_, &params);
  if (rc == -EINVAL) {
    // Older kernels (< 6.1) lack DEFER_TASKRUN/SINGLE_ISSUER; they are optimisations only.
    params = {};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = entries * 4;
    rc = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (rc < 0) return fmt::format("io_uring_queue_init: {}", std::strerror(-rc));
  initialised_ = true;
  if (!(params.features & IORING_FEAT_EXT_ARG)) {
    return "kernel io_uring lacks IORING_FEAT_EXT_ARG (needs Linux >= 5.11)";
  }
  if (!(params.features & IORING_FEAT_FAST_POLL)) {
    return "kernel io_uring lacks IORING_FEAT_FAST_POLL (needs Linux >= 5.7)";
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (!probe) return "io_uring probe failed";
  struct {
    int op;
    const char* name;
  } required[] = {{IORING_OP_ACCEPT, "accept"},       {IORING_OP_RECV, "recv"},
                  {IORING_OP_SENDMSG, "sendmsg"},     {IORING_OP_CONNECT, "connect"},
                  {IORING_OP_ASYNC_CANCEL, "cancel"}, {IORING_OP_READ, "read"}};
  std::string missing;
  for (auto& r : required) {
    if (!io_uring_opcode_supported(probe, r.op)) missing += std::string(" ") + r.name;
  }
  io_uring_free_probe(probe);
  if (!missing.empty()) return "kernel io_uring lacks operations:" + missing;
  return {};
}

Ring::~Ring() {
  if (initialised_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* Ring::sqe(IoOp* op) {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data(s, op);
  return s;
}

unsigned Ring::run_once(unsigned timeout_ms) {
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
  io_uring_cqe* cqe = nullptr;
  io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  unsigned handled = 0;
  // Completions may submit new SQEs; they are flushed by the next call.
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    auto* op = static_cast<IoOp*>(io_uring_cqe_get_data(cqe));
    int res = cqe->res;
    std::uint32_t flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    if (op) op->complete(res, flags);
    ++handled;
  }
  return handled;
}

std::string BufferRing::init(Ring& ring, unsigned count, std::size_t size) {
  ring_ = &ring;
  count_ = count;
  size_ = size;
  // liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves (page aligned).
  ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem =
      mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return fmt::format("mmap buffer ring: {}", std::strerror(errno));
  br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = kGroup;
  int rc = io_uring_register_buf_ring(ring.raw(), &reg, 0);
  if (rc < 0) {
    return fmt::format("kernel io_uring lacks provided buffer rings (needs Linux >= 5.19): {}",
                       std::strerror(-rc));
  }
  storage_ = std::make_unique<char[]>(count * size);
  io_uring_buf_ring_init(br_);
  int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br_, data(static_cast<std::uint16_t>(i)), static_cast<unsigned>(size),
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br_, static_cast<int>(count));
  available_ = count;
  return {};
}

BufferRing::~BufferRing() {
  if (br_) {
    io_uring_unregister_buf_ring(ring_->raw(), kGroup);
    munmap(br_, ring_bytes_);
  }
}

void BufferRing::recycle(std::uint16_t bid) {
  io_uring_buf_ring_add(br_, data(bid), static_cast<unsigned>(size_), bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
  ++available_;
}

}  // namespace switchyard::proxy
