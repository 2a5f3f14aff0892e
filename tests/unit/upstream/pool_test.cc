// Balancer: what decides whether a server may take a request, around the scheduler itself.
#include "upstream/pool.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <vector>

#include "rules/request_key.h"
#include "upstream/persistence_table.h"

using namespace switchyard;
using upstream::Balancer;
using upstream::Outcome;
using upstream::PickRequest;

namespace {

config::Pool make_pool(std::initializer_list<std::uint32_t> weights,
                       const char* scheduler = "wrr") {
  config::Pool p;
  p.name = "web";
  p.scheduler = scheduler;
  int n = 0;
  for (std::uint32_t w : weights) {
    config::Server s;
    s.weight = w;
    s.address.text = "10.0.0." + std::to_string(++n) + ":80";
    p.servers.push_back(s);
  }
  return p;
}

struct Fixture {
  explicit Fixture(config::Pool p, unsigned workers = 1)
      : pool(std::move(p)),
        state(std::make_shared<upstream::PoolState>(pool, workers)),
        b(pool, state, 0) {}
  config::Pool pool;
  std::shared_ptr<upstream::PoolState> state;
  Balancer b;
  upstream::Clock::time_point now = upstream::Clock::now();

  int pick(std::uint64_t tried = 0) {
    PickRequest r;
    r.tried = tried;
    return b.pick(r, now).server;
  }
};

}  // namespace

TEST_CASE("weights set the share, interleaved smoothly", "[upstream]") {
  Fixture f(make_pool({3, 1}));
  std::vector<int> order;
  for (int i = 0; i < 8; ++i) order.push_back(f.pick());
  CHECK(order == std::vector<int>{0, 0, 1, 0, 0, 0, 1, 0});
}

TEST_CASE("tried servers are skipped and exhaustion is reported", "[upstream]") {
  Fixture f(make_pool({1, 1}));
  int first = f.pick();
  int second = f.pick(std::uint64_t{1} << first);
  CHECK(second != first);
  CHECK(f.pick(0b11) == -1);
}

TEST_CASE("rr ignores weights but still quiesces weight zero", "[upstream]") {
  Fixture f(make_pool({5, 1, 0}, "rr"));
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) order.push_back(f.pick());
  CHECK(order == std::vector<int>{0, 1, 0, 1});
}

TEST_CASE("a server reported down by active checks gets nothing until it is up", "[upstream]") {
  Fixture f(make_pool({1, 1}));
  f.state->health(0).state.store(upstream::Health::kDown);
  f.b.sync(f.now);
  for (int i = 0; i < 4; ++i) CHECK(f.pick() == 1);
  f.state->health(0).state.store(upstream::Health::kUp);
  f.b.sync(f.now);
  std::map<int, int> counts;
  for (int i = 0; i < 4; ++i) counts[f.pick()]++;
  CHECK(counts[0] == 2);
}

TEST_CASE("consecutive failures eject a server, for longer on each repeat", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  p.outlier.consecutive_failures = 3;
  p.outlier.base_ejection = std::chrono::milliseconds(1000);
  p.outlier.max_ejection = std::chrono::milliseconds(3000);
  Fixture f(p);
  f.b.report(0, Outcome::kConnectFailure, f.now);
  f.b.report(0, Outcome::kConnectFailure, f.now);
  CHECK(f.b.up(0, f.now));
  f.b.report(0, Outcome::kSuccess, f.now);  // a success resets the run
  f.b.report(0, Outcome::kConnectFailure, f.now);
  f.b.report(0, Outcome::kConnectFailure, f.now);
  CHECK(f.b.up(0, f.now));
  f.b.report(0, Outcome::k5xx, f.now);
  CHECK_FALSE(f.b.up(0, f.now));
  for (int i = 0; i < 4; ++i) CHECK(f.pick() == 1);
  auto t1 = f.now + std::chrono::milliseconds(1001);
  CHECK(f.b.up(0, t1));
  // Ejected again at once: twice as long this time, capped by max_ejection.
  for (int i = 0; i < 3; ++i) f.b.report(0, Outcome::kReset, t1);
  CHECK_FALSE(f.b.up(0, t1 + std::chrono::milliseconds(1999)));
  CHECK(f.b.up(0, t1 + std::chrono::milliseconds(2001)));
  auto t2 = t1 + std::chrono::milliseconds(2001);
  for (int i = 0; i < 3; ++i) f.b.report(0, Outcome::kReset, t2);
  CHECK_FALSE(f.b.up(0, t2 + std::chrono::milliseconds(2999)));
  CHECK(f.b.up(0, t2 + std::chrono::milliseconds(3001)));
}

TEST_CASE("5xx do not count when count_5xx is off", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  p.outlier.consecutive_failures = 2;
  p.outlier.count_5xx = false;
  Fixture f(p);
  for (int i = 0; i < 5; ++i) f.b.report(0, Outcome::k5xx, f.now);
  CHECK(f.b.up(0, f.now));
}

TEST_CASE("a passed active check readmits an ejected server early", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  p.outlier.consecutive_failures = 1;
  Fixture f(p);
  f.b.report(0, Outcome::kConnectFailure, f.now);
  CHECK_FALSE(f.b.up(0, f.now));
  f.state->health(0).passes.fetch_add(1);
  f.b.sync(f.now);
  CHECK(f.b.up(0, f.now));
}

TEST_CASE("drained servers get no new requests, persistent clients included", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  p.servers[0].drain = true;
  Fixture f(p);
  for (int i = 0; i < 4; ++i) CHECK(f.pick() == 1);
  PickRequest r;
  r.cookie_server = 0;
  CHECK(f.b.pick(r, f.now).server == 1);
  CHECK(f.b.draining(0));
}

TEST_CASE("max_connections: a full server is skipped; all full means queue", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  p.servers[0].max_connections = 1;
  p.servers[1].max_connections = 2;
  Fixture f(p);
  int a = f.pick();
  f.b.started(a);
  int b = f.pick();
  f.b.started(b);
  int c = f.pick();
  f.b.started(c);
  std::map<int, int> counts{{a, 1}};
  counts[b]++;
  counts[c]++;
  CHECK(counts[0] == 1);
  CHECK(counts[1] == 2);
  PickRequest r;
  Balancer::Pick full = f.b.pick(r, f.now);
  CHECK(full.server == -1);
  CHECK(full.full);
  f.b.finished(0);
  CHECK(f.pick() == 0);
}

TEST_CASE("max_connections is split between workers", "[upstream]") {
  config::Pool p = make_pool({1});
  p.servers[0].max_connections = 4;
  Fixture f(p, /*workers=*/2);
  f.b.started(f.pick());
  f.b.started(f.pick());
  PickRequest r;
  CHECK(f.b.pick(r, f.now).full);
}

TEST_CASE("backup servers serve only while no primary is usable", "[upstream]") {
  config::Pool p = make_pool({1, 1, 1});
  p.servers[2].backup = true;
  Fixture f(p);
  for (int i = 0; i < 6; ++i) CHECK(f.pick() != 2);
  // Primaries tried (a retry) but still up: no backup.
  CHECK(f.pick(0b011) == -1);
  f.state->health(0).state.store(upstream::Health::kDown);
  f.state->health(1).state.store(upstream::Health::kDown);
  f.b.sync(f.now);
  CHECK(f.pick() == 2);
}

TEST_CASE("cookie persistence returns a client to its server while it is usable", "[upstream]") {
  config::Pool p = make_pool({1, 1, 1});
  p.persistence.kind = config::Persistence::Kind::kCookie;
  Fixture f(p);
  std::string_view value = f.b.cookie_value(2);
  CHECK(value.size() == 16);
  CHECK(f.b.server_for_cookie(value) == 2);
  CHECK(f.b.server_for_cookie("nope") == -1);
  PickRequest r;
  r.cookie_server = 2;
  for (int i = 0; i < 5; ++i) {
    Balancer::Pick pk = f.b.pick(r, f.now);
    CHECK(pk.server == 2);
    CHECK(pk.sticky);
  }
  f.state->health(2).state.store(upstream::Health::kDown);
  f.b.sync(f.now);
  CHECK(f.b.pick(r, f.now).server != 2);
}

TEST_CASE("source persistence is shared by workers and expires", "[upstream]") {
  config::Pool p = make_pool({1, 1, 1, 1});
  p.persistence.kind = config::Persistence::Kind::kSource;
  p.persistence.timeout = std::chrono::seconds(10);
  auto state = std::make_shared<upstream::PoolState>(p, 2);
  Balancer w0(p, state, 0);
  Balancer w1(p, state, 1);
  auto now = upstream::Clock::now();
  PickRequest r;
  r.has_source_key = true;
  r.source_key = 0x1234567890abcdefull;
  int first = w0.pick(r, now).server;
  for (int i = 0; i < 8; ++i) {
    CHECK(w0.pick(r, now).server == first);
    CHECK(w1.pick(r, now).server == first);  // another worker sees the same entry
  }
  // Idle past the timeout: the entry is gone and rr moves on.
  std::map<int, int> counts;
  auto later = now + std::chrono::seconds(11);
  for (int i = 0; i < 8; ++i) {
    PickRequest fresh = r;
    fresh.source_key = r.source_key + static_cast<std::uint64_t>(i) * 0x100000000ull;
    counts[w1.pick(fresh, later).server]++;
  }
  CHECK(counts.size() > 1);
}

TEST_CASE("persistence table: refresh, forget and a full probe window", "[upstream]") {
  upstream::PersistenceTable t(64);
  CHECK(t.lookup(42, 100, 10) == -1);
  CHECK(t.remember(42, 3, 100, 10) == 3);
  CHECK(t.lookup(42, 107, 10) == 3);  // 3 s left < timeout/2: refreshed to expire at 117
  CHECK(t.lookup(42, 114, 10) == 3);
  CHECK(t.lookup(42, 125, 10) == -1);  // expired
  CHECK(t.remember(42, 1, 200, 10) == 1);
  CHECK(t.remember(42, 2, 201, 10) == 1);  // the first stored server wins while it lives
  t.forget(42);
  CHECK(t.lookup(42, 202, 10) == -1);
  // Keys crowding one window evict the entry closest to expiry.
  for (std::uint64_t k = 0; k < 20; ++k)
    t.remember((k << 33) | 5, static_cast<int>(k % 8), 300 + static_cast<std::uint32_t>(k), 100);
  CHECK(t.lookup((19ull << 33) | 5, 320, 100) == 3);
  t.forget_server(3);
  CHECK(t.lookup((19ull << 33) | 5, 320, 100) == -1);
}

TEST_CASE("source keys honour the persistence netmask", "[upstream]") {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.10", &a.sin_addr);
  sockaddr_in b = a;
  inet_pton(AF_INET, "192.0.2.200", &b.sin_addr);
  auto* sa = reinterpret_cast<const sockaddr*>(&a);
  auto* sb = reinterpret_cast<const sockaddr*>(&b);
  CHECK(rules::masked_source_hash(sa, 32, 128) != rules::masked_source_hash(sb, 32, 128));
  CHECK(rules::masked_source_hash(sa, 24, 128) == rules::masked_source_hash(sb, 24, 128));
  sockaddr_in6 m{};
  m.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.0.2.10", &m.sin6_addr);
  CHECK(rules::masked_source_hash(reinterpret_cast<const sockaddr*>(&m), 32, 128) ==
        rules::masked_source_hash(sa, 32, 128));
}

TEST_CASE("rebind keeps in-flight counts and takes new weights", "[upstream]") {
  config::Pool p = make_pool({1, 1});
  Fixture f(p);
  f.b.started(0);
  config::Pool q = make_pool({0, 1});
  REQUIRE(f.b.can_rebind(q, *f.state));
  f.b.rebind(q);
  CHECK(f.b.active(0) == 1);
  for (int i = 0; i < 3; ++i) CHECK(f.pick() == 1);
  config::Pool other = make_pool({1, 1}, "rr");
  CHECK_FALSE(f.b.can_rebind(other, *f.state));
}
