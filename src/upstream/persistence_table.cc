#include "upstream/persistence_table.h"

namespace switchyard::upstream {
namespace {

// Word layout: tag (32) | server (8) | expiry (24). 0 = empty slot (tags are never 0).
constexpr std::uint64_t kExpiryMask = (1u << 24) - 1;

std::uint32_t tag_of(std::uint64_t key) {
  return static_cast<std::uint32_t>(key >> 32) | 1u;
}

std::uint64_t make_word(std::uint32_t tag, int server, std::uint32_t expiry) {
  return std::uint64_t{tag} << 32 | std::uint64_t(static_cast<std::uint8_t>(server)) << 24 |
         (expiry & kExpiryMask);
}

std::uint32_t word_tag(std::uint64_t w) {
  return static_cast<std::uint32_t>(w >> 32);
}
int word_server(std::uint64_t w) {
  return static_cast<int>((w >> 24) & 0xff);
}

// Seconds until the entry expires, as a signed 24-bit difference (expiry wraps every 194 days;
// timeouts are far shorter). <= 0: expired.
std::int32_t remaining(std::uint64_t w, std::uint32_t now_s) {
  std::uint32_t diff = (static_cast<std::uint32_t>(w) - now_s) & kExpiryMask;
  return static_cast<std::int32_t>(diff << 8) >> 8;
}

}  // namespace

PersistenceTable::PersistenceTable(std::size_t slots)
    : slots_(slots), table_(std::make_unique<std::atomic<std::uint64_t>[]>(slots)) {
  for (std::size_t i = 0; i < slots_; ++i) table_[i].store(0, std::memory_order_relaxed);
}

int PersistenceTable::lookup(std::uint64_t key, std::uint32_t now_s, std::uint32_t timeout_s) {
  std::uint32_t tag = tag_of(key);
  std::size_t base = static_cast<std::size_t>(key) & (slots_ - 1);
  for (int i = 0; i < kProbe; ++i) {
    std::atomic<std::uint64_t>& slot = table_[(base + i) & (slots_ - 1)];
    std::uint64_t w = slot.load(std::memory_order_relaxed);
    if (w == 0 || word_tag(w) != tag) continue;
    std::int32_t left = remaining(w, now_s);
    if (left <= 0) return -1;
    if (static_cast<std::uint32_t>(left) < timeout_s / 2) {
      // Refresh; losing the race to another refresh (or an eviction) is fine.
      slot.compare_exchange_strong(w, make_word(tag, word_server(w), now_s + timeout_s),
                                   std::memory_order_relaxed);
    }
    return word_server(w);
  }
  return -1;
}

int PersistenceTable::remember(std::uint64_t key, int server, std::uint32_t now_s,
                               std::uint32_t timeout_s) {
  std::uint32_t tag = tag_of(key);
  std::uint64_t word = make_word(tag, server, now_s + timeout_s);
  std::size_t base = static_cast<std::size_t>(key) & (slots_ - 1);
  for (int attempt = 0; attempt < 4; ++attempt) {
    // Prefer this key's own (expired or live) entry, then an empty or expired slot, then the
    // entry closest to expiry.
    std::atomic<std::uint64_t>* victim = nullptr;
    std::uint64_t victim_word = 0;
    std::int32_t victim_left = 0;
    for (int i = 0; i < kProbe; ++i) {
      std::atomic<std::uint64_t>& slot = table_[(base + i) & (slots_ - 1)];
      std::uint64_t w = slot.load(std::memory_order_relaxed);
      if (w != 0 && word_tag(w) == tag) {
        if (remaining(w, now_s) > 0 && word_server(w) != server) {
          // Another worker stored this client first; it wins.
          return word_server(w);
        }
        victim = &slot;
        victim_word = w;
        break;
      }
      std::int32_t left = w == 0 ? INT32_MIN : remaining(w, now_s);
      if (!victim || left < victim_left) {
        victim = &slot;
        victim_word = w;
        victim_left = left;
      }
    }
    if (victim->compare_exchange_strong(victim_word, word, std::memory_order_relaxed)) {
      return server;
    }
  }
  return server;  // heavy contention on this window: serve without remembering
}

void PersistenceTable::forget(std::uint64_t key) {
  std::uint32_t tag = tag_of(key);
  std::size_t base = static_cast<std::size_t>(key) & (slots_ - 1);
  for (int i = 0; i < kProbe; ++i) {
    std::atomic<std::uint64_t>& slot = table_[(base + i) & (slots_ - 1)];
    std::uint64_t w = slot.load(std::memory_order_relaxed);
    if (w != 0 && word_tag(w) == tag) slot.compare_exchange_strong(w, 0, std::memory_order_relaxed);
  }
}

void PersistenceTable::forget_server(int server) {
  for (std::size_t i = 0; i < slots_; ++i) {
    std::uint64_t w = table_[i].load(std::memory_order_relaxed);
    if (w != 0 && word_server(w) == server) {
      table_[i].compare_exchange_strong(w, 0, std::memory_order_relaxed);
    }
  }
}

}  // namespace switchyard::upstream
