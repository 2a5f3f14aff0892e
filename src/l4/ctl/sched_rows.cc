#include "l4/ctl/sched_rows.h"

#include <algorithm>
#include <numeric>

#include "l4/abi/l4_abi.h"

namespace switchyard::l4 {
namespace {

// FNV-1a, 64 bit: stable across builds and platforms (std::hash is not), which keeps Maglev
// tables identical across director restarts and between directors.
std::uint64_t fnv1a(std::string_view s, std::uint64_t basis) {
  std::uint64_t h = basis;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint32_t weights_gcd(const std::vector<RowServer>& servers) {
  std::uint32_t g = 0;
  for (const RowServer& s : servers) g = std::gcd(g, s.weight);
  return g == 0 ? 1 : g;
}

}  // namespace

std::optional<Scheduler> scheduler_from_name(std::string_view name) {
  if (name == "rr") return Scheduler::kRr;
  if (name == "wrr") return Scheduler::kWrr;
  if (name == "lc") return Scheduler::kLc;
  if (name == "wlc") return Scheduler::kWlc;
  if (name == "sh") return Scheduler::kSh;
  if (name == "dh") return Scheduler::kDh;
  if (name == "mh") return Scheduler::kMh;
  return std::nullopt;
}

std::uint8_t pick_for(Scheduler s, bool hash_port) {
  switch (s) {
    case Scheduler::kSh:
    case Scheduler::kMh:
      return hash_port ? L4_PICK_HASH_SRC_PORT : L4_PICK_HASH_SRC;
    case Scheduler::kDh:
      return L4_PICK_HASH_DST;
    default:
      return L4_PICK_CURSOR;
  }
}

std::vector<std::uint32_t> wrr_row(const std::vector<RowServer>& input, std::size_t max_size) {
  std::vector<RowServer> servers = input;
  if (servers.empty() || max_size == 0) return {};
  auto cycle = [&] {
    std::uint64_t sum = 0;
    for (const RowServer& s : servers) sum += s.weight;
    return sum / weights_gcd(servers);
  };
  if (cycle() > max_size) {
    // Too long a cycle for one row: scale weights down, keeping every server at least once.
    const std::uint64_t len = cycle();
    for (RowServer& s : servers) {
      s.weight = static_cast<std::uint32_t>(std::max<std::uint64_t>(
          1, s.weight / weights_gcd(input) * (max_size - servers.size()) / len));
    }
  }
  const std::uint32_t g = weights_gcd(servers);
  std::uint32_t max_weight = 0;
  for (const RowServer& s : servers) max_weight = std::max(max_weight, s.weight);
  const std::size_t length = static_cast<std::size_t>(cycle());
  std::vector<std::uint32_t> row;
  row.reserve(length);
  // ip_vs_wrr_schedule: lower the current weight by gcd each pass; a server is picked while its
  // weight is at least the current weight. Interleaves instead of sending bursts to one server.
  std::int64_t cw = 0;
  std::size_t i = servers.size() - 1;
  const std::size_t bound = length * servers.size() * (max_weight / g + 1) + servers.size();
  for (std::size_t steps = 0; row.size() < length && steps < bound; ++steps) {
    i = (i + 1) % servers.size();
    if (i == 0) {
      cw -= g;
      if (cw <= 0) cw = max_weight;
    }
    if (servers[i].weight >= cw) row.push_back(servers[i].real_id);
  }
  return row;
}

std::vector<std::uint32_t> maglev_row(const std::vector<RowServer>& input, std::size_t size) {
  if (input.empty() || size < 2) return {};
  // Filled in key order, so the table depends on the set of servers, not on the order they are
  // listed in (or on the ids they got): directors with the same servers agree.
  std::vector<RowServer> servers = input;
  std::sort(servers.begin(), servers.end(),
            [](const RowServer& a, const RowServer& b) { return a.key < b.key; });
  const std::size_t n = servers.size();
  std::vector<std::uint64_t> offset(n), skip(n), next(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    offset[i] = fnv1a(servers[i].key, 0xcbf29ce484222325ull) % size;
    skip[i] = fnv1a(servers[i].key, 0x84222325cbf29ce4ull) % (size - 1) + 1;
  }
  const std::uint32_t g = weights_gcd(servers);
  constexpr std::uint32_t kNone = 0xffffffffu;
  std::vector<std::uint32_t> row(size, kNone);
  std::size_t filled = 0;
  while (filled < size) {
    for (std::size_t i = 0; i < n && filled < size; ++i) {
      // A server of weight w takes w/gcd entries per round.
      for (std::uint32_t turn = 0; turn < servers[i].weight / g && filled < size; ++turn) {
        std::uint64_t c = (offset[i] + next[i] * skip[i]) % size;
        // skip and size are coprime (size is prime), so the permutation visits every entry
        // within `size` steps and a free one is always found.
        while (row[c] != kNone) {
          ++next[i];
          c = (offset[i] + next[i] * skip[i]) % size;
        }
        row[c] = servers[i].real_id;
        ++next[i];
        ++filled;
      }
    }
  }
  return row;
}

std::vector<std::uint32_t> bucket_row(const std::vector<RowServer>& servers, std::size_t buckets) {
  if (servers.empty()) return {};
  std::vector<std::uint32_t> row;
  row.reserve(buckets);
  std::size_t server = 0;
  std::uint32_t used = 0;
  while (row.size() < buckets) {
    row.push_back(servers[server].real_id);
    if (++used >= servers[server].weight) {
      used = 0;
      server = (server + 1) % servers.size();
    }
  }
  return row;
}

std::vector<std::uint32_t> build_row(Scheduler s, const std::vector<RowServer>& servers,
                                     const std::vector<std::uint64_t>* active) {
  if (servers.empty()) return {};
  switch (s) {
    case Scheduler::kRr: {
      std::vector<std::uint32_t> row;
      for (const RowServer& server : servers) row.push_back(server.real_id);
      return row;
    }
    case Scheduler::kWrr:
      return wrr_row(servers, L4_RING_SIZE);
    case Scheduler::kLc:
    case Scheduler::kWlc: {
      std::vector<RowServer> shares = servers;
      if (s == Scheduler::kLc) {
        for (RowServer& r : shares) r.weight = 1;
      }
      if (active != nullptr && active->size() == servers.size()) {
        // The data path cannot compare live counts per packet, so the control plane gives each
        // server a share of the next flows in proportion to how far it is below its weighted
        // target, counting a batch of flows still to come. A server at or above its target gets
        // no share while some other server is below it.
        std::uint64_t total = 0, weights = 0;
        for (std::size_t i = 0; i < shares.size(); ++i) {
          total += (*active)[i];
          weights += shares[i].weight;
        }
        const std::uint64_t batch = 16 * shares.size();
        std::vector<double> deficit(shares.size());
        double max_deficit = 0;
        for (std::size_t i = 0; i < shares.size(); ++i) {
          const double target =
              static_cast<double>(total + batch) * shares[i].weight / static_cast<double>(weights);
          deficit[i] = std::max(0.0, target - static_cast<double>((*active)[i]));
          max_deficit = std::max(max_deficit, deficit[i]);
        }
        std::vector<RowServer> below;
        for (std::size_t i = 0; i < shares.size(); ++i) {
          if (deficit[i] <= 0) continue;
          RowServer r = shares[i];
          r.weight = static_cast<std::uint32_t>(std::max(1.0, deficit[i] * 64.0 / max_deficit));
          below.push_back(r);
        }
        if (!below.empty()) return wrr_row(below, L4_RING_SIZE);
      }
      return wrr_row(shares, L4_RING_SIZE);
    }
    case Scheduler::kSh:
    case Scheduler::kDh:
      return bucket_row(servers, kShBuckets);
    case Scheduler::kMh:
      return maglev_row(servers, L4_RING_SIZE);
  }
  return {};
}

}  // namespace switchyard::l4
