// The control plane's scheduling rows (src/l4/ctl/sched_rows.h): Maglev distribution and
// disruption, IPVS wrr order, sh buckets, lc/wlc shares. Pure code: no BPF needed.
#include "l4/ctl/sched_rows.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "l4/abi/l4_abi.h"

namespace {

using namespace switchyard::l4;

std::vector<RowServer> servers(std::initializer_list<std::uint32_t> weights) {
  std::vector<RowServer> out;
  std::uint32_t id = 0;
  for (std::uint32_t w : weights) {
    out.push_back({id, w, "10.0.0." + std::to_string(10 + id) + ":80"});
    ++id;
  }
  return out;
}

std::map<std::uint32_t, std::size_t> histogram(const std::vector<std::uint32_t>& row) {
  std::map<std::uint32_t, std::size_t> h;
  for (std::uint32_t id : row) ++h[id];
  return h;
}

}  // namespace

TEST_CASE("Maglev fills every entry and balances equal weights within one entry",
          "[sched][maglev]") {
  for (std::size_t n : {1u, 2u, 3u, 7u, 64u}) {
    std::vector<RowServer> s;
    for (std::uint32_t i = 0; i < n; ++i) s.push_back({i, 1, "server-" + std::to_string(i)});
    const auto row = maglev_row(s, L4_RING_SIZE);
    REQUIRE(row.size() == L4_RING_SIZE);
    const auto h = histogram(row);
    REQUIRE(h.size() == n);
    std::size_t lo = L4_RING_SIZE, hi = 0;
    for (const auto& [id, count] : h) {
      lo = std::min(lo, count);
      hi = std::max(hi, count);
    }
    INFO(n << " servers: " << lo << ".." << hi);
    CHECK(hi - lo <= 1);
  }
}

TEST_CASE("Maglev shares follow weights", "[sched][maglev]") {
  const auto row = maglev_row(servers({1, 2, 3}), L4_RING_SIZE);
  const auto h = histogram(row);
  const double unit = L4_RING_SIZE / 6.0;
  CHECK(h.at(0) == Approx(unit).epsilon(0.01));
  CHECK(h.at(1) == Approx(2 * unit).epsilon(0.01));
  CHECK(h.at(2) == Approx(3 * unit).epsilon(0.01));
}

TEST_CASE("Maglev: removing a server moves little more than its own share", "[sched][maglev]") {
  std::vector<RowServer> five;
  for (std::uint32_t i = 0; i < 5; ++i) five.push_back({i, 1, "10.1.0." + std::to_string(i)});
  const auto before = maglev_row(five, L4_RING_SIZE);
  auto four = five;
  four.erase(four.begin() + 2);
  const auto after = maglev_row(four, L4_RING_SIZE);
  std::size_t moved = 0, of_others = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (before[i] == 2) continue;  // the removed server's entries must move
    ++of_others;
    if (after[i] != before[i]) ++moved;
  }
  INFO(moved << " of " << of_others << " entries of the remaining servers moved");
  CHECK(moved < of_others / 20);  // under 5%
}

TEST_CASE("Maglev tables do not depend on server order", "[sched][maglev]") {
  auto a = servers({1, 1, 1});
  auto b = std::vector<RowServer>{a[2], a[0], a[1]};
  CHECK(maglev_row(a, L4_RING_SIZE) == maglev_row(b, L4_RING_SIZE));
}

TEST_CASE("wrr is IPVS's interleaved sequence", "[sched][wrr]") {
  CHECK(wrr_row(servers({3, 1}), L4_RING_SIZE) == std::vector<std::uint32_t>{0, 0, 0, 1});
  CHECK(wrr_row(servers({4, 3, 2}), L4_RING_SIZE) ==
        std::vector<std::uint32_t>{0, 0, 1, 0, 1, 2, 0, 1, 2});
  CHECK(wrr_row(servers({2, 2}), L4_RING_SIZE) == std::vector<std::uint32_t>{0, 1});
  // Long cycles are scaled into one row, every server kept.
  const auto row = wrr_row(servers({256, 255, 1}), 100);
  CHECK(row.size() <= 100);
  CHECK(histogram(row).size() == 3);
}

TEST_CASE("sh/dh buckets take weight consecutive entries per server", "[sched][sh]") {
  const auto row = bucket_row(servers({2, 1}), kShBuckets);
  REQUIRE(row.size() == kShBuckets);
  CHECK(std::vector<std::uint32_t>(row.begin(), row.begin() + 6) ==
        std::vector<std::uint32_t>{0, 0, 1, 0, 0, 1});
}

TEST_CASE("lc/wlc give new flows to the servers below their share", "[sched][lc]") {
  const auto s = servers({1, 1, 1});
  const std::vector<std::uint64_t> active = {100, 0, 100};
  const auto h = histogram(build_row(Scheduler::kLc, s, &active));
  CHECK(h.count(1) == 1);
  CHECK(h.count(0) == 0);
  CHECK(h.count(2) == 0);
  // wlc: weight 3 vs 1 with equal counts: the heavier server is further below its share.
  const auto w = servers({3, 1});
  const std::vector<std::uint64_t> equal = {10, 10};
  const auto hw = histogram(build_row(Scheduler::kWlc, w, &equal));
  CHECK(hw.at(0) > 8 * hw.at(1));
  // Without counts: plain (weighted) round robin.
  CHECK(build_row(Scheduler::kWlc, w, nullptr) == std::vector<std::uint32_t>{0, 0, 0, 1});
}

TEST_CASE("scheduler names map to data-path pick methods", "[sched]") {
  CHECK(pick_for(*scheduler_from_name("rr"), false) == L4_PICK_CURSOR);
  CHECK(pick_for(*scheduler_from_name("wlc"), false) == L4_PICK_CURSOR);
  CHECK(pick_for(*scheduler_from_name("mh"), false) == L4_PICK_HASH_SRC);
  CHECK(pick_for(*scheduler_from_name("sh"), true) == L4_PICK_HASH_SRC_PORT);
  CHECK(pick_for(*scheduler_from_name("dh"), false) == L4_PICK_HASH_DST);
  CHECK_FALSE(scheduler_from_name("lblc").has_value());
}
