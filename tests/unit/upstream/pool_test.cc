#include "upstream/pool.h"

#include <catch2/catch.hpp>
#include <map>
#include <vector>

using namespace switchyard;

namespace {

config::Pool make_pool(std::initializer_list<std::uint32_t> weights,
                       const char* scheduler = "wrr") {
  config::Pool p;
  p.scheduler = scheduler;
  for (std::uint32_t w : weights) {
    config::Server s;
    s.weight = w;
    p.servers.push_back(s);
  }
  return p;
}

}  // namespace

TEST_CASE("equal weights rotate through every server", "[upstream]") {
  upstream::Balancer b(make_pool({1, 1, 1}));
  auto now = upstream::Clock::now();
  CHECK(b.pick(0, now) == 0);
  CHECK(b.pick(0, now) == 1);
  CHECK(b.pick(0, now) == 2);
  CHECK(b.pick(0, now) == 0);
}

TEST_CASE("weights set the share, interleaved smoothly", "[upstream]") {
  upstream::Balancer b(make_pool({3, 1}));
  auto now = upstream::Clock::now();
  std::map<int, int> counts;
  std::vector<int> order;
  for (int i = 0; i < 8; ++i) {
    int s = b.pick(0, now);
    counts[s]++;
    order.push_back(s);
  }
  CHECK(counts[0] == 6);
  CHECK(counts[1] == 2);
  CHECK(order == std::vector<int>{0, 0, 1, 0, 0, 0, 1, 0});
}

TEST_CASE("weight zero servers get no requests", "[upstream]") {
  upstream::Balancer b(make_pool({0, 1}));
  auto now = upstream::Clock::now();
  for (int i = 0; i < 4; ++i) CHECK(b.pick(0, now) == 1);
}

TEST_CASE("tried servers are skipped and exhaustion is reported", "[upstream]") {
  upstream::Balancer b(make_pool({1, 1}));
  auto now = upstream::Clock::now();
  int first = b.pick(0, now);
  int second = b.pick(std::uint64_t{1} << first, now);
  CHECK(second != first);
  CHECK(b.pick(0b11, now) == -1);
}

TEST_CASE("a failed server is held down, then used again", "[upstream]") {
  upstream::Balancer b(make_pool({1, 1}));
  auto now = upstream::Clock::now();
  b.mark_failed(0, now);
  for (int i = 0; i < 4; ++i) CHECK(b.pick(0, now) == 1);
  // All alternatives tried: a held-down server is still better than a 503.
  CHECK(b.pick(0b10, now) == 0);
  auto later = now + upstream::Balancer::kHoldDown + std::chrono::milliseconds(1);
  std::map<int, int> counts;
  for (int i = 0; i < 4; ++i) counts[b.pick(0, later)]++;
  CHECK(counts[0] == 2);
}

TEST_CASE("rr ignores weights but still quiesces weight zero", "[upstream]") {
  upstream::Balancer b(make_pool({5, 1, 0}, "rr"));
  auto now = upstream::Clock::now();
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) order.push_back(b.pick(0, now));
  CHECK(order == std::vector<int>{0, 1, 0, 1});
}
