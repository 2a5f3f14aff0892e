// lblc: locality-based least connection (IPVS semantics, after KTCPVS). Requests with the same key
// (by default the URL, so a cache server keeps serving the objects it already holds) go to the
// server that took the key last time, unless that server may not take this request, or it has
// more in flight than its weight while another server is below half of its own; then the key
// moves to the wlc choice. The key -> server memory is per worker and bounded (LocalityTable).
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {
namespace {

class LocalityLeastConnection final : public Scheduler {
 public:
  void rebuild(std::span<const ServerView> servers) override {
    std::vector<int> map = remap_by_id(ids_, servers);
    table_.update_all([&](std::int16_t& s) {
      int to = static_cast<std::size_t>(s) < map.size() ? map[static_cast<std::size_t>(s)] : -1;
      s = static_cast<std::int16_t>(to);
      return to >= 0;
    });
    if (next_ >= servers.size()) next_ = 0;
  }

  int pick(std::span<const ServerView> servers, const PickInput& in) override {
    const std::uint64_t key = key_of(in);
    const std::uint32_t now = now_ms(in);
    std::int16_t* known = table_.find(key, now);
    if (known) {
      auto s = static_cast<std::size_t>(*known);
      if (s < servers.size() && eligible(servers, s, in) && !overloaded(servers, s, in)) {
        return static_cast<int>(s);
      }
    }
    int chosen = least(servers, in, next_, LessLoadPerWeight{});
    if (chosen < 0) return -1;  // keep the old hint: its server may come back
    next_ = static_cast<std::size_t>(chosen) + 1;
    (known ? *known : table_.insert(key, now)) = static_cast<std::int16_t>(chosen);
    return chosen;
  }

 private:
  LocalityTable<std::int16_t> table_;  // key -> server index
  std::vector<std::uint64_t> ids_;     // as of the last rebuild, to remap the table
  std::size_t next_ = 0;               // wlc tie rotation
};

}  // namespace

std::unique_ptr<Scheduler> make_lblc(const SchedulerOptions&) {
  return std::make_unique<LocalityLeastConnection>();
}

}  // namespace switchyard::upstream::sched
