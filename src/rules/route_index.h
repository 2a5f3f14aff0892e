// An index over one route table that finds the routes a request could match by hash lookups on
// its host and path instead of testing every route, while keeping first-match order exactly.
//
// Every route is filed under a key taken from its match: a host key (the exact names and
// "*.suffix" patterns of one `host` matcher of its top-level conjunction) and a path key (the
// patterns of one `path` or `path_prefix` matcher of it). A route without one of them is filed
// under "any host" / "any path"; a route with neither is a candidate for every request. The
// index yields, in ascending route order, the routes whose keys match the request; the caller
// then tests the rest of each candidate's match (its residual) and stops at the first that holds.
// Internal to src/rules.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rules/matcher.h"
#include "rules/request_context.h"
#include "rules/string_table.h"

namespace switchyard::rules {

struct IndexKey {
  bool has_host = false;
  std::vector<std::string> exact_hosts;        // lower-cased
  std::vector<std::string> wildcard_suffixes;  // ".example.com"
  enum class PathKind { kAny, kExact, kPrefix };
  PathKind path_kind = PathKind::kAny;
  std::vector<std::string> paths;  // escape-normalised
};

class RouteIndex {
 public:
  // Sentinel results of find().
  static constexpr long kNone = -1;      // no candidate accepted
  static constexpr long kOverflow = -2;  // too many candidate lists: caller must scan linearly

  // Routes must be added in ascending ordinal order, then build() called once.
  void add(std::uint32_t ordinal, const IndexKey& key);
  void build();

  // Offers `accept` every candidate ordinal >= start, ascending and each once, until it returns
  // true; returns that ordinal, kNone, or kOverflow (nothing offered). Thread-safe (const), no
  // allocation.
  template <class Accept>
  long find(const RequestContext& ctx, std::uint32_t start, Accept&& accept) const;

 private:
  struct Range {
    std::uint32_t begin = 0;
    std::uint32_t end = 0;
    bool empty() const { return begin == end; }
  };
  struct PathEntry {
    std::uint32_t offset = 0;  // pattern in patterns_
    std::uint32_t length = 0;
    Range ordinals;
  };
  // Above this many entries, a bucket's paths are found by hashing instead of a linear scan.
  static constexpr std::size_t kLinearEntries = 8;
  struct LargeBucket {
    StringTable exact;                          // pattern -> index into entries_
    StringTable prefix;                         // pattern -> index into entries_
    std::vector<std::uint32_t> prefix_lengths;  // distinct, ascending
  };
  // Small and flat so that the buckets of 10,000 hosts stay cache-friendly; a bucket's entries
  // and their patterns are contiguous.
  struct Bucket {
    Range any_path;                              // into ordinals_
    Range exact;                                 // into entries_
    Range prefix;                                // into entries_
    std::uint32_t large = StringTable::kAbsent;  // into large_
  };
  struct BuildBucket {
    std::vector<std::uint32_t> any_path;
    std::map<std::string, std::vector<std::uint32_t>> exact;
    std::map<std::string, std::vector<std::uint32_t>> prefix;
  };
  static constexpr int kMaxLists = 64;
  // The candidate lists of one request. Deliberately without initialisers: only [0, n) is
  // read, and zeroing 64 ranges per request was measurable.
  struct Lists {
    std::uint32_t begin[kMaxLists];
    std::uint32_t end[kMaxLists];
    int n = 0;
    bool overflow = false;
    void push(Range range) {
      if (range.empty()) return;
      if (n == kMaxLists) {
        overflow = true;
        return;
      }
      begin[n] = range.begin;
      end[n++] = range.end;
    }
  };

  static void add_to(BuildBucket& b, std::uint32_t ordinal, const IndexKey& key);
  Range store(const std::vector<std::uint32_t>& ordinals);
  std::uint32_t make_bucket(const BuildBucket& bb);
  std::string_view pattern(const PathEntry& e) const {
    return {patterns_.data() + e.offset, e.length};
  }
  void collect(const Bucket& b, const RequestContext& ctx, Lists& lists) const;

  std::map<std::string, BuildBucket> build_exact_;
  std::map<std::string, BuildBucket> build_wildcard_;
  BuildBucket build_any_;

  std::vector<std::uint32_t> ordinals_;
  std::vector<PathEntry> entries_;
  std::string patterns_;
  std::vector<Bucket> buckets_;
  std::vector<LargeBucket> large_;
  StringTable exact_hosts_;     // host -> bucket
  StringTable wildcard_hosts_;  // ".suffix" -> bucket
  std::size_t min_suffix_ = 0;  // length bounds of the wildcard suffixes, to skip probes
  std::size_t max_suffix_ = 0;
  std::uint32_t any_host_ = StringTable::kAbsent;
};

template <class Accept>
long RouteIndex::find(const RequestContext& ctx, std::uint32_t start, Accept&& accept) const {
  Lists lists;
  if (!ctx.host.empty()) {
    if (std::uint32_t b = exact_hosts_.find(ctx.host); b != StringTable::kAbsent) {
      collect(buckets_[b], ctx, lists);
    }
    if (!wildcard_hosts_.empty()) {
      // "a.b.example.com" probes ".b.example.com", ".example.com", ".com": "*.x" matches any
      // depth of subdomain, never "x" itself (a dot at position 0 leaves an empty label).
      std::string_view host = ctx.host;
      for (std::size_t dot = host.find('.', 1); dot != std::string_view::npos;
           dot = host.find('.', dot + 1)) {
        std::size_t len = host.size() - dot;
        if (len < min_suffix_) break;
        if (len > max_suffix_) continue;
        if (std::uint32_t b = wildcard_hosts_.find(host.substr(dot)); b != StringTable::kAbsent) {
          collect(buckets_[b], ctx, lists);
        }
      }
    }
  }
  if (any_host_ != StringTable::kAbsent) collect(buckets_[any_host_], ctx, lists);
  if (lists.overflow) return kOverflow;

  // k-way merge of the sorted lists; k is 1 or 2 in the common case.
  std::uint32_t pos[kMaxLists];
  const std::uint32_t* ords = ordinals_.data();
  for (int i = 0; i < lists.n; ++i) {
    pos[i] = lists.begin[i];
    if (start > 0) {
      pos[i] = static_cast<std::uint32_t>(
          std::lower_bound(ords + lists.begin[i], ords + lists.end[i], start) - ords);
    }
  }
  while (true) {
    std::uint32_t best = UINT32_MAX;
    for (int i = 0; i < lists.n; ++i) {
      if (pos[i] < lists.end[i] && ords[pos[i]] < best) best = ords[pos[i]];
    }
    if (best == UINT32_MAX) return kNone;
    if (accept(best)) return best;
    for (int i = 0; i < lists.n; ++i) {
      if (pos[i] < lists.end[i] && ords[pos[i]] == best) ++pos[i];
    }
  }
}

}  // namespace switchyard::rules
