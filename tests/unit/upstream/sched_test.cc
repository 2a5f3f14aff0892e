// Schedulers (src/upstream/sched/): what each discipline promises, driven through the public
// factory exactly as a Balancer drives it. Keys are rules::mix64 of counters, so every run sees the
// same keys; only p2c draws random numbers, and its checks leave wide margins.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "rules/hash.h"
#include "upstream/scheduler.h"

using namespace switchyard;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using upstream::Clock;
using upstream::PickInput;
using upstream::Scheduler;
using upstream::ServerView;

namespace {

const char* const kAll[] = {"rr",   "wrr",   "lc", "wlc", "sed", "nq",
                            "lblc", "lblcr", "dh", "sh",  "mh",  "p2c"};
const char* const kHashed[] = {"dh", "sh", "mh"};

std::uint64_t key(std::uint64_t i) {
  return rules::mix64(i);
}

ServerView server(std::size_t i, std::uint32_t weight = 1) {
  ServerView s;
  s.id = rules::stable_hash("10.0.0." + std::to_string(i) + ":80");
  s.weight = weight;
  return s;
}

std::vector<ServerView> servers(std::vector<std::uint32_t> weights) {
  std::vector<ServerView> v;
  for (std::size_t i = 0; i < weights.size(); ++i) v.push_back(server(i, weights[i]));
  return v;
}

std::vector<ServerView> equal(std::size_t n) {
  return servers(std::vector<std::uint32_t>(n, 1));
}

std::unique_ptr<Scheduler> make(const char* name, const std::vector<ServerView>& v,
                                bool fallback = true) {
  auto s = upstream::make_scheduler(name, upstream::SchedulerOptions{fallback});
  REQUIRE(s);
  s->rebuild(v);
  return s;
}

PickInput with_key(std::uint64_t k, Clock::time_point now = {}) {
  PickInput in;
  in.key = k;
  in.has_key = true;
  in.now = now;
  return in;
}

bool eligible(const std::vector<ServerView>& v, int i, const PickInput& in) {
  auto u = static_cast<std::size_t>(i);
  return v[u].available && v[u].weight > 0 && !(u < 64 && (in.excluded >> u & 1));
}

// `picks` picks with distinct keys; each pick adds one request in flight to its server (long
// requests: nothing completes), as the least-connection family would see a ramp-up.
std::map<int, int> ramp(Scheduler& s, std::vector<ServerView>& v, int picks,
                        std::uint64_t first_key = 0) {
  std::map<int, int> counts;
  for (int i = 0; i < picks; ++i) {
    int p = s.pick(v, with_key(key(first_key + static_cast<std::uint64_t>(i))));
    ++counts[p];
    if (p >= 0) ++v[static_cast<std::size_t>(p)].active;
  }
  return counts;
}

// The server each of `n` keys goes to.
std::vector<int> assignment(Scheduler& s, const std::vector<ServerView>& v, std::uint64_t n) {
  std::vector<int> out;
  for (std::uint64_t k = 0; k < n; ++k) out.push_back(s.pick(v, with_key(key(k))));
  return out;
}

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);

}  // namespace

// ---------------------------------------------------------------------------------------------
// Every scheduler

TEST_CASE("every LVS scheduler is registered, in order, with its default key", "[sched]") {
  using On = config::HashKey::On;
  const std::map<std::string, On> keys = {
      {"rr", On::kDefault},  {"wrr", On::kDefault}, {"lc", On::kDefault}, {"wlc", On::kDefault},
      {"sed", On::kDefault}, {"nq", On::kDefault},  {"lblc", On::kUrl},   {"lblcr", On::kUrl},
      {"dh", On::kUrl},      {"sh", On::kSource},   {"mh", On::kSource},  {"p2c", On::kDefault}};
  auto list = upstream::schedulers();
  REQUIRE(list.size() == std::size(kAll));
  for (std::size_t i = 0; i < list.size(); ++i) {
    CAPTURE(list[i].name);
    CHECK(list[i].name == kAll[i]);
    CHECK(list[i].default_key == keys.at(std::string(list[i].name)));
    CHECK_FALSE(list[i].summary.empty());
    CHECK(upstream::find_scheduler(list[i].name) == &list[i]);
  }
  CHECK(upstream::find_scheduler("wrong") == nullptr);
  CHECK(upstream::make_scheduler("wrong", {}) == nullptr);
}

TEST_CASE("every scheduler handles no server, one server and no eligible server", "[sched]") {
  for (const char* name : kAll) {
    CAPTURE(name);
    std::vector<ServerView> none;
    CHECK(make(name, none)->pick(none, with_key(1, kT0)) == -1);

    std::vector<ServerView> one = equal(1);
    auto s = make(name, one);
    for (std::uint64_t k = 0; k < 20; ++k) CHECK(s->pick(one, with_key(key(k), kT0)) == 0);
    one[0].available = false;
    CHECK(s->pick(one, with_key(key(1), kT0)) == -1);
    one[0].available = true;
    PickInput tried = with_key(key(1), kT0);
    tried.excluded = 1;
    CHECK(s->pick(one, tried) == -1);
    one[0].weight = 0;
    s->rebuild(one);
    CHECK(s->pick(one, with_key(key(1), kT0)) == -1);
    one[0].weight = 1;
    s->rebuild(one);
    CHECK(s->pick(one, with_key(key(1), kT0)) == 0);
  }
}

// The contract of Scheduler::pick under random pools, weights, availability, exclusions, loads
// and times: never an ineligible server, and (with fallback) -1 only when nothing is eligible.
TEST_CASE("every scheduler returns an eligible server whenever there is one", "[sched]") {
  for (const char* name : kAll) {
    for (bool fallback : {true, false}) {
      CAPTURE(name, fallback);
      bool hashed = std::find_if(std::begin(kHashed), std::end(kHashed), [&](const char* h) {
                      return std::string_view(h) == name;
                    }) != std::end(kHashed);
      auto s = upstream::make_scheduler(name, upstream::SchedulerOptions{fallback});
      std::uint64_t r = 12345;
      auto rnd = [&](std::uint64_t n) { return rules::mix64(++r) % n; };
      Clock::time_point now = kT0;
      for (int round = 0; round < 300; ++round) {
        std::size_t n = round % 10 == 0 ? 64 : 1 + rnd(8);
        std::vector<ServerView> v;
        for (std::size_t i = 0; i < n; ++i) v.push_back(server(rnd(12), rnd(5)));
        s->rebuild(v);
        for (int p = 0; p < 30; ++p) {
          for (ServerView& sv : v) {
            sv.available = rnd(4) != 0;
            sv.active = static_cast<std::uint32_t>(rnd(20));
            sv.others = static_cast<std::uint32_t>(rnd(3));
          }
          PickInput in = with_key(key(rnd(50)), now);
          in.has_key = rnd(8) != 0;
          in.excluded = 0;
          if (rnd(3) == 0) {
            in.excluded = rules::mix64(++r);
            in.excluded &= rules::mix64(++r);
          }
          now += milliseconds(rnd(20000));
          int picked = s->pick(v, in);
          bool any = false;
          for (std::size_t i = 0; i < n; ++i) any = any || eligible(v, static_cast<int>(i), in);
          if (picked >= 0) {
            REQUIRE(picked < static_cast<int>(n));
            REQUIRE(eligible(v, picked, in));
          } else if (fallback || !hashed) {
            REQUIRE_FALSE(any);
          }
        }
      }
    }
  }
}

TEST_CASE("every scheduler skips unavailable and excluded servers and quiesces weight 0",
          "[sched]") {
  for (const char* name : kAll) {
    CAPTURE(name);
    std::vector<ServerView> v = servers({2, 2, 2});
    auto s = make(name, v);

    v[1].available = false;
    std::map<int, int> down = ramp(*s, v, 300);
    CHECK(down[1] == 0);
    CHECK(down[0] > 0);
    CHECK(down[2] > 0);
    v[1].available = true;

    for (ServerView& sv : v) sv.active = 0;
    std::map<int, int> skipped;
    for (std::uint64_t k = 0; k < 300; ++k) {
      PickInput in = with_key(key(k + 1000));
      in.excluded = 1u << 2;
      int p = s->pick(v, in);
      ++skipped[p];
      if (p >= 0) ++v[static_cast<std::size_t>(p)].active;
    }
    CHECK(skipped[2] == 0);
    CHECK(skipped[0] > 0);
    CHECK(skipped[1] > 0);

    for (ServerView& sv : v) sv.active = 0;
    v[0].weight = 0;
    s->rebuild(v);
    std::map<int, int> quiesced = ramp(*s, v, 300, 2000);
    CHECK(quiesced[0] == 0);
    CHECK(quiesced[-1] == 0);

    // Weight back: the server takes new requests again.
    for (ServerView& sv : v) sv.active = 0;
    v[0].weight = 2;
    s->rebuild(v);
    CHECK(ramp(*s, v, 300, 3000)[0] > 0);
  }
}

TEST_CASE("every scheduler uses a server added by rebuild", "[sched]") {
  for (const char* name : kAll) {
    CAPTURE(name);
    std::vector<ServerView> v = equal(3);
    auto s = make(name, v);
    ramp(*s, v, 30);
    v.push_back(server(3));
    s->rebuild(v);
    std::map<int, int> after = ramp(*s, v, 400, 100);
    CHECK(after[3] > 0);
    CHECK(after[-1] == 0);
  }
}

// ---------------------------------------------------------------------------------------------
// rr, wrr

TEST_CASE("rr rotates and wrr interleaves 3:1, following weight changes", "[sched]") {
  std::vector<ServerView> v = servers({3, 1, 1});
  auto rr = make("rr", v);
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) order.push_back(rr->pick(v, {}));
  CHECK(order == std::vector<int>{0, 1, 2, 0, 1, 2});

  std::vector<ServerView> w = servers({3, 1});
  auto wrr = make("wrr", w);
  std::map<int, int> counts = ramp(*wrr, w, 400);
  CHECK(counts[0] == 300);
  CHECK(counts[1] == 100);
  w[1].weight = 3;
  wrr->rebuild(w);
  counts = ramp(*wrr, w, 400);
  CHECK(counts[0] == 200);
  CHECK(counts[1] == 200);
}

// ---------------------------------------------------------------------------------------------
// lc, wlc, sed, nq

TEST_CASE("lc picks the fewest in flight, whatever the weights, and rotates among equals",
          "[sched]") {
  std::vector<ServerView> v = servers({1, 1, 10});
  auto lc = make("lc", v);
  v[0].active = 5;
  v[1].active = 1;
  v[1].others = 1;  // other workers' load counts too
  v[2].active = 7;
  CHECK(lc->pick(v, {}) == 1);
  v[1].others = 5;
  CHECK(lc->pick(v, {}) == 0);

  for (ServerView& s : v) s.active = s.others = 0;
  std::set<int> seen;
  for (int i = 0; i < 3; ++i) seen.insert(lc->pick(v, {}));
  CHECK(seen.size() == 3);

  // A ramp of long requests ends evenly spread, weights notwithstanding.
  std::map<int, int> counts = ramp(*lc, v, 300);
  CHECK(counts[0] == 100);
  CHECK(counts[2] == 100);
}

TEST_CASE("wlc picks the least load per weight and fills servers in weight ratio", "[sched]") {
  std::vector<ServerView> v = servers({4, 1});
  auto wlc = make("wlc", v);
  v[0].active = 4;  // 4/4 = 1
  v[1].active = 3;  // 3/1 = 3
  CHECK(wlc->pick(v, {}) == 0);
  CHECK(make("lc", v)->pick(v, {}) == 1);
  v[0].active = 9;  // 9/4 > 2/1
  v[1].active = 2;
  CHECK(wlc->pick(v, {}) == 1);

  std::vector<ServerView> w = servers({3, 1});
  auto ramped = make("wlc", w);
  std::map<int, int> counts = ramp(*ramped, w, 400);
  CHECK(counts[0] == Approx(300).margin(2));
  CHECK(counts[1] == Approx(100).margin(2));

  w[1].weight = 3;  // weights change: the ratio follows
  ramped->rebuild(w);
  counts = ramp(*ramped, w, 400);
  CHECK(w[0].active == Approx(w[1].active).margin(2));
}

TEST_CASE("sed counts the request being placed: idle heavy servers first", "[sched]") {
  std::vector<ServerView> v = servers({3, 1});
  auto sed = make("sed", v);
  for (int i = 0; i < 5; ++i) CHECK(sed->pick(v, {}) == 0);  // (0+1)/3 < (0+1)/1
  v[0].active = 1;  // (1+1)/3 < (0+1)/1 still; wlc would take the idle one
  CHECK(sed->pick(v, {}) == 0);
  CHECK(make("wlc", v)->pick(v, {}) == 1);
  v[0].active = 3;  // 4/3 > 1/1
  CHECK(sed->pick(v, {}) == 1);

  std::vector<ServerView> w = servers({3, 1});
  std::map<int, int> counts = ramp(*make("sed", w), w, 400);
  CHECK(counts[0] == Approx(300).margin(3));
}

TEST_CASE("nq prefers any idle server, else behaves as sed", "[sched]") {
  std::vector<ServerView> v = servers({10, 1});
  auto nq = make("nq", v);
  v[0].active = 1;
  CHECK(nq->pick(v, {}) == 1);              // idle beats weight
  CHECK(make("sed", v)->pick(v, {}) == 0);  // (1+1)/10 < (0+1)/1
  v[1].others = 1;                          // busy in another worker: no longer idle
  CHECK(nq->pick(v, {}) == 0);              // sed: 2/10 < 2/1

  std::vector<ServerView> idle = equal(3);
  auto rot = make("nq", idle);
  std::set<int> seen;
  for (int i = 0; i < 3; ++i) seen.insert(rot->pick(idle, {}));
  CHECK(seen.size() == 3);  // idle servers take turns
}

// ---------------------------------------------------------------------------------------------
// p2c

TEST_CASE("p2c picks the less loaded of two distinct servers and spreads evenly", "[sched]") {
  std::vector<ServerView> two = equal(2);
  auto p2c = make("p2c", two);
  two[0].active = 10;
  for (int i = 0; i < 1000; ++i) REQUIRE(p2c->pick(two, {}) == 1);  // never the same one twice

  // Three servers, one idle: it is in 2 of the 3 possible pairs, and wins each.
  std::vector<ServerView> three = equal(3);
  three[1].active = three[2].active = 5;
  std::map<int, int> counts;
  for (int i = 0; i < 3000; ++i) ++counts[p2c->pick(three, {})];
  CHECK(counts[0] == Approx(2000).margin(150));

  // Load per weight, cross-multiplied: 6/3 < 3/1.
  std::vector<ServerView> weighted = servers({3, 1});
  weighted[0].active = 6;
  weighted[1].active = 3;
  CHECK(p2c->pick(weighted, {}) == 0);

  // A ramp stays balanced.
  std::vector<ServerView> four = equal(4);
  counts = ramp(*p2c, four, 4000);
  for (int i = 0; i < 4; ++i) CHECK(counts[i] == Approx(1000).margin(50));

  // Only one eligible: that one; pairs are drawn among the eligible only.
  four[0].available = four[2].available = false;
  std::map<int, int> rest;
  for (int i = 0; i < 400; ++i) ++rest[p2c->pick(four, {})];
  CHECK(rest[1] + rest[3] == 400);
  four[1].available = false;
  for (int i = 0; i < 20; ++i) CHECK(p2c->pick(four, {}) == 3);
}

// ---------------------------------------------------------------------------------------------
// lblc, lblcr

TEST_CASE("lblc keeps a key on its server until that server is overloaded or out", "[sched]") {
  std::vector<ServerView> v = servers({10, 10, 10, 10});
  auto lblc = make("lblc", v);
  const std::uint64_t k = key(7);
  int home = lblc->pick(v, with_key(k, kT0));
  REQUIRE(home >= 0);
  auto h = static_cast<std::size_t>(home);

  // Busier than the rest but within its weight: stays (wlc alone would move it).
  v[h].active = 10;
  for (int i = 0; i < 5; ++i) CHECK(lblc->pick(v, with_key(k, kT0)) == home);
  CHECK(make("wlc", v)->pick(v, with_key(k, kT0)) != home);

  // Over its weight, but nobody is below half of theirs: stays.
  for (ServerView& s : v) s.active = 6;
  v[h].active = 11;
  CHECK(lblc->pick(v, with_key(k, kT0)) == home);

  // Over its weight while another is below half: the key moves, and stays moved.
  v[(h + 2) % 4].active = 4;
  int moved = lblc->pick(v, with_key(k, kT0));
  CHECK(moved == static_cast<int>((h + 2) % 4));
  for (ServerView& s : v) s.active = 0;
  v[static_cast<std::size_t>(moved)].active = 3;
  CHECK(lblc->pick(v, with_key(k, kT0)) == moved);

  // Unavailable: moves; the new home keeps it after the old one returns.
  v[static_cast<std::size_t>(moved)].available = false;
  int third = lblc->pick(v, with_key(k, kT0));
  CHECK(third != moved);
  v[static_cast<std::size_t>(moved)].available = true;
  CHECK(lblc->pick(v, with_key(k, kT0)) == third);

  // Excluded (a retry): another server.
  PickInput retry = with_key(k, kT0);
  retry.excluded = std::uint64_t{1} << third;
  CHECK(lblc->pick(v, retry) != third);
}

TEST_CASE("lblc spreads new keys by wlc and forgets keys idle for six minutes", "[sched]") {
  std::vector<ServerView> v = equal(4);
  for (ServerView& s : v) s.weight = 100;
  auto lblc = make("lblc", v);
  std::map<int, int> counts = ramp(*lblc, v, 400);
  for (int i = 0; i < 4; ++i) CHECK(counts[i] == 100);

  for (ServerView& s : v) s.active = 0;
  const std::uint64_t k = key(99999);
  int home = lblc->pick(v, with_key(k, kT0));
  v[static_cast<std::size_t>(home)].active = 50;                // wlc now prefers any other
  CHECK(lblc->pick(v, with_key(k, kT0 + minutes(5))) == home);  // use refreshes the entry
  CHECK(lblc->pick(v, with_key(k, kT0 + minutes(10) + seconds(59))) == home);
  CHECK(lblc->pick(v, with_key(k, kT0 + minutes(17) + seconds(1))) != home);  // idle > 6 min
}

TEST_CASE("lblc follows its servers through a reordering rebuild", "[sched]") {
  std::vector<ServerView> v = equal(4);
  auto lblc = make("lblc", v);
  std::map<std::uint64_t, std::uint64_t> home;  // key -> server id
  for (std::uint64_t k = 0; k < 40; ++k) {
    int p = lblc->pick(v, with_key(key(k), kT0));
    home[k] = v[static_cast<std::size_t>(p)].id;
    ++v[static_cast<std::size_t>(p)].active;
  }
  std::vector<ServerView> reversed(v.rbegin(), v.rend());
  lblc->rebuild(reversed);
  for (std::uint64_t k = 0; k < 40; ++k) {
    int p = lblc->pick(reversed, with_key(key(k), kT0));
    CHECK(reversed[static_cast<std::size_t>(p)].id == home[k]);
  }
}

TEST_CASE("lblcr grows a key's server set under overload and shrinks it after 6 s", "[sched]") {
  std::vector<ServerView> v = servers({10, 10, 10, 10});
  auto lblcr = make("lblcr", v);
  const std::uint64_t k = key(3);
  auto a = static_cast<std::size_t>(lblcr->pick(v, with_key(k, kT0)));
  v[a].active = 8;  // busier, not overloaded: the set {a} keeps the key
  CHECK(lblcr->pick(v, with_key(k, kT0)) == static_cast<int>(a));

  // Overloaded with idle servers around: the wlc choice b joins the set.
  v[a].active = 11;
  std::size_t b = (a + 1) % 4;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i != a && i != b) v[i].active = 2;
  }
  CHECK(lblcr->pick(v, with_key(k, kT0)) == static_cast<int>(b));

  // Both are members now: the less loaded of the two takes the key; others are not used even
  // when idler, as long as the chosen member is not overloaded.
  v[a].active = 2;
  v[b].active = 3;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i != a && i != b) v[i].active = 0;
  }
  CHECK(lblcr->pick(v, with_key(k, kT0 + seconds(5))) == static_cast<int>(a));
  v[a].active = 4;
  CHECK(lblcr->pick(v, with_key(k, kT0 + seconds(5))) == static_cast<int>(b));

  // Unchanged for over 6 s: the most loaded member (a) leaves the set.
  CHECK(lblcr->pick(v, with_key(k, kT0 + seconds(7))) == static_cast<int>(b));
  v[a].active = 0;
  v[b].active = 9;
  CHECK(lblcr->pick(v, with_key(k, kT0 + seconds(8))) == static_cast<int>(b));

  // An unavailable member: the wlc choice joins, and the key comes back to neither.
  v[b].available = false;
  int c = lblcr->pick(v, with_key(k, kT0 + seconds(9)));
  CHECK(c >= 0);
  CHECK(c != static_cast<int>(b));

  // Idle for six minutes: the entry is gone, the key is placed afresh by wlc.
  v[b].available = true;
  for (ServerView& s : v) s.active = 5;
  v[(b + 2) % 4].active = 0;
  CHECK(lblcr->pick(v, with_key(k, kT0 + seconds(9) + minutes(6) + seconds(1))) ==
        static_cast<int>((b + 2) % 4));
}

TEST_CASE("lblcr spreads new keys by wlc and keeps each on its set", "[sched]") {
  std::vector<ServerView> v = equal(4);
  for (ServerView& s : v) s.weight = 100;
  auto lblcr = make("lblcr", v);
  std::map<int, int> counts = ramp(*lblcr, v, 400);
  for (int i = 0; i < 4; ++i) CHECK(counts[i] == 100);
  std::vector<int> first = assignment(*lblcr, v, 400);
  CHECK(assignment(*lblcr, v, 400) == first);  // locality: same key, same server
}

// ---------------------------------------------------------------------------------------------
// dh, sh: the static 256-bucket table

TEST_CASE("dh and sh: the same key always lands on the same server, shares follow weights",
          "[sched]") {
  for (const char* name : {"dh", "sh"}) {
    CAPTURE(name);
    std::vector<ServerView> v = servers({3, 1});
    auto s = make(name, v);
    std::vector<int> first = assignment(*s, v, 10000);
    CHECK(assignment(*s, v, 10000) == first);
    CHECK(assignment(*make(name, v), v, 10000) == first);  // another worker agrees
    long on0 = std::count(first.begin(), first.end(), 0);
    CHECK(on0 / 10000.0 == Approx(0.75).margin(0.02));  // 192 of 256 buckets

    // Weights change: the table is rebuilt with the new shares.
    v[1].weight = 3;
    s->rebuild(v);
    std::vector<int> even = assignment(*s, v, 10000);
    CHECK(std::count(even.begin(), even.end(), 0) / 10000.0 == Approx(0.5).margin(0.02));

    // Weights adding up to more than 256 buckets still give every server some.
    std::vector<ServerView> heavy = servers({1000, 1000, 1, 1000});
    std::vector<int> spread = assignment(*make(name, heavy), heavy, 20000);
    CHECK(std::count(spread.begin(), spread.end(), 2) > 0);
    CHECK(std::count(spread.begin(), spread.end(), 3) / 20000.0 == Approx(1.0 / 3).margin(0.03));
  }
}

TEST_CASE("dh and sh fall back only for the down server's keys, and only with fallback",
          "[sched]") {
  for (const char* name : {"dh", "sh"}) {
    for (bool fallback : {true, false}) {
      CAPTURE(name, fallback);
      std::vector<ServerView> v = equal(4);
      auto s = make(name, v, fallback);
      std::vector<int> before = assignment(*s, v, 4000);
      v[1].available = false;
      std::vector<int> during = assignment(*s, v, 4000);
      std::set<int> took_over;
      for (std::size_t k = 0; k < before.size(); ++k) {
        if (before[k] != 1) {
          REQUIRE(during[k] == before[k]);
        } else if (fallback) {
          REQUIRE(during[k] >= 0);
          REQUIRE(during[k] != 1);
          took_over.insert(during[k]);
        } else {
          REQUIRE(during[k] == -1);
        }
      }
      // The table interleaves servers (dh) or rehashes (sh): no single neighbour takes it all.
      if (fallback) CHECK(took_over.size() >= 2);
      if (fallback && std::string_view(name) == "sh") CHECK(took_over.size() == 3);
      v[1].available = true;
      CHECK(assignment(*s, v, 4000) == before);  // back up: its keys come back

      // Excluded on a retry: the same fallback, for that request only.
      PickInput retry = with_key(key(0));
      retry.excluded = std::uint64_t{1} << before[0];
      int other = s->pick(v, retry);
      CHECK(other != before[0]);
      CHECK((other >= 0) == fallback);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// mh: Maglev

namespace {

// Slots per server: keys 0..65536 hit every slot of the 65537-slot table exactly once.
std::vector<int> slot_counts(Scheduler& s, const std::vector<ServerView>& v) {
  std::vector<int> counts(v.size());
  for (std::uint64_t slot = 0; slot < 65537; ++slot) {
    int p = s.pick(v, with_key(slot));
    REQUIRE(p >= 0);
    ++counts[static_cast<std::size_t>(p)];
  }
  return counts;
}

struct Movement {
  double moved = 0;      // fraction of keys whose server changed
  double bystander = 0;  // fraction of keys that moved between servers present in both lists
};

// Compares two assignments of the same keys by server id. `changed` is the id of the server
// added or removed.
Movement movement(const std::vector<ServerView>& a, const std::vector<int>& in_a,
                  const std::vector<ServerView>& b, const std::vector<int>& in_b,
                  std::uint64_t changed) {
  Movement m;
  for (std::size_t k = 0; k < in_a.size(); ++k) {
    std::uint64_t from = a[static_cast<std::size_t>(in_a[k])].id;
    std::uint64_t to = b[static_cast<std::size_t>(in_b[k])].id;
    if (from == to) continue;
    m.moved += 1;
    if (from != changed && to != changed) m.bystander += 1;
  }
  m.moved /= static_cast<double>(in_a.size());
  m.bystander /= static_cast<double>(in_a.size());
  return m;
}

}  // namespace

TEST_CASE("mh gives equal servers equal slot shares within 1%, weights in ratio", "[sched]") {
  std::vector<ServerView> v = equal(10);
  std::vector<int> counts = slot_counts(*make("mh", v), v);
  const double mean = 65537.0 / 10;
  double worst = 0;
  for (int c : counts) worst = std::max(worst, std::abs(c - mean) / mean);
  // Measured: max deviation 0.011% of the mean (ids of 10.0.0.0-9:80): every server gets
  // floor or ceil of 65537/10, since the servers take their turns in strict rotation.
  CHECK(worst < 0.01);

  std::vector<ServerView> w = servers({2, 1, 1, 4});
  counts = slot_counts(*make("mh", w), w);
  CHECK(counts[0] / 65537.0 == Approx(0.25).margin(0.01));
  CHECK(counts[1] / 65537.0 == Approx(0.125).margin(0.01));
  CHECK(counts[3] / 65537.0 == Approx(0.5).margin(0.01));
}

TEST_CASE("mh moves about 1/N of the keys when a server comes or goes", "[sched]") {
  constexpr std::uint64_t kKeys = 100000;
  std::vector<ServerView> ten = equal(10);
  std::vector<int> base = assignment(*make("mh", ten), ten, kKeys);

  SECTION("one server added") {
    std::vector<ServerView> eleven = equal(11);
    std::vector<int> after = assignment(*make("mh", eleven), eleven, kKeys);
    Movement m = movement(ten, base, eleven, after, eleven[10].id);
    // Measured: 9.13% moved (ideal 1/11 = 9.09%), 0.19% between old servers.
    CHECK(m.moved > 0.5 / 11);
    CHECK(m.moved < 1.5 / 11);
    CHECK(m.bystander < 0.01);
  }
  SECTION("one server removed") {
    std::vector<ServerView> nine = ten;
    std::uint64_t gone = nine[4].id;
    nine.erase(nine.begin() + 4);
    std::vector<int> after = assignment(*make("mh", nine), nine, kKeys);
    Movement m = movement(ten, base, nine, after, gone);
    // Measured: 10.37% moved (ideal 1/10), 0.24% between remaining servers.
    CHECK(m.moved > 0.5 / 10);
    CHECK(m.moved < 1.5 / 10);
    CHECK(m.bystander < 0.01);
  }
  SECTION("the order of the server list does not matter") {
    std::vector<ServerView> reversed(ten.rbegin(), ten.rend());
    std::vector<int> after = assignment(*make("mh", reversed), reversed, kKeys);
    CHECK(movement(ten, base, reversed, after, 0).moved == 0);
  }
}

TEST_CASE("mh keeps a down server's slots: fallback moves only its keys, and only meanwhile",
          "[sched]") {
  for (bool fallback : {true, false}) {
    CAPTURE(fallback);
    std::vector<ServerView> v = equal(5);
    auto mh = make("mh", v, fallback);
    std::vector<int> before = assignment(*mh, v, 20000);
    v[2].available = false;
    std::vector<int> during = assignment(*mh, v, 20000);
    std::map<int, int> took_over;
    for (std::size_t k = 0; k < before.size(); ++k) {
      if (before[k] != 2) {
        REQUIRE(during[k] == before[k]);
      } else if (fallback) {
        REQUIRE(during[k] >= 0);
        REQUIRE(during[k] != 2);
        ++took_over[during[k]];
      } else {
        REQUIRE(during[k] == -1);
      }
    }
    if (fallback) {
      CHECK(took_over.size() == 4);  // rehashing spreads them over the rest
      for (auto [s, n] : took_over) CHECK(n > 500);
    }
    v[2].available = true;
    CHECK(assignment(*mh, v, 20000) == before);  // recovered: its keys come back

    // Quiesced (weight 0): rebuilt without it; about its share of keys moves.
    v[2].weight = 0;
    mh->rebuild(v);
    std::vector<int> quiesced = assignment(*mh, v, 20000);
    std::size_t moved = 0;
    for (std::size_t k = 0; k < before.size(); ++k) {
      REQUIRE(quiesced[k] != 2);
      moved += quiesced[k] != before[k];
    }
    CHECK(moved / 20000.0 == Approx(0.2).margin(0.03));
  }
}
