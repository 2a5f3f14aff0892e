#include "proxy/io_ops.h"

#include "proxy/worker.h"

namespace switchyard::proxy {

void RecvOp::submit(Worker& w, int fd) {
  worker_ = &w;
  fd_ = fd;
  cancelled_ = false;
  in_flight_ = true;
  io_uring_sqe* sqe = w.ring().sqe(this);
  io_uring_prep_recv(sqe, fd, nullptr, w.buffers().buffer_size(), 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BufferRing::kGroup;
}

void RecvOp::resubmit() {
  if (cancelled_) {
    in_flight_ = false;
    handler_(owner_, -ECANCELED, 0);
    return;
  }
  submit(*worker_, fd_);
}

void RecvOp::complete(int res, std::uint32_t flags) {
  if (res == -ENOBUFS && !cancelled_) {
    worker_->wait_for_buffer(this);  // still logically in flight
    return;
  }
  in_flight_ = false;
  if (RecvOp::has_buffer(flags)) worker_->buffers().taken();
  handler_(owner_, res, flags);
}

void SendOp::submit(Worker& w, int fd) {
  worker_ = &w;
  fd_ = fd;
  first_ = 0;
  in_flight_ = true;
  issue();
}

void SendOp::issue() {
  msg_ = msghdr{};
  msg_.msg_iov = iov_ + first_;
  msg_.msg_iovlen = static_cast<std::size_t>(iovcnt_ - first_);
  io_uring_sqe* sqe = worker_->ring().sqe(this);
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
}

void SendOp::complete(int res, std::uint32_t) {
  if (res < 0) {
    in_flight_ = false;
    handler_(owner_, res, 0);
    return;
  }
  auto left = static_cast<std::size_t>(res);
  while (first_ < iovcnt_ && left >= iov_[first_].iov_len) {
    left -= iov_[first_].iov_len;
    ++first_;
  }
  if (first_ < iovcnt_) {
    // Partial send (socket buffer full): continue where the kernel stopped.
    iov_[first_].iov_base = static_cast<char*>(iov_[first_].iov_base) + left;
    iov_[first_].iov_len -= left;
    issue();
    return;
  }
  in_flight_ = false;
  handler_(owner_, static_cast<int>(total_), 0);
}

}  // namespace switchyard::proxy
