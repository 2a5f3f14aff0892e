// A read-mostly open-addressing hash table from strings to small integers, for the route index:
// one probe usually touches one slot and one key, where std::unordered_map chases a bucket
// pointer, a node and the key (which showed up as the top cost with 10,000 hosts). Keys are
// copied into one contiguous arena. Internal to src/rules.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "rules/hash.h"

namespace switchyard::rules {

// Word-at-a-time hash for in-process tables only (not stable across versions, unlike
// stable_hash). The keys come from the configuration, so request data cannot flood a chain.
inline std::uint64_t fast_hash(std::string_view s) {
  std::uint64_t h = s.size() * 0x9e3779b97f4a7c15ull;
  const char* p = s.data();
  std::size_t n = s.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
  }
  return mix64(h);
}

class StringTable {
 public:
  static constexpr std::uint32_t kAbsent = UINT32_MAX;

  // Maps `key` to `value` (< kAbsent), replacing an earlier value. Build time only.
  void insert(std::string_view key, std::uint32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    std::uint64_t h = fast_hash(key);
    Slot* s = probe(key, h);
    if (s->value == kAbsent) {
      s->hash = h;
      s->offset = static_cast<std::uint32_t>(keys_.size());
      s->length = static_cast<std::uint32_t>(key.size());
      keys_.append(key);
      ++size_;
    }
    s->value = value;
  }

  // The value of `key`, or kAbsent.
  std::uint32_t find(std::string_view key) const {
    if (size_ == 0) return kAbsent;
    std::uint64_t h = fast_hash(key);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value == kAbsent) return kAbsent;
      if (s.hash == h && s.length == key.size() &&
          std::memcmp(keys_.data() + s.offset, key.data(), key.size()) == 0) {
        return s.value;
      }
    }
  }

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::uint32_t value = kAbsent;
  };

  Slot* probe(std::string_view key, std::uint64_t h) {
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.value == kAbsent) return &s;
      if (s.hash == h && s.length == key.size() &&
          std::memcmp(keys_.data() + s.offset, key.data(), key.size()) == 0) {
        return &s;
      }
    }
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot());
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.value == kAbsent) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].value != kAbsent) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::string keys_;
};

}  // namespace switchyard::rules
