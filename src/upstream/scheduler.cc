#include "upstream/scheduler.h"

#include <vector>

#include "upstream/sched/schedulers.h"

namespace switchyard::upstream {
namespace {

using Factory = std::unique_ptr<Scheduler> (*)(const SchedulerOptions&);
using On = config::HashKey::On;

struct Entry {
  SchedulerInfo info;
  Factory make;
};

// The registration table: one line per scheduler.
const Entry kSchedulers[] = {
    {{"rr", "round robin; weights ignored except 0 (quiesce)", On::kDefault}, sched::make_rr},
    {{"wrr", "weighted round robin, smoothly interleaved", On::kDefault}, sched::make_wrr},
    {{"lc", "least connection: fewest requests in flight", On::kDefault}, sched::make_lc},
    {{"wlc", "weighted least connection: least in-flight/weight", On::kDefault}, sched::make_wlc},
    {{"sed", "shortest expected delay: least (in-flight+1)/weight", On::kDefault}, sched::make_sed},
    {{"nq", "never queue: an idle server if any, else sed", On::kDefault}, sched::make_nq},
    {{"lblc", "locality: a key keeps its server unless overloaded", On::kUrl}, sched::make_lblc},
    {{"lblcr", "locality, replicated: a key maps to a server set", On::kUrl}, sched::make_lblcr},
    {{"dh", "destination hashing: key -> 256 weighted buckets", On::kUrl}, sched::make_dh},
    {{"sh", "source hashing: key -> 256 weighted buckets", On::kSource}, sched::make_sh},
    {{"mh", "Maglev consistent hashing: ~1/N keys move on change", On::kSource}, sched::make_mh},
    {{"p2c", "power of two choices: less loaded of two random", On::kDefault}, sched::make_p2c},
};

const std::vector<SchedulerInfo>& infos() {
  static const std::vector<SchedulerInfo> list = [] {
    std::vector<SchedulerInfo> v;
    for (const Entry& e : kSchedulers) v.push_back(e.info);
    return v;
  }();
  return list;
}

}  // namespace

std::span<const SchedulerInfo> schedulers() {
  return infos();
}

const SchedulerInfo* find_scheduler(std::string_view name) {
  for (const SchedulerInfo& i : infos()) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const SchedulerOptions& options) {
  for (const Entry& e : kSchedulers) {
    if (e.info.name == name) return e.make(options);
  }
  return nullptr;
}

}  // namespace switchyard::upstream
