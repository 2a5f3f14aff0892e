#include "rules/route_index.h"

#include <algorithm>

namespace switchyard::rules {

void RouteIndex::add_to(BuildBucket& b, std::uint32_t ordinal, const IndexKey& key) {
  // A route listed twice under one key (duplicate patterns) would be offered twice; the merge
  // in find() de-duplicates across lists, this keeps each list strictly ascending.
  auto push = [ordinal](std::vector<std::uint32_t>& v) {
    if (v.empty() || v.back() != ordinal) v.push_back(ordinal);
  };
  switch (key.path_kind) {
    case IndexKey::PathKind::kAny:
      push(b.any_path);
      break;
    case IndexKey::PathKind::kExact:
      for (const std::string& p : key.paths) push(b.exact[p]);
      break;
    case IndexKey::PathKind::kPrefix:
      for (const std::string& p : key.paths) push(b.prefix[p]);
      break;
  }
}

void RouteIndex::add(std::uint32_t ordinal, const IndexKey& key) {
  if (!key.has_host) {
    add_to(build_any_, ordinal, key);
    return;
  }
  for (const std::string& h : key.exact_hosts) add_to(build_exact_[h], ordinal, key);
  for (const std::string& s : key.wildcard_suffixes) add_to(build_wildcard_[s], ordinal, key);
}

RouteIndex::Range RouteIndex::store(const std::vector<std::uint32_t>& ordinals) {
  Range r;
  r.begin = static_cast<std::uint32_t>(ordinals_.size());
  ordinals_.insert(ordinals_.end(), ordinals.begin(), ordinals.end());
  r.end = static_cast<std::uint32_t>(ordinals_.size());
  return r;
}

std::uint32_t RouteIndex::make_bucket(const BuildBucket& bb) {
  Bucket b;
  b.any_path = store(bb.any_path);
  auto add_entries = [this](const std::map<std::string, std::vector<std::uint32_t>>& from) {
    Range r;
    r.begin = static_cast<std::uint32_t>(entries_.size());
    for (const auto& [pattern, ords] : from) {
      PathEntry e;
      e.offset = static_cast<std::uint32_t>(patterns_.size());
      e.length = static_cast<std::uint32_t>(pattern.size());
      e.ordinals = store(ords);
      patterns_ += pattern;
      entries_.push_back(e);
    }
    r.end = static_cast<std::uint32_t>(entries_.size());
    return r;
  };
  b.exact = add_entries(bb.exact);
  b.prefix = add_entries(bb.prefix);
  if (bb.exact.size() > kLinearEntries || bb.prefix.size() > kLinearEntries) {
    LargeBucket& large = large_.emplace_back();
    b.large = static_cast<std::uint32_t>(large_.size() - 1);
    for (std::uint32_t i = b.exact.begin; i < b.exact.end; ++i) {
      large.exact.insert(pattern(entries_[i]), i);
    }
    for (std::uint32_t i = b.prefix.begin; i < b.prefix.end; ++i) {
      large.prefix.insert(pattern(entries_[i]), i);
      large.prefix_lengths.push_back(entries_[i].length);
    }
    std::sort(large.prefix_lengths.begin(), large.prefix_lengths.end());
    large.prefix_lengths.erase(
        std::unique(large.prefix_lengths.begin(), large.prefix_lengths.end()),
        large.prefix_lengths.end());
  }
  buckets_.push_back(b);
  return static_cast<std::uint32_t>(buckets_.size() - 1);
}

void RouteIndex::build() {
  for (const auto& [host, bb] : build_exact_) exact_hosts_.insert(host, make_bucket(bb));
  for (const auto& [suffix, bb] : build_wildcard_) {
    min_suffix_ = wildcard_hosts_.empty() ? suffix.size() : std::min(min_suffix_, suffix.size());
    max_suffix_ = std::max(max_suffix_, suffix.size());
    wildcard_hosts_.insert(suffix, make_bucket(bb));
  }
  const BuildBucket& any = build_any_;
  if (!any.any_path.empty() || !any.exact.empty() || !any.prefix.empty()) {
    any_host_ = make_bucket(any);
  }
  build_exact_.clear();
  build_wildcard_.clear();
  build_any_ = BuildBucket();
}

void RouteIndex::collect(const Bucket& b, const RequestContext& ctx, Lists& lists) const {
  lists.push(b.any_path);
  if (!ctx.path_ok) return;
  std::string_view path = ctx.path;
  if (b.large == StringTable::kAbsent) {
    for (std::uint32_t i = b.exact.begin; i < b.exact.end; ++i) {
      if (path == pattern(entries_[i])) lists.push(entries_[i].ordinals);
    }
    for (std::uint32_t i = b.prefix.begin; i < b.prefix.end; ++i) {
      if (path.starts_with(pattern(entries_[i]))) lists.push(entries_[i].ordinals);
    }
    return;
  }
  const LargeBucket& large = large_[b.large];
  if (std::uint32_t i = large.exact.find(path); i != StringTable::kAbsent) {
    lists.push(entries_[i].ordinals);
  }
  for (std::uint32_t len : large.prefix_lengths) {
    if (len > path.size()) break;
    if (std::uint32_t i = large.prefix.find(path.substr(0, len)); i != StringTable::kAbsent) {
      lists.push(entries_[i].ordinals);
    }
  }
}

}  // namespace switchyard::rules
