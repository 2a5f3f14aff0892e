// RuleSet::decide micro-benchmarks: one decision per iteration, requests cycling over routes
// spread through the whole table (the last ones included), so a table scan would show.
//
//   build/rules_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "config/config.h"
#include "http/message_parser.h"
#include "rules/compiled_rule_set.h"
#include "rules/rule_set.h"

// Counts heap allocations, to show decide() makes none in steady state.
static std::size_t g_allocations = 0;

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
// GCC pairs the replaced operators with the standard ones when it inlines and then sees free()
// of "new" memory; here both sides are malloc/free.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace {

using namespace switchyard;
using rules::Decision;
using rules::MatchScratch;
using rules::RequestView;

// A parsed request head over its own buffer, like the proxy hands to the rules.
struct BenchRequest {
  std::string buf;
  http::Head head;
  sockaddr_in client{};
  const config::Route* expected = nullptr;

  BenchRequest(const std::string& method, const std::string& target, const std::string& host) {
    auto add = [this](const std::string& s) {
      http::Span span{static_cast<std::uint32_t>(buf.size()), static_cast<std::uint32_t>(s.size())};
      buf += s;
      return span;
    };
    head.method = add(method);
    buf += ' ';
    head.target = add(target);
    buf += " HTTP/1.1\r\n";
    const std::pair<std::string, std::string> fields[] = {
        {"Host", host},
        {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"},
        {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
        {"Accept-Encoding", "gzip, deflate, br"},
        {"Cookie", "session=4f1c2a9b7d; theme=dark"},
        {"Connection", "keep-alive"},
    };
    for (const auto& [name, value] : fields) {
      http::HeaderSpan h;
      h.name = add(name);
      buf += ": ";
      h.value = add(value);
      buf += "\r\n";
      head.headers.push_back(h);
    }
    buf += "\r\n";
    client.sin_family = AF_INET;
    client.sin_addr.s_addr = htonl(0xc0000201);
  }
  BenchRequest(const BenchRequest&) = delete;

  RequestView view() const {
    return {buf.data(), &head, reinterpret_cast<const sockaddr*>(&client)};
  }
};

struct Fixture {
  std::unique_ptr<config::Config> config = std::make_unique<config::Config>();
  std::unique_ptr<rules::RuleSet> rules;
  std::vector<std::unique_ptr<BenchRequest>> requests;

  void compile(std::size_t min_indexed_routes) {
    std::string error;
    rules::CompileOptions options;
    options.min_indexed_routes = min_indexed_routes;
    rules = rules::compile_rule_set(*config, options, error);
    if (!rules) {
      std::fprintf(stderr, "compile: %s\n", error.c_str());
      std::abort();
    }
    // The benchmark measures correct answers only.
    MatchScratch scratch;
    for (const auto& r : requests) {
      if (rules->decide(0, r->view(), scratch).route != r->expected) {
        std::fprintf(stderr, "wrong decision for %s\n", r->buf.c_str());
        std::abort();
      }
    }
  }
};

config::Match leaf(config::Match::Kind kind, std::string pattern) {
  config::Match m;
  m.kind = kind;
  m.patterns.push_back(std::move(pattern));
  return m;
}

constexpr int kRequests = 1024;

// `n` rules: hosts h0.example.com, h1.example.com, ... with four path prefixes each, then a
// catch-all. Requests hit rules evenly spread over the table, ending with the very last rule.
Fixture host_prefix_fixture(int n, std::size_t min_indexed_routes) {
  static const char* kPrefixes[] = {"/api/v1/", "/api/", "/static/", "/"};
  static const char* kPaths[] = {"/api/v1/items/42?expand=1", "/api/orders", "/static/app.js",
                                 "/index.html"};
  Fixture f;
  f.config->pools["web"].name = "web";
  auto& routes = f.config->routes["main"].routes;
  for (int i = 0; i < n; ++i) {
    config::Route r;
    config::Match all;
    all.kind = config::Match::Kind::kAll;
    all.children.push_back(
        leaf(config::Match::Kind::kHost, "h" + std::to_string(i / 4) + ".example.com"));
    all.children.push_back(leaf(config::Match::Kind::kPathPrefix, kPrefixes[i % 4]));
    r.match = std::move(all);
    r.pool = "web";
    routes.push_back(std::move(r));
  }
  config::Route fallback;
  fallback.respond = config::Respond{404, {}, "no route\n"};
  routes.push_back(std::move(fallback));
  for (int q = 0; q < kRequests; ++q) {
    int k = q == kRequests - 1 ? n - 1 : static_cast<int>(static_cast<long>(q) * n / kRequests);
    std::string host = "h" + std::to_string(k / 4) + ".example.com";
    if (q % 2) host += ":8080";
    auto req = std::make_unique<BenchRequest>("GET", kPaths[k % 4], host);
    req->expected = &routes[k];
    f.requests.push_back(std::move(req));
  }
  f.compile(min_indexed_routes);
  return f;
}

// `n` path_regex rules "^/svc<i>/(items|orders)/[0-9]+$", then a catch-all.
Fixture path_regex_fixture(int n) {
  Fixture f;
  f.config->pools["web"].name = "web";
  auto& routes = f.config->routes["main"].routes;
  for (int i = 0; i < n; ++i) {
    config::Route r;
    r.match = leaf(config::Match::Kind::kPathRegex,
                   "^/svc" + std::to_string(i) + "/(items|orders)/[0-9]+$");
    r.pool = "web";
    routes.push_back(std::move(r));
  }
  config::Route fallback;
  fallback.respond = config::Respond{404, {}, "no route\n"};
  routes.push_back(std::move(fallback));
  for (int q = 0; q < kRequests; ++q) {
    int k = q == kRequests - 1 ? n - 1 : static_cast<int>(static_cast<long>(q) * n / kRequests);
    std::string target = "/svc" + std::to_string(k) + (q % 2 ? "/items/" : "/orders/") +
                         std::to_string(q) + "?page=2";
    auto req = std::make_unique<BenchRequest>("GET", target, "example.com");
    req->expected = &routes[k];
    f.requests.push_back(std::move(req));
  }
  f.compile(rules::CompileOptions{}.min_indexed_routes);
  return f;
}

void run(benchmark::State& state, const Fixture& f) {
  MatchScratch scratch;
  for (const auto& r : f.requests) f.rules->decide(0, r->view(), scratch);  // warm up scratch
  std::size_t before = g_allocations;
  for (const auto& r : f.requests) f.rules->decide(0, r->view(), scratch);
  state.counters["allocs"] = static_cast<double>(g_allocations - before);
  std::size_t i = 0;
  for (auto _ : state) {
    Decision d = f.rules->decide(0, f.requests[i]->view(), scratch);
    benchmark::DoNotOptimize(d);
    if (++i == f.requests.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HostPrefix(benchmark::State& state) {
  Fixture f = host_prefix_fixture(static_cast<int>(state.range(0)),
                                  rules::CompileOptions{}.min_indexed_routes);
  run(state, f);
}
BENCHMARK(BM_HostPrefix)->Arg(10)->Arg(1000)->Arg(10000);

// The same tables without the index, for comparison.
void BM_HostPrefixScan(benchmark::State& state) {
  Fixture f = host_prefix_fixture(static_cast<int>(state.range(0)), SIZE_MAX);
  run(state, f);
}
BENCHMARK(BM_HostPrefixScan)->Arg(10)->Arg(1000);

void BM_PathRegex(benchmark::State& state) {
  Fixture f = path_regex_fixture(static_cast<int>(state.range(0)));
  run(state, f);
}
BENCHMARK(BM_PathRegex)->Arg(10)->Arg(100);

}  // namespace
