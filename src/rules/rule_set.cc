// The concrete RuleSet: route tables compiled to matchers (+ a RouteIndex for long tables), and
// the actions that need the request (split choice, redirect Location, path rewrite).
#include "rules/rule_set.h"

#include <re2/re2.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <unordered_map>

#include "rules/compiled_rule_set.h"
#include "rules/hash.h"
#include "rules/matcher.h"
#include "rules/request_context.h"
#include "rules/route_index.h"

namespace switchyard::rules {

namespace {

using Kind = config::Match::Kind;

// The loader rejects goto cycles; this bounds the recursion should one slip through anyway.
constexpr int kMaxGotoDepth = 8;

// The most captures a rewrite may use: \0 .. \9.
constexpr int kMaxRewriteGroups = 10;

struct CompiledRoute {
  const config::Route* route = nullptr;
  std::unique_ptr<Matcher> match;     // null: matches every request
  std::unique_ptr<Matcher> residual;  // indexed tables: the part the index does not check
  int go_to = -1;
  int pool = -1;
  std::vector<int> split_pools;
  std::vector<std::uint64_t> split_bounds;  // cumulative weights
  std::string sticky_name;                  // header names lower-cased
  std::unique_ptr<RE2> rewrite_regex;
  int rewrite_groups = 0;  // captures the rewrite refers to, plus \0
};

struct CompiledTable {
  std::string_view name;
  std::vector<CompiledRoute> routes;
  std::unique_ptr<RouteIndex> index;  // null: scanned in order
};

// Per-request draw for splits without a sticky value: splitmix64 over a thread-local counter.
// Thread-local and unsynchronised on purpose (workers must not share a cache line per request);
// the output is uniform enough that 10,000 draws land within a percent or two of the weights.
std::uint64_t next_draw() {
  // Each thread starts its counter at a random-looking point, seeded once from a shared counter:
  // the only atomic operation, paid once per thread.
  static std::atomic<std::uint64_t> threads{0};
  thread_local std::uint64_t counter = mix64(threads.fetch_add(1, std::memory_order_relaxed));
  return mix64(counter++);
}

void flatten(const config::Match& m, std::vector<const config::Match*>& out) {
  if (m.kind == Kind::kAll) {
    for (const config::Match& c : m.children) flatten(c, out);
  } else {
    out.push_back(&m);
  }
}

// Splits a route's match into the key the index files it under and the residual conjuncts.
IndexKey extract_key(const config::Route& route, std::vector<const config::Match*>& residual) {
  IndexKey key;
  if (!route.match) return key;
  std::vector<const config::Match*> parts;
  flatten(*route.match, parts);
  bool have_path = false;
  for (const config::Match* p : parts) {
    if (!key.has_host && p->kind == Kind::kHost) {
      HostPatterns hosts = compile_host_patterns(p->patterns);
      if (!hosts.any) {  // "*" has no key to hash; leave it to the residual
        key.has_host = true;
        key.exact_hosts = std::move(hosts.exact);
        key.wildcard_suffixes = std::move(hosts.suffixes);
        continue;
      }
    }
    if (!have_path && (p->kind == Kind::kPath || p->kind == Kind::kPathPrefix)) {
      have_path = true;
      key.path_kind =
          p->kind == Kind::kPath ? IndexKey::PathKind::kExact : IndexKey::PathKind::kPrefix;
      for (const std::string& s : p->patterns) key.paths.push_back(normalize_path_pattern(s));
      continue;
    }
    residual.push_back(p);
  }
  return key;
}

void expand_template(std::string_view tmpl, const RequestContext& ctx, std::string& out) {
  while (!tmpl.empty()) {
    std::size_t brace = tmpl.find('{');
    out.append(tmpl.substr(0, brace));
    if (brace == std::string_view::npos) return;
    tmpl.remove_prefix(brace);
    std::string_view value;
    std::size_t len = 0;
    if (tmpl.starts_with("{scheme}")) {
      value = ctx.req->tls ? "https" : "http", len = 8;
    } else if (tmpl.starts_with("{host}")) {
      value = ctx.host_raw, len = 6;
    } else if (tmpl.starts_with("{path}")) {
      value = ctx.raw_path, len = 6;
    } else if (tmpl.starts_with("{query}")) {
      value = ctx.query, len = 7;
    } else {
      value = "{", len = 1;  // not a placeholder: literal
    }
    out.append(value);
    tmpl.remove_prefix(len);
  }
}

class CompiledRuleSet final : public RuleSet {
 public:
  explicit CompiledRuleSet(const config::Config& config) : config_(config) {}

  bool compile(const CompileOptions& options, std::string& error);

  int table_index(std::string_view name) const override {
    auto it =
        std::lower_bound(tables_.begin(), tables_.end(), name,
                         [](const CompiledTable& t, std::string_view n) { return t.name < n; });
    return it != tables_.end() && it->name == name ? static_cast<int>(it - tables_.begin()) : -1;
  }

  Decision decide(int table, const RequestView& req, MatchScratch& scratch) const override {
    if (table < 0 || table >= static_cast<int>(tables_.size()) || req.head == nullptr) return {};
    RequestContext ctx;
    ctx.init(req, scratch);
    return decide_in(table, ctx, 0);
  }

  void redirect_location(const Decision& d, const RequestView& req, MatchScratch& scratch,
                         std::string& out) const override;
  bool rewrite_target(const Decision& d, const RequestView& req, MatchScratch& scratch,
                      std::string& out) const override;

 private:
  bool compile_route(const config::Route& route, const std::string& where, RouteIndex* index,
                     std::uint32_t ordinal, CompiledRoute& out, std::string& error);
  long first_match(const CompiledTable& table, const RequestContext& ctx,
                   std::uint32_t start) const;
  Decision decide_in(int table, const RequestContext& ctx, int depth) const;
  Decision decision_for(const CompiledRoute& r, const RequestContext& ctx) const;

  const config::Config& config_;
  std::vector<CompiledTable> tables_;  // in config.routes (name) order
  std::unordered_map<std::string_view, int> pool_index_;
  std::unordered_map<const config::Route*, const CompiledRoute*> by_route_;
};

bool CompiledRuleSet::compile(const CompileOptions& options, std::string& error) {
  int next_pool = 0;
  for (const auto& [name, pool] : config_.pools) pool_index_.emplace(name, next_pool++);
  for (const auto& [name, table] : config_.routes) {
    CompiledTable& t = tables_.emplace_back();
    t.name = name;
  }
  int ti = 0;
  for (const auto& [name, table] : config_.routes) {
    CompiledTable& t = tables_[ti++];
    bool indexed = table.routes.size() >= options.min_indexed_routes;
    if (indexed) t.index = std::make_unique<RouteIndex>();
    t.routes.resize(table.routes.size());
    for (std::size_t i = 0; i < table.routes.size(); ++i) {
      const config::Route& route = table.routes[i];
      std::string where = "routes." + name + "[" + std::to_string(i) + "]";
      if (route.mark.line > 0) where += " (line " + std::to_string(route.mark.line) + ")";
      if (!compile_route(route, where, t.index.get(), static_cast<std::uint32_t>(i), t.routes[i],
                         error)) {
        return false;
      }
    }
    if (t.index) t.index->build();
  }
  for (const CompiledTable& t : tables_) {
    for (const CompiledRoute& r : t.routes) by_route_.emplace(r.route, &r);
  }
  return true;
}

bool CompiledRuleSet::compile_route(const config::Route& route, const std::string& where,
                                    RouteIndex* index, std::uint32_t ordinal, CompiledRoute& out,
                                    std::string& error) {
  out.route = &route;
  auto fail = [&](const std::string& what) {
    error = where + ": " + what;
    return false;
  };
  std::string e;
  if (route.match) {
    out.match = std::make_unique<Matcher>();
    if (!compile_match(*route.match, *out.match, e)) return fail(e);
  }
  if (index != nullptr) {
    std::vector<const config::Match*> residual;
    index->add(ordinal, extract_key(route, residual));
    if (!residual.empty()) {
      out.residual = std::make_unique<Matcher>();
      if (!compile_conjunction(residual, *out.residual, e)) return fail(e);
    }
  }
  auto pool_of = [&](const std::string& name) {
    auto it = pool_index_.find(name);
    return it == pool_index_.end() ? -1 : it->second;
  };
  if (route.pool) {
    out.pool = pool_of(*route.pool);
    if (out.pool < 0) return fail("unknown pool \"" + *route.pool + "\"");
  }
  if (route.split) {
    std::uint64_t total = 0;
    for (const config::WeightedPool& wp : route.split->pools) {
      int p = pool_of(wp.pool);
      if (p < 0) return fail("unknown pool \"" + wp.pool + "\"");
      total += wp.weight;
      out.split_pools.push_back(p);
      out.split_bounds.push_back(total);
    }
    if (total == 0) return fail("split weights sum to 0");
    std::string& sticky = out.sticky_name;
    sticky = route.split->sticky_name;
    if (route.split->sticky_on == config::Split::StickyOn::kHeader) {
      for (char& c : sticky) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
  }
  if (route.go_to) {
    out.go_to = table_index(*route.go_to);
    if (out.go_to < 0) return fail("goto unknown route table \"" + *route.go_to + "\"");
  }
  if (route.rewrite.kind == config::PathRewrite::Kind::kRegex) {
    out.rewrite_regex = std::make_unique<RE2>(route.rewrite.from, regex_options());
    if (!out.rewrite_regex->ok()) {
      return fail("invalid rewrite regex \"" + route.rewrite.from +
                  "\": " + out.rewrite_regex->error());
    }
    if (!out.rewrite_regex->CheckRewriteString(route.rewrite.to, &e)) {
      return fail("invalid rewrite \"" + route.rewrite.to + "\": " + e);
    }
    out.rewrite_groups = RE2::MaxSubmatch(route.rewrite.to) + 1;
    if (out.rewrite_groups > kMaxRewriteGroups) return fail("rewrite uses more than \\9");
  }
  return true;
}

long CompiledRuleSet::first_match(const CompiledTable& table, const RequestContext& ctx,
                                  std::uint32_t start) const {
  if (table.index) {
    long i = table.index->find(ctx, start, [&](std::uint32_t ordinal) {
      const CompiledRoute& r = table.routes[ordinal];
      return !r.residual || r.residual->matches(ctx);
    });
    if (i != RouteIndex::kOverflow) return i;
  }
  for (std::size_t i = start; i < table.routes.size(); ++i) {
    const CompiledRoute& r = table.routes[i];
    if (!r.match || r.match->matches(ctx)) return static_cast<long>(i);
  }
  return -1;
}

Decision CompiledRuleSet::decide_in(int table, const RequestContext& ctx, int depth) const {
  const CompiledTable& t = tables_[table];
  std::uint32_t start = 0;
  while (true) {
    long i = first_match(t, ctx, start);
    if (i < 0) return {};
    const CompiledRoute& r = t.routes[i];
    if (r.go_to < 0) return decision_for(r, ctx);
    if (depth < kMaxGotoDepth) {
      Decision d = decide_in(r.go_to, ctx, depth + 1);
      if (d.route != nullptr) return d;
    }
    // Nothing in the target table matched: fall through to the next route of this one.
    start = static_cast<std::uint32_t>(i + 1);
  }
}

Decision CompiledRuleSet::decision_for(const CompiledRoute& r, const RequestContext& ctx) const {
  Decision d;
  d.route = r.route;
  d.pool = r.pool;
  if (r.split_pools.empty()) return d;

  const config::Split& split = *r.route->split;
  std::string_view sticky;
  auto take = [&](std::string_view v) {
    sticky = v;
    return !v.empty();  // an empty value would pile every such request onto one pool
  };
  if (split.sticky_on == config::Split::StickyOn::kHeader) {
    for_each_header(ctx, r.sticky_name, take);
  } else if (split.sticky_on == config::Split::StickyOn::kCookie) {
    for_each_cookie(ctx, r.sticky_name, take);
  }
  std::uint64_t draw = sticky.empty() ? next_draw() : stable_hash(sticky);
  std::uint64_t point = draw % r.split_bounds.back();
  std::size_t k = std::upper_bound(r.split_bounds.begin(), r.split_bounds.end(), point) -
                  r.split_bounds.begin();
  d.pool = r.split_pools[k];
  return d;
}

void CompiledRuleSet::redirect_location(const Decision& d, const RequestView& req,
                                        MatchScratch& scratch, std::string& out) const {
  if (d.route == nullptr || !d.route->redirect || req.head == nullptr) return;
  const config::Redirect& r = *d.route->redirect;
  RequestContext ctx;
  ctx.init(req, scratch);
  expand_template(r.scheme ? std::string_view(*r.scheme) : "{scheme}", ctx, out);
  out.append("://");
  expand_template(r.host ? std::string_view(*r.host) : "{host}", ctx, out);
  std::size_t path_at = out.size();
  expand_template(r.path ? std::string_view(*r.path) : "{path}", ctx, out);
  if (out.size() == path_at || out[path_at] != '/') out.insert(path_at, 1, '/');
  std::size_t query_at = out.size();
  out.push_back('?');
  expand_template(r.query ? std::string_view(*r.query) : "{query}", ctx, out);
  if (out.size() == query_at + 1) out.pop_back();  // no '?' for an empty query
}

bool CompiledRuleSet::rewrite_target(const Decision& d, const RequestView& req,
                                     MatchScratch& scratch, std::string& out) const {
  if (d.route == nullptr || req.head == nullptr) return false;
  const config::PathRewrite& rw = d.route->rewrite;
  if (rw.kind == config::PathRewrite::Kind::kNone) return false;
  RequestContext ctx;
  ctx.init(req, scratch);
  // Rewrite what was matched: the normalised path. Rewriting the raw path would let
  // "//v1/x" match `path_prefix: /v1/` yet reach the server un-rewritten.
  if (!ctx.path_ok) return false;
  std::string_view path = ctx.path;
  std::size_t mark = out.size();
  if (rw.kind == config::PathRewrite::Kind::kPrefix) {
    if (!path.starts_with(rw.from)) return false;
    out.append(rw.to);
    out.append(path.substr(rw.from.size()));
  } else {
    auto it = by_route_.find(d.route);
    if (it == by_route_.end() || !it->second->rewrite_regex) return false;
    const CompiledRoute& cr = *it->second;
    re2::StringPiece groups[kMaxRewriteGroups];
    if (!cr.rewrite_regex->Match(path, 0, path.size(), RE2::UNANCHORED, groups,
                                 cr.rewrite_groups)) {
      return false;
    }
    // RE2::Replace would build a new string per call; Rewrite appends in place.
    out.append(path.data(), groups[0].data() - path.data());
    if (!cr.rewrite_regex->Rewrite(&out, rw.to, groups, cr.rewrite_groups)) {
      out.resize(mark);
      return false;
    }
    out.append(groups[0].data() + groups[0].size(), path.data() + path.size());
  }
  if (out.size() == mark) out.push_back('/');  // "/api" with prefix "/api" -> "" -> "/"
  if (ctx.has_query) {
    out.push_back('?');
    out.append(ctx.query);
  }
  return true;
}

}  // namespace

std::unique_ptr<RuleSet> compile_rule_set(const config::Config& config,
                                          const CompileOptions& options, std::string& error) {
  auto rules = std::make_unique<CompiledRuleSet>(config);
  if (!rules->compile(options, error)) return nullptr;
  return rules;
}

std::unique_ptr<RuleSet> RuleSet::compile(const config::Config& config, std::string& error) {
  return compile_rule_set(config, CompileOptions{}, error);
}

}  // namespace switchyard::rules
