#include "proxy/admin/auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace switchyard::proxy::admin {
namespace {

constexpr std::size_t kMinTokenLength = 16;
constexpr std::size_t kMaxTokenLength = 4096;
constexpr std::size_t kMaxNameLength = 64;

bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string read_file(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read token file {}: {}", path, std::strerror(errno));
    return {};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Digest sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

std::string parse_tokens(std::string_view text, const std::string& file, bool read_only,
                         std::vector<Token>& out) {
  std::size_t before = out.size();
  int line_no = 0;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return fmt::format("{}:{}: expected name:token", file, line_no);
    }
    std::string_view name = trim(line.substr(0, colon));
    std::string_view token = trim(line.substr(colon + 1));
    if (name.empty() || name.size() > kMaxNameLength ||
        !std::all_of(name.begin(), name.end(), name_char)) {
      return fmt::format("{}:{}: token name must be 1 to {} letters, digits, '.', '_' or '-'", file,
                         line_no, kMaxNameLength);
    }
    if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength) {
      return fmt::format("{}:{}: token of '{}' must be {} to {} characters long", file, line_no,
                         name, kMinTokenLength, kMaxTokenLength);
    }
    for (char c : token) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) {
        return fmt::format("{}:{}: token of '{}' contains a space or control character", file,
                           line_no, name);
      }
    }
    for (const Token& t : out) {
      if (t.name == name) {
        return fmt::format("{}:{}: token name '{}' is used twice", file, line_no, name);
      }
    }
    Token t{std::string(name), sha256(token), read_only};
    for (const Token& other : out) {
      if (other.digest == t.digest) {
        return fmt::format("{}:{}: token of '{}' is the same as the token of '{}'", file, line_no,
                           name, other.name);
      }
    }
    out.push_back(std::move(t));
  }
  if (out.size() == before) return fmt::format("{}: no tokens (expected name:token lines)", file);
  return {};
}

std::string TokenStore::check(const config::Admin& admin, std::vector<Token>* tokens) {
  std::vector<Token> all;
  for (auto [path, read_only] :
       {std::pair{&admin.token_file, false}, std::pair{&admin.read_only_token_file, true}}) {
    if (path->empty()) continue;
    std::string err;
    std::string text = read_file(*path, err);
    if (!err.empty()) return err;
    if (std::string e = parse_tokens(text, *path, read_only, all); !e.empty()) return e;
  }
  if (tokens) *tokens = std::move(all);
  return {};
}

std::string TokenStore::load(const config::Admin& admin) {
  std::vector<Token> tokens;
  if (std::string err = check(admin, &tokens); !err.empty()) return err;
  tokens_ = std::move(tokens);
  return {};
}

const Token* TokenStore::verify(std::string_view presented) const {
  Digest d = sha256(presented);
  const Token* match = nullptr;
  for (const Token& t : tokens_) {
    // No early exit: every digest is compared.
    bool equal = CRYPTO_memcmp(d.data(), t.digest.data(), d.size()) == 0;
    if (equal) match = &t;
  }
  return match;
}

void FailureLimiter::refill(Bucket& b, Clock::time_point now) const {
  if (now > b.updated && refill_.count() > 0) {
    double add =
        std::chrono::duration<double>(now - b.updated) / std::chrono::duration<double>(refill_);
    b.tokens = std::min<double>(burst_, b.tokens + add);
  }
  b.updated = now;
}

bool FailureLimiter::allowed(const std::string& client, Clock::time_point now,
                             unsigned& retry_after) {
  auto it = buckets_.find(client);
  if (it == buckets_.end()) return true;
  refill(it->second, now);
  if (it->second.tokens >= 1) {
    if (it->second.tokens >= burst_) buckets_.erase(it);  // back to a clean slate
    return true;
  }
  double wait = (1 - it->second.tokens) * std::chrono::duration<double>(refill_).count();
  retry_after = static_cast<unsigned>(wait) + 1;
  return false;
}

void FailureLimiter::failed(const std::string& client, Clock::time_point now) {
  auto it = buckets_.find(client);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxClients) {
      // Forget the entry updated longest ago.
      auto oldest = buckets_.begin();
      for (auto i = buckets_.begin(); i != buckets_.end(); ++i) {
        if (i->second.updated < oldest->second.updated) oldest = i;
      }
      buckets_.erase(oldest);
    }
    it = buckets_.emplace(client, Bucket{static_cast<double>(burst_), now}).first;
  }
  refill(it->second, now);
  it->second.tokens = std::max(0.0, it->second.tokens - 1);
}

}  // namespace switchyard::proxy::admin
