// Helpers shared by the locality schedulers, lblc and lblcr.
#include "upstream/sched/schedulers.h"

namespace switchyard::upstream::sched {

bool overloaded(std::span<const ServerView> servers, std::size_t s, const PickInput& in) {
  if (servers[s].load() <= servers[s].weight) return false;
  for (std::size_t i = 0; i < servers.size(); ++i) {
    if (eligible(servers, i, in) && std::uint64_t{servers[i].load()} * 2 < servers[i].weight) {
      return true;
    }
  }
  return false;
}

std::vector<int> remap_by_id(std::vector<std::uint64_t>& ids, std::span<const ServerView> servers) {
  std::vector<int> map(ids.size(), -1);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    // Same place first, so that a list with a repeated id keeps its order.
    if (i < servers.size() && servers[i].id == ids[i]) {
      map[i] = static_cast<int>(i);
      continue;
    }
    for (std::size_t j = 0; j < servers.size(); ++j) {
      if (servers[j].id == ids[i]) {
        map[i] = static_cast<int>(j);
        break;
      }
    }
  }
  ids.clear();
  for (const ServerView& s : servers) ids.push_back(s.id);
  return map;
}

}  // namespace switchyard::upstream::sched
