// RAII owners for the kernel objects the L4 control plane holds: file descriptors (maps, links,
// programs) and libbpf skeletons. Each closes/destroys exactly once; all are move-only.
//
// Threads: none of these synchronise; an owner is used by one thread at a time (the control
// plane thread for the director, the command's thread for `switchyard realserver`).
#pragma once

#include <bpf/libbpf.h>
#include <unistd.h>

#include <memory>
#include <utility>

#include "core/unique_fd.h"

namespace switchyard::l4 {

// A file descriptor. For a BPF link (XDP attachment), closing the last descriptor detaches the
// program, which is how the director detaches "cleanly on exit" even when it crashes.
using UniqueFd = core::UniqueFd;

// A libbpf skeleton (`bpftool gen skeleton` output): `Skel::destroy` unloads the programs, closes
// the maps (pinned maps stay in bpffs) and frees the object.
template <class Skel>
struct SkeletonDeleter {
  void operator()(Skel* s) const { Skel::destroy(s); }
};
template <class Skel>
using SkeletonPtr = std::unique_ptr<Skel, SkeletonDeleter<Skel>>;

// Our tc filter on an interface's clsact ingress hook. Unlike a BPF link it is not tied to a file
// descriptor: it stays attached until detached, so this owner detaches it on destruction (a
// crashed process leaves it behind; the next attach with the same handle/priority replaces it).
class TcFilter {
 public:
  TcFilter() = default;
  TcFilter(int ifindex, __u32 handle, __u32 priority)
      : ifindex_(ifindex), handle_(handle), priority_(priority) {}
  ~TcFilter() { reset(); }
  TcFilter(TcFilter&& o) noexcept
      : ifindex_(std::exchange(o.ifindex_, 0)), handle_(o.handle_), priority_(o.priority_) {}
  TcFilter& operator=(TcFilter&& o) noexcept {
    if (this != &o) {
      reset();
      ifindex_ = std::exchange(o.ifindex_, 0);
      handle_ = o.handle_;
      priority_ = o.priority_;
    }
    return *this;
  }
  TcFilter(const TcFilter&) = delete;
  TcFilter& operator=(const TcFilter&) = delete;

  void reset() {
    if (ifindex_ == 0) return;
    bpf_tc_hook hook{};
    hook.sz = sizeof hook;
    hook.ifindex = ifindex_;
    hook.attach_point = BPF_TC_INGRESS;
    bpf_tc_opts opts{};
    opts.sz = sizeof opts;
    opts.handle = handle_;
    opts.priority = priority_;
    bpf_tc_detach(&hook, &opts);  // the interface may be gone already: nothing left to do then
    ifindex_ = 0;
  }

 private:
  int ifindex_ = 0;
  __u32 handle_ = 0;
  __u32 priority_ = 0;
};

}  // namespace switchyard::l4
