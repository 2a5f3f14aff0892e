// Source-address persistence shared by all workers (IPVS `-p`): which server a client (or a
// client network, after the netmask) was sent to, until it has been idle for the timeout.
//
// A fixed-size open-addressed table of 64-bit words, each {32-bit key tag, 8-bit server,
// 24-bit expiry in seconds}, read and written with single-word atomics: no locks, and a hit on a
// fresh entry is a plain load. Entries are refreshed only when less than half their timeout is
// left, so a busy client costs one shared write per timeout/2, not one per request.
//
// Two workers inserting the same new client at once may pick different servers; the first CAS
// wins and the loser adopts the winner's server. Tags are 32-bit hashes: two clients whose tags
// collide share a server, which is harmless. A full probe window evicts the entry closest to
// expiry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace switchyard::upstream {

class PersistenceTable {
 public:
  static constexpr std::size_t kDefaultSlots = 1u << 16;  // must be a power of two
  static constexpr int kProbe = 8;

  explicit PersistenceTable(std::size_t slots = kDefaultSlots);

  // The server remembered for `key` if its entry has not expired at `now_s` (seconds on a
  // monotonic clock); -1 otherwise. Refreshes the entry when less than timeout/2 is left.
  int lookup(std::uint64_t key, std::uint32_t now_s, std::uint32_t timeout_s);
  // Remembers `server` for `key` (or returns the server another worker stored first).
  int remember(std::uint64_t key, int server, std::uint32_t now_s, std::uint32_t timeout_s);
  // Forgets `key` (its server is gone or unavailable).
  void forget(std::uint64_t key);
  // Drops every entry naming `server` (it left the pool). Control plane; slow.
  void forget_server(int server);

 private:
  std::size_t slots_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> table_;
};

// Seconds on the steady clock, the time base of PersistenceTable.
inline std::uint32_t steady_seconds(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

}  // namespace switchyard::upstream
