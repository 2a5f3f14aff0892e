// Timeouts without timer syscalls: one FIFO list per timeout duration.
//
// All deadlines in a list share one duration, so arming appends in expiry order and expiring pops
// from the front: O(1) arm, disarm and expire, no heap, no allocation. The worker calls expire()
// a few times a second, which bounds a timeout's precision to that tick. Worker-thread only.
#pragma once

#include <chrono>

namespace switchyard::proxy {

using Clock = std::chrono::steady_clock;

class DeadlineList;

// An intrusive hook, embedded in its owner. `fire` runs on the worker thread when it expires,
// after the hook has been unlinked (so the owner may re-arm it).
struct Deadline {
  using Fire = void (*)(void* owner, int tag);

  Deadline(void* owner, int tag, Fire fire) : owner(owner), tag(tag), fire(fire) {}
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() { disarm(); }

  bool armed() const { return list != nullptr; }
  void disarm();

  void* owner;
  int tag;
  Fire fire;
  Clock::time_point when{};
  Deadline* prev = nullptr;
  Deadline* next = nullptr;
  DeadlineList* list = nullptr;
};

class DeadlineList {
 public:
  explicit DeadlineList(std::chrono::milliseconds duration = {}) : duration_(duration) {}
  DeadlineList(const DeadlineList&) = delete;
  DeadlineList& operator=(const DeadlineList&) = delete;

  void set_duration(std::chrono::milliseconds d) { duration_ = d; }
  std::chrono::milliseconds duration() const { return duration_; }

  // (Re)arms `d` to fire `duration` from `now`; moves it here from any other list.
  void arm(Deadline& d, Clock::time_point now) {
    d.disarm();
    d.when = now + duration_;
    d.list = this;
    d.prev = tail_;
    d.next = nullptr;
    if (tail_)
      tail_->next = &d;
    else
      head_ = &d;
    tail_ = &d;
  }

  void unlink(Deadline& d) {
    if (d.prev)
      d.prev->next = d.next;
    else
      head_ = d.next;
    if (d.next)
      d.next->prev = d.prev;
    else
      tail_ = d.prev;
    d.prev = d.next = nullptr;
    d.list = nullptr;
  }

  // Fires every deadline due at `now`, oldest first.
  void expire(Clock::time_point now) {
    while (head_ && head_->when <= now) {
      Deadline* d = head_;
      unlink(*d);
      d->fire(d->owner, d->tag);
    }
  }

 private:
  std::chrono::milliseconds duration_;
  Deadline* head_ = nullptr;
  Deadline* tail_ = nullptr;
};

inline void Deadline::disarm() {
  if (list) list->unlink(*this);
}

}  // namespace switchyard::proxy
