// Scheduler pick cost: one Scheduler::pick per iteration over a pool of N servers with loads
// that change between picks, as they would under traffic.
//
//   taskset -c 1 build/sched_bench --benchmark_min_time=0.2
//
// BM_Pick gives every pick a new key (for lblc/lblcr: a table miss and an insert each time, their
// worst case); BM_PickHotKeys draws keys from 1024, so the locality table hits; BM_PickOneDown
// marks server 0 unavailable so a hash scheduler's fallback runs for that server's keys;
// BM_Rebuild is the cost of a server list or weight change.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "rules/hash.h"
#include "upstream/scheduler.h"

namespace {

using switchyard::upstream::PickInput;
using switchyard::upstream::ServerView;

std::vector<ServerView> make_servers(int n) {
  std::vector<ServerView> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    v[static_cast<std::size_t>(i)].id =
        switchyard::rules::stable_hash("10.0.0." + std::to_string(i) + ":80");
    v[static_cast<std::size_t>(i)].weight = 1 + static_cast<std::uint32_t>(i % 3);
  }
  return v;
}

void run(benchmark::State& state, const char* name, std::uint64_t key_mask, bool one_down) {
  int n = static_cast<int>(state.range(0));
  std::vector<ServerView> servers = make_servers(n);
  auto s = switchyard::upstream::make_scheduler(name, {});
  s->rebuild(servers);
  if (one_down) servers[0].available = false;
  PickInput in;
  in.has_key = true;
  std::uint64_t i = 0;
  for (auto _ : state) {
    in.key = switchyard::rules::mix64(++i & key_mask);
    in.now += std::chrono::microseconds(1);
    int picked = s->pick(servers, in);
    benchmark::DoNotOptimize(picked);
    if (picked >= 0)
      servers[static_cast<std::size_t>(picked)].active =
          (servers[static_cast<std::size_t>(picked)].active + 1) & 15;
  }
}

void BM_Pick(benchmark::State& state, const char* name) {
  run(state, name, ~std::uint64_t{0}, false);
}

void BM_PickHotKeys(benchmark::State& state, const char* name) {
  run(state, name, 1023, false);
}

void BM_PickOneDown(benchmark::State& state, const char* name) {
  run(state, name, ~std::uint64_t{0}, true);
}

void BM_Rebuild(benchmark::State& state, const char* name) {
  std::vector<ServerView> servers = make_servers(static_cast<int>(state.range(0)));
  auto s = switchyard::upstream::make_scheduler(name, {});
  for (auto _ : state) s->rebuild(servers);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Pick, rr, "rr")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, wrr, "wrr")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, lc, "lc")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, wlc, "wlc")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, sed, "sed")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, nq, "nq")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, lblc, "lblc")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, lblcr, "lblcr")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, dh, "dh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, sh, "sh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, mh, "mh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Pick, p2c, "p2c")->Arg(4)->Arg(64);

BENCHMARK_CAPTURE(BM_PickHotKeys, lblc, "lblc")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_PickHotKeys, lblcr, "lblcr")->Arg(4)->Arg(64);

BENCHMARK_CAPTURE(BM_PickOneDown, dh, "dh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_PickOneDown, sh, "sh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_PickOneDown, mh, "mh")->Arg(4)->Arg(64);

BENCHMARK_CAPTURE(BM_Rebuild, dh, "dh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Rebuild, mh, "mh")->Arg(4)->Arg(64);
BENCHMARK_CAPTURE(BM_Rebuild, lblc, "lblc")->Arg(4)->Arg(64);
