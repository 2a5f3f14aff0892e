// Admin API authentication: bearer tokens from files, compared by SHA-256 digest in constant
// time, and a limit on failed attempts per client address.
//
// Token files hold one `name:token` per line; `#` starts a comment line, blank lines are ignored.
// The name (letters, digits, `.`, `_`, `-`; at most 64) identifies the token in logs; the token
// is at least 16 and at most 4096 printable characters without spaces. Only digests are kept in
// memory after loading.
//
// Control-plane thread only (no locks).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace switchyard::proxy::admin {

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view data);

struct Token {
  std::string name;
  Digest digest{};
  bool read_only = false;
};

// Parses token file text (`file` names it in messages). Appends to `out`; returns the first
// problem as "FILE:LINE: message" (empty on success).
std::string parse_tokens(std::string_view text, const std::string& file, bool read_only,
                         std::vector<Token>& out);

class TokenStore {
 public:
  // Reads admin.token_file and admin.read_only_token_file (if set). On error returns a message
  // and leaves the store unchanged.
  std::string load(const config::Admin& admin);
  // Checks without changing anything (a reload's first phase).
  static std::string check(const config::Admin& admin, std::vector<Token>* tokens = nullptr);
  void set(std::vector<Token> tokens) { tokens_ = std::move(tokens); }

  // The token whose digest matches SHA-256(presented), or null. Every stored digest is compared
  // (CRYPTO_memcmp), whichever matches, so the time taken does not depend on the tokens.
  const Token* verify(std::string_view presented) const;
  std::size_t size() const { return tokens_.size(); }

 private:
  std::vector<Token> tokens_;
};

// Failed attempts per client address, as a token bucket: `burst` failures in a row are allowed,
// then one more per `refill`; a client over the limit is refused (429) without its token being
// checked. Bounded: at most kMaxClients addresses are tracked (the oldest entries go first).
class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit FailureLimiter(unsigned burst = 10, Clock::duration refill = std::chrono::seconds(6))
      : burst_(burst), refill_(refill) {}

  // Whether `client` may try to authenticate now; if not, `retry_after` is set (seconds).
  bool allowed(const std::string& client, Clock::time_point now, unsigned& retry_after);
  void failed(const std::string& client, Clock::time_point now);

  static constexpr std::size_t kMaxClients = 4096;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated{};
  };
  void refill(Bucket& b, Clock::time_point now) const;

  unsigned burst_;
  Clock::duration refill_;
  std::map<std::string, Bucket> buckets_;
};

}  // namespace switchyard::proxy::admin
