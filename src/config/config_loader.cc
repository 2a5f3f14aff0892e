#include "config/config_loader.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <re2/re2.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "handoff/key_file.h"
#include "l4/abi/l4_abi.h"   // map sizes that bound the l4 section
#include "rules/rule_set.h"  // normalize_path
#include "rules/uri_chars.h"
#include "tls/tls_check.h"
#include "upstream/scheduler.h"  // the scheduler registry

namespace switchyard::config {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema: which keys each section accepts. Sections whose values are all of one kind are tables
// of {key, where it goes}, so adding a directive there is a one-line change and the list of
// allowed keys (used for "unknown key" messages) cannot drift from what is actually read.
// Keep docs/configuration.md in step with this block; its test checks the key lists.

constexpr std::string_view kTopLevelKeys[] = {"workers",    "access_log", "limits", "timeouts",
                                              "forwarding", "listeners",  "routes", "pools",
                                              "admin",      "l4",         "splice", "handoff"};
constexpr std::string_view kHandoffKeys[] = {"key_file", "timeout"};
constexpr std::string_view kAccessLogKeys[] = {"enabled", "format", "path"};
// `splice:` (all kernel forwarding paths share this block; see read_splice).
constexpr std::string_view kSpliceKeys[] = {"bodies",  "min_body", "pipe_size",
                                            "sockmap", "tunnels",  "notsent_lowat"};
constexpr std::string_view kTunnelEngines[] = {"splice", "copy"};
constexpr std::string_view kListenerKeys[] = {"name", "bind", "mode",      "routes",
                                              "pool", "tls",  "websocket", "sni"};
constexpr std::string_view kRequiredListenerKeys[] = {"name", "bind"};
constexpr std::string_view kListenerModes[] = {"http", "tcp"};
constexpr std::string_view kTlsKeys[] = {"certificates",  "min_version",     "max_version",
                                         "ciphers",       "ciphersuites",    "groups",
                                         "alpn",          "session_tickets", "ticket_rotation",
                                         "session_cache", "client_ca",       "verify_client"};
constexpr std::string_view kTlsCertificateKeys[] = {"cert", "key"};
constexpr std::string_view kTlsVersions[] = {"TLSv1.2", "TLSv1.3"};
constexpr std::string_view kVerifyModes[] = {"none", "optional", "required"};
constexpr std::string_view kRouteKeys[] = {
    "match",    "pool",    "split",           "redirect",         "respond",
    "goto",     "sticky",  "request_headers", "response_headers", "rewrite",
    "fallback", "handoff", "connect",         "per_connection"};
constexpr std::string_view kConnectKeys[] = {"ports"};
// The actions of a route, of which it has exactly one, in the order messages list them.
constexpr std::string_view kRouteActions[] = {"pool", "split", "redirect", "respond", "goto"};
constexpr std::string_view kRespondKeys[] = {"status", "headers", "body"};
constexpr std::string_view kMatchKeys[] = {"host",   "path",   "path_prefix", "path_regex",
                                           "method", "header", "query",       "cookie",
                                           "source", "all",    "any",         "not"};
constexpr std::string_view kValueTestKeys[] = {"present", "exact", "regex"};
constexpr std::string_view kSplitEntryKeys[] = {"pool", "weight"};
constexpr std::string_view kStickyKeys[] = {"cookie", "header"};
constexpr std::string_view kRedirectKeys[] = {"status", "scheme", "host", "path", "query"};
constexpr std::string_view kHeaderEditKeys[] = {"set", "add", "remove"};
constexpr std::string_view kRewriteKeys[] = {"path_prefix", "path_regex"};
constexpr std::string_view kRewritePrefixKeys[] = {"from", "to"};
constexpr std::string_view kRewriteRegexKeys[] = {"pattern", "replace"};
constexpr std::string_view kRouteFallbackKeys[] = {"pool", "respond"};

constexpr int kRedirectStatuses[] = {301, 302, 303, 307, 308};
constexpr std::string_view kRedirectPlaceholders[] = {"{scheme}", "{host}", "{path}", "{query}"};
constexpr int kMaxSplitWeight = 1000;
// Hop-by-hop and framing headers: the proxy writes these itself, so a header edit must not.
constexpr std::string_view kUneditableHeaders[] = {
    "connection", "keep-alive", "proxy-connection",  "te",
    "trailer",    "upgrade",    "transfer-encoding", "content-length"};
// Removing these would leave a message the proxy could not frame.
constexpr std::string_view kUnremovableHeaders[] = {"content-length", "transfer-encoding"};
constexpr std::size_t kMaxServersPerPool = 64;
constexpr std::string_view kPoolKeys[] = {"scheduler",
                                          "hash",
                                          "fallback",
                                          "max_idle_per_server",
                                          "retries",
                                          "connect_timeout",
                                          "response_timeout",
                                          "queue",
                                          "persistence",
                                          "health",
                                          "outlier",
                                          "servers",
                                          "tls"};
constexpr std::string_view kTlsUpstreamKeys[] = {"verify", "ca", "server_name", "cert", "key"};
constexpr std::string_view kServerKeys[] = {
    "address", "weight", "max_connections", "drain", "backup", "maintenance", "agent"};
// `hash` is one of these words or a map with one of kHashKeys.
constexpr std::string_view kHashWords[] = {"source", "source_port", "url"};
constexpr std::string_view kHashKeys[] = {"header", "cookie"};
constexpr std::string_view kQueueKeys[] = {"size", "timeout"};
constexpr std::string_view kPersistenceKeys[] = {"source", "cookie"};
constexpr std::string_view kSourcePersistenceKeys[] = {"timeout", "netmask", "netmask_v6"};
constexpr std::string_view kCookiePersistenceKeys[] = {"name"};
constexpr std::string_view kHealthKeys[] = {"http", "tcp",  "interval", "timeout",
                                            "rise", "fall", "jitter"};
// The kinds of check, of which a health map has exactly one.
constexpr std::string_view kHealthKinds[] = {"http", "tcp"};
constexpr std::string_view kHealthHttpKeys[] = {"method", "path", "host", "expect", "body"};
constexpr std::string_view kOutlierKeys[] = {"consecutive_failures", "count_5xx", "base_ejection",
                                             "max_ejection"};
constexpr std::string_view kAdminKeys[] = {"bind", "token_file", "read_only_token_file", "tls",
                                           "metrics_bind"};
constexpr std::string_view kAdminTlsKeys[] = {"cert", "key"};

// l4: the kernel fast path.
constexpr std::string_view kL4Keys[] = {"interfaces", "xdp_mode", "pin_path", "connections",
                                        "services"};
constexpr std::string_view kL4XdpModes[] = {"auto", "native", "generic"};
constexpr std::string_view kL4ConnectionKeys[] = {"size", "tcp_timeout", "tcp_fin_timeout",
                                                  "udp_timeout"};
constexpr std::string_view kL4ServiceKeys[] = {"name",    "vip",    "protocol", "scheduler",
                                               "hash",    "mode",   "on_down",  "health",
                                               "handoff", "servers"};
constexpr std::string_view kL4ServerKeys[] = {"address", "weight", "mode"};
constexpr std::string_view kL4Modes[] = {"nat", "dr", "tun"};
// The schedulers the data path implements (src/l4/ctl/sched_rows.h turns each into a row).
constexpr std::string_view kL4Schedulers[] = {"rr", "wrr", "lc", "wlc", "sh", "dh", "mh"};
constexpr int kMinL4Connections = 1024;
constexpr int kMaxL4Connections = 64 * 1024 * 1024;

constexpr std::string_view kProxyOwnedHeaders[] = {"content-length", "transfer-encoding",
                                                   "connection"};

struct LimitField {
  std::string_view key;
  bool is_size;  // accepts "16KiB"-style sizes, otherwise a plain count
  std::uint64_t min;
  std::uint64_t max;
  void (*set)(Limits&, std::uint64_t);
};

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

constexpr LimitField kLimitFields[] = {
    // A header buffer is allocated per connection, so a typo like 16GiB must not get through;
    // below 64 bytes not even a minimal request head fits.
    {"max_header_bytes", true, 64, kMiB,
     [](Limits& l, std::uint64_t v) { l.max_header_bytes = static_cast<std::size_t>(v); }},
    {"max_header_count", false, 1, 10000,
     [](Limits& l, std::uint64_t v) { l.max_header_count = static_cast<std::uint32_t>(v); }},
    {"max_body_bytes", true, 0, std::numeric_limits<std::uint64_t>::max(),
     [](Limits& l, std::uint64_t v) { l.max_body_bytes = v; }},
    {"max_connections", false, 1, 1000000,
     [](Limits& l, std::uint64_t v) { l.max_connections = static_cast<std::uint32_t>(v); }},
};

struct TimeoutField {
  std::string_view key;
  Millis Timeouts::*member;
};

constexpr TimeoutField kTimeoutFields[] = {
    {"client_header", &Timeouts::client_header},
    {"client_idle", &Timeouts::client_idle},
    {"client_body", &Timeouts::client_body},
    {"upstream_connect", &Timeouts::upstream_connect},
    {"upstream_response", &Timeouts::upstream_response},
    {"upstream_idle", &Timeouts::upstream_idle},
    {"shutdown", &Timeouts::shutdown},
    {"tunnel_idle", &Timeouts::tunnel_idle},
};

struct ForwardingField {
  std::string_view key;
  bool Forwarding::*member;
};

constexpr ForwardingField kForwardingFields[] = {
    {"x_forwarded_for", &Forwarding::x_forwarded_for},
    {"x_forwarded_proto", &Forwarding::x_forwarded_proto},
    {"via", &Forwarding::via},
};

template <typename Field, std::size_t N>
constexpr std::array<std::string_view, N> keys_of(const Field (&fields)[N]) {
  std::array<std::string_view, N> keys{};
  for (std::size_t i = 0; i < N; ++i) keys[i] = fields[i].key;
  return keys;
}

constexpr auto kLimitKeys = keys_of(kLimitFields);
constexpr auto kTimeoutKeys = keys_of(kTimeoutFields);
constexpr auto kForwardingKeys = keys_of(kForwardingFields);

constexpr int kMinWorkers = 0;
constexpr int kMaxWorkers = 1024;
constexpr int kMinWeight = 0;
constexpr int kMaxWeight = 256;
constexpr int kMaxIdlePerServer = 65536;
constexpr int kMaxServerConnections = 1000000;
constexpr int kMaxRetries = 10;
constexpr int kMaxQueueSize = 100000;
constexpr int kMaxHealthCount = 100;  // rise, fall
constexpr int kMaxJitterPercent = 50;
constexpr int kMaxConsecutiveFailures = 1000;
// Checks more often than this would load the servers more than the traffic does.
constexpr Millis kMinHealthInterval{10};
// Persistence entries outlive requests by design, so they may be longer than any timeout; the cap
// (30 days) still catches unit mistakes.
constexpr Millis kMinPersistenceTimeout{1000};
constexpr Millis kMaxPersistenceTimeout = std::chrono::hours(30 * 24);
// Longer timeouts are almost certainly unit mistakes ("60m" for "60s"), and the cap keeps
// deadline arithmetic on steady_clock far away from overflow.
constexpr Millis kMaxTimeout = std::chrono::hours(24);

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += ", ";
    out += words[i];
  }
  return out;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// Optimal string alignment distance: like Levenshtein, but a swap of two neighbours ("rotues")
// counts as one edit, which is the most common typo in hand-written keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
          ascii_lower(a[i - 2]) == ascii_lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// The closest candidate within two edits, or nothing. Short candidates need a closer match so
// that "x" is not "corrected" to "rr".
std::optional<std::string_view> closest(std::string_view word,
                                        std::span<const std::string_view> candidates) {
  std::optional<std::string_view> best;
  std::size_t best_distance = 3;
  for (std::string_view candidate : candidates) {
    const std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string format_size(std::uint64_t bytes) {
  if (bytes != 0 && bytes % kGiB == 0) return fmt::format("{}GiB", bytes / kGiB);
  if (bytes != 0 && bytes % kMiB == 0) return fmt::format("{}MiB", bytes / kMiB);
  if (bytes != 0 && bytes % kKiB == 0) return fmt::format("{}KiB", bytes / kKiB);
  return fmt::format("{}", bytes);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Splits "16 KiB" into ("16", "KiB"); the space is optional.
std::pair<std::string_view, std::string_view> split_number(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  std::string_view number = s.substr(0, i);
  std::string_view unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return {number, unit};
}

struct SizeUnit {
  std::string_view name;
  std::uint64_t factor;
};

constexpr SizeUnit kSizeUnits[] = {
    {"B", 1},     {"K", kKiB},   {"KB", kKiB}, {"KiB", kKiB}, {"M", kMiB},
    {"MB", kMiB}, {"MiB", kMiB}, {"G", kGiB},  {"GB", kGiB},  {"GiB", kGiB},
};

constexpr std::string_view kSizeHint =
    "expected a byte count or a whole number with unit B, K, KB, KiB, M, MB, MiB, G, GB or GiB, "
    "e.g. 16KiB";

// Parses a size; on failure returns nothing and sets `error`.
std::optional<std::uint64_t> parse_size(std::string_view text, std::string& error) {
  auto [number, unit] = split_number(text);
  std::uint64_t factor = 0;
  if (unit.empty()) {
    factor = 1;
  } else {
    for (const SizeUnit& u : kSizeUnits) {
      if (iequals(unit, u.name)) factor = u.factor;
    }
  }
  if (number.empty() || factor == 0) {
    error = fmt::format("invalid size '{}': {}", text, kSizeHint);
    return std::nullopt;
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || value > std::numeric_limits<std::uint64_t>::max() / factor) {
    error = fmt::format("size '{}' is too large", text);
    return std::nullopt;
  }
  return value * factor;
}

struct DurationUnit {
  std::string_view name;
  std::int64_t millis;
};

constexpr DurationUnit kDurationUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};

// "24h", "5m", "1500ms": the largest unit that writes `d` exactly.
std::string format_duration(Millis d) {
  for (auto u = std::rbegin(kDurationUnits); u != std::rend(kDurationUnits); ++u) {
    if (d.count() % u->millis == 0) return fmt::format("{}{}", d.count() / u->millis, u->name);
  }
  return fmt::format("{}ms", d.count());
}

std::optional<Millis> parse_duration(std::string_view text, std::string& error, Millis max) {
  // A bare number is rejected rather than guessed: nginx reads it as seconds, HAProxy as
  // milliseconds, and operators coming from either would be silently wrong by 1000x.
  if (all_digits(text)) {
    error = "duration needs a unit, e.g. 10s";
    return std::nullopt;
  }
  auto [number, unit] = split_number(text);
  std::int64_t factor = 0;
  for (const DurationUnit& u : kDurationUnits) {
    if (unit == u.name) factor = u.millis;
  }
  if (number.empty() || factor == 0) {
    error = fmt::format(
        "invalid duration '{}': expected a whole number with unit ms, s, m or h, e.g. 10s", text);
    return std::nullopt;
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || value > max.count() / factor) {
    error = fmt::format("duration '{}' is too long; the maximum is {}", text, format_duration(max));
    return std::nullopt;
  }
  return Millis(value * factor);
}

// RFC 9110 token characters, the only ones allowed in a header field name.
bool is_token(std::string_view s) {
  constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

// What a header value written on a header line must not contain (RFC 9110 §5.5: no control
// characters but HTAB), named for the message; null when the value is fine. CR or LF would end
// the line and inject fields; other control characters make a message clients refuse (found by
// tests/fuzz/config_fuzz.cc).
const char* bad_field_value(std::string_view v) {
  if (v.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return "CR, LF or NUL";
  }
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return "control characters";
  }
  return nullptr;
}

// Two binds conflict only if they are the same address and a fixed port; port 0 asks the kernel
// for a fresh port each time and never collides.
std::optional<std::string> bind_key(const SocketAddress& a) {
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
    if (in->sin_port == 0) return std::nullopt;
    return fmt::format("4/{}/{}", in->sin_addr.s_addr, ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
  if (in6->sin6_port == 0) return std::nullopt;
  return fmt::format("6/{}/{}",
                     std::string_view(reinterpret_cast<const char*>(&in6->sin6_addr), 16),
                     ntohs(in6->sin6_port));
}

int port_of(const SocketAddress& a) {
  if (a.family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

// ---------------------------------------------------------------------------------------------
// Routing language helpers: pure checks on single values, each returning an error message
// (empty when the value is fine) so that the Loader decides where to point at it.

bool contains(std::span<const std::string_view> list, std::string_view word) {
  return std::find(list.begin(), list.end(), word) != list.end();
}

bool icontains(std::span<const std::string_view> list, std::string_view word) {
  return std::any_of(list.begin(), list.end(),
                     [&](std::string_view w) { return iequals(w, word); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// A character for a message: itself if printable, else \xHH.
std::string shown_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte > 0x20 && byte < 0x7f) return std::string(1, c);
  return fmt::format("\\x{:02X}", byte);
}

// Characters a request path may contain literally (RFC 3986 pchar and "/"; "%" starts an escape).
bool is_path_char(char c) {
  constexpr std::string_view kOthers = "!$&'()*+,;=:@/%";
  return rules::is_unreserved(static_cast<unsigned char>(c)) ||
         kOthers.find(c) != std::string_view::npos;
}

// A `path` or `path_prefix` pattern: compared against normalised request paths, so it must be in
// normalised form itself or it could never match.
std::string check_path_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern.front() != '/') {
    return fmt::format("path pattern '{}' must start with '/'", pattern);
  }
  if (pattern.find('?') != std::string_view::npos) {
    return fmt::format(
        "path pattern '{}' must not contain '?': the query is not part of the path; match it "
        "with query",
        pattern);
  }
  for (char c : pattern) {
    if (!is_path_char(c)) {
      return fmt::format("path pattern '{}' contains '{}'; write it percent-encoded as %{:02X}",
                         pattern, shown_char(c), static_cast<unsigned char>(c));
    }
  }
  // The matcher's own normalisation, so a pattern is accepted exactly when it can match.
  std::string normalised;
  if (!rules::normalize_path(pattern, normalised)) {
    return fmt::format(
        "path pattern '{}' has a malformed percent-escape; '%' must be followed "
        "by two hex digits",
        pattern);
  }
  if (normalised != pattern) {
    return fmt::format("path pattern is not normalised; did you mean '{}'?", normalised);
  }
  return {};
}

// A `host` pattern as written (the loader stores it lower-cased): "example.com", "*.example.com"
// or a bracketed IPv6 literal. Hosts are compared without their port.
std::string check_host_pattern(std::string_view host) {
  if (host.empty()) return "host pattern must not be empty";
  if (host == "*") return "host pattern '*' matches every host; leave out host instead";
  if (host.front() == '[') {
    const std::size_t close = host.find(']');
    if (close != std::string_view::npos && close + 1 < host.size()) {
      return fmt::format(
          "host pattern '{}' must not include a port; ports are ignored when "
          "matching hosts",
          host);
    }
    in6_addr address{};
    const std::string literal(host.substr(1, close == std::string_view::npos ? 0 : close - 1));
    if (close == std::string_view::npos || inet_pton(AF_INET6, literal.c_str(), &address) != 1) {
      return fmt::format("invalid host pattern '{}': expected a name or a bracketed IPv6 address",
                         host);
    }
    return {};
  }
  if (host.find(':') != std::string_view::npos) {
    return fmt::format(
        "host pattern '{}' must not include a port; ports are ignored when matching hosts", host);
  }
  std::string_view name = host;
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (name.find('*') != std::string_view::npos) {
    return fmt::format("invalid host pattern '{}': '*' is only allowed as a leading '*.'", host);
  }
  if (name.empty()) return fmt::format("invalid host pattern '{}': no name after '*.'", host);
  if (name.ends_with('.')) {
    // Request hosts are compared without their trailing dot, so this could never match.
    std::string_view without = host;
    while (without.ends_with('.')) without.remove_suffix(1);
    return fmt::format("host pattern '{}' must not end with '.'; did you mean '{}'?", host,
                       without);
  }
  for (char c : name) {
    const char l = ascii_lower(c);  // matched case-insensitively
    if (!((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '-' || l == '.' || l == '_')) {
      return fmt::format("invalid character '{}' in host pattern '{}'", c, host);
    }
  }
  return {};
}

// "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128).
std::string parse_cidr(std::string_view text, Cidr& out) {
  Cidr cidr;
  cidr.text = std::string(text);
  const std::size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  if (inet_pton(AF_INET, address.c_str(), cidr.address) == 1) {
    cidr.family = AF_INET;
  } else if (inet_pton(AF_INET6, address.c_str(), cidr.address) == 1) {
    cidr.family = AF_INET6;
  } else {
    return fmt::format(
        "invalid source '{}': expected an IP address or a CIDR prefix, e.g. 10.0.0.0/8 or "
        "fd00::/8",
        text);
  }
  const int max_length = cidr.family == AF_INET ? 32 : 128;
  cidr.prefix_length = max_length;
  if (slash != std::string_view::npos) {
    const std::string_view length = text.substr(slash + 1);
    int n = -1;
    if (all_digits(length) && length.size() <= 3) {
      std::from_chars(length.data(), length.data() + length.size(), n);
    }
    if (n < 0 || n > max_length) {
      return fmt::format("invalid prefix length in '{}': expected 0..{}", text, max_length);
    }
    cidr.prefix_length = n;
  }
  // The network address: the same bytes with every bit past the prefix cleared.
  std::uint8_t network[16] = {};
  const int bytes = max_length / 8;
  for (int i = 0; i < bytes; ++i) {
    const int bits = std::clamp(cidr.prefix_length - i * 8, 0, 8);
    const auto mask = static_cast<std::uint8_t>(bits == 0 ? 0 : 0xFF << (8 - bits));
    network[i] = cidr.address[i] & mask;
  }
  if (std::memcmp(network, cidr.address, static_cast<std::size_t>(bytes)) != 0) {
    char buffer[INET6_ADDRSTRLEN] = {};
    inet_ntop(cidr.family, network, buffer, sizeof buffer);
    return fmt::format("{} has host bits set; did you mean {}/{}?", text, buffer,
                       cidr.prefix_length);
  }
  out = std::move(cidr);
  return {};
}

// A redirect part: literal text with {scheme}, {host}, {path} and {query} placeholders.
std::string check_template(std::string_view text, std::string_view part) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '}') return fmt::format("unmatched '}}' in redirect {}", part);
    if (text[i] != '{') continue;
    const std::size_t close = text.find('}', i);
    if (close == std::string_view::npos) return fmt::format("unmatched '{{' in redirect {}", part);
    const std::string_view placeholder = text.substr(i, close - i + 1);
    if (!contains(kRedirectPlaceholders, placeholder)) {
      return fmt::format("unknown placeholder '{}' in redirect {}; valid placeholders: {}",
                         placeholder, part, join(kRedirectPlaceholders));
    }
    i = close;
  }
  for (char c : text) {
    // The result goes into a Location header: CR or LF would end it and start another.
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return fmt::format("redirect {} must not contain spaces or control characters", part);
    }
  }
  return {};
}

// A rewrite replacement: \N refers to capture group N (0 = the whole match), \\ is a
// backslash, anything else is literal.
std::string check_replacement(std::string_view replace, int groups) {
  for (std::size_t i = 0; i < replace.size(); ++i) {
    if (replace[i] != '\\') continue;
    if (i + 1 == replace.size() ||
        !(replace[i + 1] == '\\' || (replace[i + 1] >= '0' && replace[i + 1] <= '9'))) {
      return "invalid escape in rewrite replace: '\\' must be followed by a digit or another "
             "'\\'";
    }
    ++i;
  }
  const int highest = RE2::MaxSubmatch(replace);
  if (highest > groups) {
    if (groups == 0) {
      return fmt::format("rewrite replace refers to \\{}, but the pattern has no capture groups",
                         highest);
    }
    return fmt::format("rewrite replace refers to \\{}, but the pattern has only {} capture {}",
                       highest, groups, groups == 1 ? "group" : "groups");
  }
  return {};
}

// A health check's request target: a path, perhaps with a query, and nothing that would end the
// request line.
std::string check_health_path(std::string_view path) {
  if (!path.starts_with('/')) {
    return fmt::format("health.http.path must start with '/', got '{}'", path);
  }
  for (char c : path) {
    if (!is_path_char(c) && c != '?') {
      return fmt::format("health.http.path contains '{}'; write it percent-encoded as %{:02X}",
                         shown_char(c), static_cast<unsigned char>(c));
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// YAML access with positions.

SourceMark mark_of(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

SourceMark mark_of(const YAML::Node& node) {
  return mark_of(node.Mark());
}

// Where each document of a YAML text starts, found by parsing it without building nodes.
// yaml-cpp 0.7's LoadAll never returns when a document-level token cannot start a node (a stray
// ',' as in "," or "[a], b"; found by fuzzing): its parser then returns without consuming the
// token, and LoadAll adds an empty document per turn until memory runs out, so `check` and a
// reload would hang. A document that starts where the previous one did is that loop.
struct DocumentStarts final : YAML::EventHandler {
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Null when yaml-cpp's LoadAll terminates on `yaml`; else the mark where it would loop.
std::optional<YAML::Mark> load_all_would_loop(std::string_view yaml) {
  std::istringstream stream{std::string(yaml)};
  YAML::Parser parser(stream);
  DocumentStarts starts;
  while (parser.HandleNextDocument(starts)) {
    std::size_t n = starts.marks.size();
    if (n >= 2 && starts.marks[n - 1].pos == starts.marks[n - 2].pos) return starts.marks[n - 1];
  }
  return std::nullopt;
}

// A YAML value and where to point at it. An empty value (`bind:`) has no useful mark of its own
// (yaml-cpp places it at the start of the next line), so messages about it point at its key.
struct Value {
  YAML::Node node;
  SourceMark mark;
};

Value value_under(const YAML::Node& key, const YAML::Node& node) {
  return {node, node.IsNull() ? mark_of(key) : mark_of(node)};
}

Value item_of(const YAML::Node& node) {
  return {node, mark_of(node)};
}

std::string kind_of(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar: {
      // Long enough to recognise the value, short enough to keep the message on one line.
      constexpr std::size_t kMaxShown = 40;
      const std::string& s = node.Scalar();
      if (s.size() <= kMaxShown) return fmt::format("'{}'", s);
      return fmt::format("'{}...'", s.substr(0, kMaxShown));
    }
    default:
      return "nothing";
  }
}

struct Field {
  std::string key;
  SourceMark key_mark;
  Value value;
};

// A map whose keys have been checked: no duplicates, no unknown keys, all scalars.
struct MapView {
  SourceMark mark;
  std::vector<Field> fields;  // document order

  const Value* get(std::string_view key) const {
    for (const Field& f : fields) {
      if (f.key == key) return &f.value;
    }
    return nullptr;
  }
  const Field* field(std::string_view key) const {
    for (const Field& f : fields) {
      if (f.key == key) return &f;
    }
    return nullptr;
  }
};

// A name used somewhere that must be defined elsewhere; checked once everything is read.
struct Reference {
  std::string name;
  SourceMark mark;
};

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  LoadResult run(std::string_view yaml);

 private:
  void error(SourceMark at, std::string message) {
    diagnostics_.push_back({file_, at.line, at.column, std::move(message)});
  }

  // `keys` empty = any key is allowed (maps keyed by user-chosen names).
  std::optional<MapView> open_map(const Value& v, std::string_view section,
                                  std::span<const std::string_view> keys);
  std::optional<MapView> open_named_map(const Value& v) { return open_map(v, {}, {}); }
  bool require(const MapView& map, std::string_view key, std::string_view what);

  bool expect_list(const Value& v);
  std::optional<std::string> read_string(const Value& v);
  std::optional<std::string> read_name(const Value& v, std::string_view what);
  std::optional<std::int64_t> read_int(const Value& v, std::string_view name, std::int64_t min,
                                       std::int64_t max);
  std::optional<bool> read_bool(const Value& v);
  std::optional<std::uint64_t> read_size(const Value& v, std::string_view name, std::uint64_t min,
                                         std::uint64_t max);
  std::optional<Millis> read_timeout(const Value& v, std::string_view name);
  std::optional<Millis> read_duration(const Value& v, std::string_view name, Millis min,
                                      Millis max);
  // The one field of a map that must have exactly one of `keys`; nothing (reported) otherwise.
  std::optional<Field> read_one_of(const Value& v, std::string_view section,
                                   std::span<const std::string_view> keys);
  std::optional<SocketAddress> read_address(const Value& v);

  void read_top_level(const Value& root);
  void read_access_log(const Value& v);
  void read_limits(const Value& v);
  void read_timeouts(const Value& v);
  void read_forwarding(const Value& v);
  void read_splice(const Value& v);
  void read_listeners(const Value& v);
  void read_listener(const Value& v);
  std::optional<TlsServer> read_tls(const Value& v);
  std::optional<TlsUpstream> read_tls_upstream(const Value& v);
  std::string resolve_path(const std::string& path) const;
  void read_route_tables(const Value& v);
  void read_route_table(const std::string& name, const Value& v);
  std::optional<Route> read_route(const std::string& table, const Value& v,
                                  bool& matches_everything);
  std::optional<Respond> read_respond(const Value& v);
  bool read_route_fallback(const Value& v, Route& route);

  // The routing language.
  struct Item {
    std::string text;
    SourceMark mark;
  };
  std::optional<std::vector<Item>> read_strings(const Value& v, std::string_view what);
  std::optional<std::string> read_regex(const Value& v, int* capture_groups = nullptr);
  std::optional<Match> read_match(const Value& v);
  std::optional<Match> read_matcher(const Field& f);
  std::optional<Match> read_value_tests(const Field& f, Match::Kind kind);
  std::optional<ValueTest> read_value_test(const Value& v, std::string_view what);
  std::optional<Split> read_split(const Value& v);
  bool read_sticky(const Value& v, Split& split);
  std::optional<Redirect> read_redirect(const Value& v);
  std::optional<HeaderEdits> read_header_edits(const Value& v, std::string_view section);
  std::optional<PathRewrite> read_rewrite(const Value& v);
  void check_gotos();
  void read_pools(const Value& v);
  void read_pool(const std::string& name, SourceMark mark, const Value& v);
  std::optional<Server> read_server(const Value& v);
  // Shared by pool and l4 servers: the error for an entry that is neither "ADDR:PORT" nor a map,
  // and the check that a server address (read from `where`) has a port.
  void not_a_server(const Value& v);
  bool has_server_port(const std::optional<SocketAddress>& address, const Value& where);
  std::optional<HashKey> read_hash(const Value& v);
  std::optional<Queue> read_queue(const Value& v);
  std::optional<Persistence> read_persistence(const Value& v);
  std::optional<HealthCheck> read_health(const Value& v);
  bool read_health_http(const Value& v, HealthCheck& health);
  std::optional<OutlierDetection> read_outlier(const Value& v);
  void read_admin(const Value& v);
  void read_l4(const Value& v);
  bool read_l4_connections(const Value& v, L4& l4);
  std::optional<L4Mode> read_l4_mode(const Value& v);
  std::optional<L4Service> read_l4_service(const Value& v);
  std::optional<L4Server> read_l4_server(const Value& v, L4Mode default_mode,
                                         const L4Service& service, bool vip_ok);

  void check_references();
  void read_handoff(const Value& v);
  // Routes marked `handoff` need the `handoff:` section and an agent on every server of their pool.
  void check_handoff_routes();
  void check_tunnel_pools();
  bool check_tcp_pool(const std::string& pool, const SourceMark& mark);
  bool read_listener_sni(const Value& v, Listener& listener);
  bool read_route_connect(const Value& v, Route& route);
  void check_reference(const Reference& ref, std::string_view what, std::string_view plural,
                       const std::vector<std::string>& defined);

  std::string file_;
  std::vector<Diagnostic> diagnostics_;
  Config config_;

  // Names defined even if their contents had errors, so one mistake inside a pool does not also
  // produce "unknown pool" at every route that uses it.
  std::vector<std::string> defined_tables_;
  std::vector<std::string> defined_pools_;
  std::vector<Reference> table_refs_;
  std::vector<Reference> pool_refs_;
  struct TunnelPoolRef {
    std::string pool;
    SourceMark mark;
    std::string_view what;
  };
  std::vector<TunnelPoolRef> tunnel_pool_refs_;

  // `goto` jumps between tables, for cycle detection once every table is read.
  struct GotoEdge {
    std::string from;
    std::string to;
    SourceMark mark;
  };
  std::vector<GotoEdge> gotos_;

  struct BindUse {
    std::string owner;  // "listener 'web'"
    int line;
  };
  std::map<std::string, BindUse> binds_;
  std::map<std::string, int> listener_names_;  // name -> line
};

std::optional<MapView> Loader::open_map(const Value& v, std::string_view section,
                                        std::span<const std::string_view> keys) {
  if (!v.node.IsMap()) {
    error(v.mark, fmt::format("expected a map, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  MapView map{v.mark, {}};
  std::map<std::string, int> seen;  // key -> line
  // Range-for rather than it->first: yaml-cpp's operator-> returns a temporary proxy, and a
  // reference into it dangles.
  for (const auto& entry : v.node) {
    const YAML::Node& key = entry.first;
    const SourceMark key_mark = mark_of(key);
    if (!key.IsScalar()) {
      error(key_mark, fmt::format("expected a name as key, got {}", kind_of(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    // yaml-cpp keeps both entries of a duplicated key and lookups see only the first, so the
    // second would be silently ignored.
    if (auto [prev, inserted] = seen.emplace(name, key_mark.line); !inserted) {
      error(key_mark, fmt::format("duplicate key '{}'; first set at line {}", name, prev->second));
      continue;
    }
    if (!keys.empty() && std::find(keys.begin(), keys.end(), name) == keys.end()) {
      if (auto suggestion = closest(name, keys)) {
        error(key_mark, fmt::format("unknown key '{}' in {}; did you mean '{}'?", name, section,
                                    *suggestion));
      } else {
        error(key_mark, fmt::format("unknown key '{}' in {}; expected one of: {}", name, section,
                                    join(keys)));
      }
      continue;
    }
    map.fields.push_back({name, key_mark, value_under(key, entry.second)});
  }
  return map;
}

bool Loader::require(const MapView& map, std::string_view key, std::string_view what) {
  if (map.get(key) != nullptr) return true;
  error(map.mark, fmt::format("{} is missing required key '{}'", what, key));
  return false;
}

bool Loader::expect_list(const Value& v) {
  if (v.node.IsSequence()) return true;
  error(v.mark, fmt::format("expected a list, got {}", kind_of(v.node)));
  return false;
}

std::optional<std::string> Loader::read_string(const Value& v) {
  if (!v.node.IsScalar()) {
    error(v.mark, fmt::format("expected a string, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  return v.node.Scalar();
}

std::optional<std::string> Loader::read_name(const Value& v, std::string_view what) {
  auto s = read_string(v);
  if (s && s->empty()) {
    error(v.mark, fmt::format("{} must not be empty", what));
    return std::nullopt;
  }
  return s;
}

std::optional<std::int64_t> Loader::read_int(const Value& v, std::string_view name,
                                             std::int64_t min, std::int64_t max) {
  if (!v.node.IsScalar()) {
    error(v.mark, fmt::format("expected an integer, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  const std::string& text = v.node.Scalar();
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (!all_digits(digits)) {
    error(v.mark, fmt::format("expected an integer, got '{}'", text));
    return std::nullopt;
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || value < min || value > max) {
    error(v.mark, fmt::format("{} must be between {} and {}, got {}", name, min, max, text));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Loader::read_bool(const Value& v) {
  // Only YAML 1.2 booleans: yaml-cpp would also take yes/no/on/off, which YAML 1.2 and most other
  // tools treat as strings, so a file meaning one thing here and another elsewhere is refused.
  if (v.node.IsScalar()) {
    const std::string& s = v.node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  error(v.mark, fmt::format("expected true or false, got {}", kind_of(v.node)));
  return std::nullopt;
}

std::optional<std::uint64_t> Loader::read_size(const Value& v, std::string_view name,
                                               std::uint64_t min, std::uint64_t max) {
  if (!v.node.IsScalar()) {
    error(v.mark, fmt::format("expected a size, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  std::string message;
  auto size = parse_size(v.node.Scalar(), message);
  if (!size) {
    error(v.mark, std::move(message));
    return std::nullopt;
  }
  if (*size < min || *size > max) {
    error(v.mark, fmt::format("{} must be between {} and {}, got {}", name, format_size(min),
                              format_size(max), v.node.Scalar()));
    return std::nullopt;
  }
  return size;
}

std::optional<Millis> Loader::read_timeout(const Value& v, std::string_view name) {
  return read_duration(v, name, Millis(1), kMaxTimeout);
}

std::optional<Millis> Loader::read_duration(const Value& v, std::string_view name, Millis min,
                                            Millis max) {
  if (!v.node.IsScalar()) {
    error(v.mark, fmt::format("expected a duration, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  std::string message;
  auto duration = parse_duration(v.node.Scalar(), message, max);
  if (!duration) {
    error(v.mark, std::move(message));
    return std::nullopt;
  }
  if (*duration < min) {
    if (min == Millis(1)) {
      error(v.mark, fmt::format("{} must be greater than zero", name));
    } else {
      error(v.mark, fmt::format("{} must be at least {}, got {}", name, format_duration(min),
                                v.node.Scalar()));
    }
    return std::nullopt;
  }
  return duration;
}

std::optional<Field> Loader::read_one_of(const Value& v, std::string_view section,
                                         std::span<const std::string_view> keys) {
  auto map = open_map(v, section, keys);
  if (!map) return std::nullopt;
  if (map->fields.size() != v.node.size()) return std::nullopt;  // open_map reported a key
  if (map->fields.size() != 1) {
    error(map->mark, fmt::format("{} needs exactly one of {}", section, join(keys)));
    return std::nullopt;
  }
  return std::move(map->fields.front());
}

std::optional<SocketAddress> Loader::read_address(const Value& v) {
  auto text = read_string(v);
  if (!text) return std::nullopt;
  SocketAddress address;
  if (std::string message = parse_socket_address(*text, address); !message.empty()) {
    error(v.mark, fmt::format("invalid address '{}': {}", *text, message));
    return std::nullopt;
  }
  return address;
}

LoadResult Loader::run(std::string_view yaml) {
  config_.source_path = file_;
  try {
    std::optional<YAML::Mark> loops_at = load_all_would_loop(yaml);
    std::vector<YAML::Node> documents;
    if (!loops_at) documents = YAML::LoadAll(std::string(yaml));
    if (loops_at) {
      error(mark_of(*loops_at), "invalid YAML: unexpected character (a stray ','?)");
    } else if (documents.size() > 1) {
      error(mark_of(documents[1]), "expected a single YAML document, found a second one here");
    } else if (documents.empty() || documents[0].IsNull()) {
      error({}, "at least one listener is required");
    } else {
      read_top_level(item_of(documents[0]));
    }
  } catch (const YAML::Exception& e) {
    // Only the first syntax error can be reported: yaml-cpp does not recover after one.
    error(mark_of(e.mark), fmt::format("invalid YAML: {}", e.msg));
  } catch (const std::exception& e) {
    error({}, fmt::format("internal error while loading: {}", e.what()));
  }

  LoadResult result;
  std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                   });
  result.diagnostics = std::move(diagnostics_);
  if (result.diagnostics.empty()) {
    result.config = std::make_shared<const Config>(std::move(config_));
  }
  return result;
}

void Loader::read_top_level(const Value& root) {
  auto top = open_map(root, "top level", kTopLevelKeys);
  if (!top) return;
  if (const Value* v = top->get("workers")) {
    if (auto n = read_int(*v, "workers", kMinWorkers, kMaxWorkers)) {
      config_.workers = static_cast<std::uint32_t>(*n);
    }
  }
  if (const Value* v = top->get("access_log")) read_access_log(*v);
  if (const Value* v = top->get("limits")) read_limits(*v);
  if (const Value* v = top->get("timeouts")) read_timeouts(*v);
  if (const Value* v = top->get("forwarding")) read_forwarding(*v);
  if (const Value* v = top->get("splice")) read_splice(*v);
  // Tables and pools first so references from listeners and routes can be checked afterwards.
  if (const Value* v = top->get("routes")) read_route_tables(*v);
  if (const Value* v = top->get("pools")) read_pools(*v);
  if (const Value* v = top->get("listeners")) {
    read_listeners(*v);
  } else if (top->get("l4") == nullptr) {
    // A pure L4 director (only `l4:` services) needs no listener.
    error({}, "at least one listener is required");
  }
  if (const Value* v = top->get("l4")) read_l4(*v);
  if (const Value* v = top->get("admin")) read_admin(*v);
  if (const Value* v = top->get("handoff")) read_handoff(*v);
  check_references();
  check_handoff_routes();
  check_tunnel_pools();
  // Every route gets its position among all routes: per-route counters are indexed by it.
  std::uint32_t route_index = 0;
  for (auto& [name, table] : config_.routes) {
    for (Route& r : table.routes) r.index = route_index++;
  }
}

void Loader::read_access_log(const Value& v) {
  auto map = open_map(v, "access_log", kAccessLogKeys);
  if (!map) return;
  AccessLog& log = config_.access_log;
  if (const Value* e = map->get("enabled")) {
    if (auto b = read_bool(*e)) log.enabled = *b;
  }
  if (const Value* f = map->get("format")) {
    if (auto s = read_string(*f)) {
      if (*s == "json") {
        log.format = AccessLog::Format::kJson;
      } else if (*s == "common") {
        log.format = AccessLog::Format::kCommon;
      } else {
        error(f->mark, fmt::format("unknown access_log format '{}'; expected json or common", *s));
      }
    }
  }
  if (const Value* p = map->get("path")) {
    if (auto s = read_name(*p, "access_log.path")) log.path = *s;
  }
}

void Loader::read_limits(const Value& v) {
  auto map = open_map(v, "limits", kLimitKeys);
  if (!map) return;
  for (const LimitField& f : kLimitFields) {
    const Value* value = map->get(f.key);
    if (value == nullptr) continue;
    const std::string name = fmt::format("limits.{}", f.key);
    if (f.is_size) {
      if (auto n = read_size(*value, name, f.min, f.max)) f.set(config_.limits, *n);
    } else {
      if (auto n = read_int(*value, name, static_cast<std::int64_t>(f.min),
                            static_cast<std::int64_t>(f.max))) {
        f.set(config_.limits, static_cast<std::uint64_t>(*n));
      }
    }
  }
}

void Loader::read_timeouts(const Value& v) {
  auto map = open_map(v, "timeouts", kTimeoutKeys);
  if (!map) return;
  for (const TimeoutField& f : kTimeoutFields) {
    if (const Value* value = map->get(f.key)) {
      if (auto d = read_timeout(*value, fmt::format("timeouts.{}", f.key))) {
        config_.timeouts.*f.member = *d;
      }
    }
  }
}

void Loader::read_forwarding(const Value& v) {
  auto map = open_map(v, "forwarding", kForwardingKeys);
  if (!map) return;
  for (const ForwardingField& f : kForwardingFields) {
    if (const Value* value = map->get(f.key)) {
      if (auto b = read_bool(*value)) config_.forwarding.*f.member = *b;
    }
  }
}

// The whole `splice:` block, in one place: zero-copy forwarding paths and their limits.
void Loader::read_splice(const Value& v) {
  auto map = open_map(v, "splice", kSpliceKeys);
  if (!map) return;
  Splice& sp = config_.splice;
  if (const Value* b = map->get("bodies")) {
    if (auto on = read_bool(*b)) sp.bodies = *on;
  }
  // Below a few pipe-loads, the poll + splice system calls cost more than the copy they save.
  if (const Value* m = map->get("min_body")) {
    if (auto n = read_size(*m, "splice.min_body", 4 * kKiB, 1024 * kGiB)) {
      sp.min_body = *n;
    }
  }
  if (const Value* p = map->get("pipe_size")) {
    if (auto n = read_size(*p, "splice.pipe_size", 4 * kKiB, 64 * kMiB)) {
      sp.pipe_size = static_cast<std::size_t>(*n);
    }
  }
  if (const Value* l = map->get("notsent_lowat")) {
    if (auto n = read_size(*l, "splice.notsent_lowat", 0, 64 * kMiB)) {
      sp.notsent_lowat = static_cast<std::size_t>(*n);
    }
  }
  if (const Value* s = map->get("sockmap")) {
    if (auto on = read_bool(*s)) sp.sockmap = *on;
  }
  if (const Value* t = map->get("tunnels")) {
    if (auto text = read_string(*t)) {
      if (*text == "splice") {
        sp.tunnels = Splice::TunnelEngine::kSplice;
      } else if (*text == "copy") {
        sp.tunnels = Splice::TunnelEngine::kCopy;
      } else {
        error(t->mark, fmt::format("unknown splice.tunnels engine '{}'; expected {}", *text,
                                   join(kTunnelEngines)));
      }
    }
  }
}

// A pool a tcp listener sends connections to (its `pool`, or one of its `sni` pools). Pools are
// read before listeners. A connection carries no request: the pool can hash on the client's
// address only, and bytes go through untouched (no tls to the servers).
bool Loader::check_tcp_pool(const std::string& pool, const SourceMark& mark) {
  auto it = config_.pools.find(pool);
  if (it == config_.pools.end()) return true;  // reported by check_references
  const Pool& pl = it->second;
  using On = HashKey::On;
  On on = pl.hash.on;
  if (on == On::kDefault) {
    const upstream::SchedulerInfo* info = upstream::find_scheduler(pl.scheduler);
    if (info) on = info->default_key;
  }
  if (on == On::kHeader || on == On::kCookie || on == On::kUrl ||
      pl.persistence.kind == Persistence::Kind::kCookie) {
    error(mark, fmt::format("pool '{}' hashes or persists on HTTP request data (a "
                            "header, cookie or URL), which a tcp listener does not "
                            "have; use source hashing or source persistence",
                            pool));
    return false;
  }
  if (pl.tls) {
    error(mark, fmt::format("pool '{}' speaks TLS to its servers; a tcp listener "
                            "forwards bytes as they are and cannot use it",
                            pool));
    return false;
  }
  return true;
}

// `sni: { NAME: POOL, "*.SUFFIX": POOL }`: server names (from the TLS ClientHello) to pools.
bool Loader::read_listener_sni(const Value& v, Listener& listener) {
  auto entries = open_named_map(v);
  if (!entries) return false;
  bool ok = true;
  if (entries->fields.empty()) {
    error(v.mark, "sni needs at least one name: pool entry");
    return false;
  }
  for (const Field& f : entries->fields) {
    std::string name = lower(f.key);
    std::string_view host = name;
    if (host.starts_with("*.")) host.remove_prefix(2);
    bool valid = !host.empty() && host.size() <= 253 && host.front() != '.' && host.back() != '.';
    for (char c : host) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
        valid = false;
      }
    }
    if (!valid) {
      error(f.key_mark,
            fmt::format("invalid sni name '{}'; expected a DNS name or *.suffix", f.key));
      ok = false;
      continue;
    }
    auto pool = read_name(f.value, "sni pool");
    if (!pool) {
      ok = false;
      continue;
    }
    pool_refs_.push_back({*pool, f.value.mark});
    ok = check_tcp_pool(*pool, f.value.mark) && ok;
    listener.sni.push_back({std::move(name), std::move(*pool)});
  }
  return ok;
}

void Loader::read_listeners(const Value& v) {
  if (!expect_list(v)) return;
  if (v.node.size() == 0) {
    error(v.mark, "at least one listener is required");
    return;
  }
  for (const YAML::Node& item : v.node) read_listener(item_of(item));
}

void Loader::read_listener(const Value& v) {
  auto map = open_map(v, "listener", kListenerKeys);
  if (!map) return;
  Listener listener;
  bool ok = true;
  for (std::string_view key : kRequiredListenerKeys) ok = require(*map, key, "listener") && ok;

  if (const Value* n = map->get("name")) {
    if (auto name = read_name(*n, "listener name")) {
      // Kept even when duplicated: later messages about this listener still need to name it.
      listener.name = *name;
      auto [prev, inserted] = listener_names_.emplace(*name, n->mark.line);
      if (!inserted) {
        error(n->mark, fmt::format("duplicate listener name '{}'; first defined at line {}", *name,
                                   prev->second));
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const Value* b = map->get("bind")) {
    auto address = read_address(*b);
    if (address) {
      if (auto key = bind_key(*address)) {
        const std::string owner = listener.name.empty()
                                      ? "another listener"
                                      : fmt::format("listener '{}'", listener.name);
        auto [prev, inserted] = binds_.emplace(*key, BindUse{owner, b->mark.line});
        if (!inserted) {
          error(b->mark, fmt::format("duplicate bind {}; already used by {} at line {}",
                                     address->text, prev->second.owner, prev->second.line));
          address.reset();
        }
      }
    }
    if (address) listener.bind = std::move(*address);
    ok = ok && address.has_value();
  }
  if (const Value* m = map->get("mode")) {
    if (auto mode = read_string(*m)) {
      if (*mode == "tcp") {
        listener.mode = Listener::Mode::kTcp;
      } else if (*mode != "http") {
        error(m->mark,
              fmt::format("unknown listener mode '{}'; expected {}", *mode, join(kListenerModes)));
        return;  // what else the listener needs depends on its mode
      }
    } else {
      return;
    }
  }
  const bool tcp = listener.mode == Listener::Mode::kTcp;
  // An HTTP listener routes each request by its table; a tcp listener has no requests to route
  // and sends whole connections to one pool.
  if (tcp) {
    ok = require(*map, "pool", "listener with mode tcp") && ok;
    for (std::string_view key : {"routes", "tls", "websocket"}) {
      if (const Value* x = map->get(key)) {
        error(x->mark,
              fmt::format("'{}' is not allowed on a listener with mode tcp{}", key,
                          key == "tls" ? " (TLS passes through the tunnel untouched)" : ""));
        ok = false;
      }
    }
  } else {
    ok = require(*map, "routes", "listener") && ok;
    if (const Value* x = map->get("pool")) {
      error(x->mark,
            "'pool' is only allowed on a listener with mode tcp; an HTTP listener "
            "names its route table in 'routes'");
      ok = false;
    }
  }
  if (const Value* r = map->get("routes"); r && !tcp) {
    auto table = read_name(*r, "listener routes");
    if (table) {
      table_refs_.push_back({*table, r->mark});
      listener.routes = *table;
    }
    ok = ok && table.has_value();
  }
  if (const Value* p = map->get("pool"); p && tcp) {
    auto pool = read_name(*p, "listener pool");
    if (pool) {
      pool_refs_.push_back({*pool, p->mark});
      listener.pool = *pool;
      ok = check_tcp_pool(*pool, p->mark) && ok;
    }
    ok = ok && pool.has_value();
  }
  if (const Value* sni = map->get("sni")) {
    if (!tcp) {
      error(sni->mark,
            "'sni' is only allowed on a listener with mode tcp (a TLS listener "
            "chooses its certificate by SNI, and its routes can match the Host)");
      ok = false;
    } else {
      ok = read_listener_sni(*sni, listener) && ok;
    }
  }
  if (const Value* ws = map->get("websocket"); ws && !tcp) {
    if (auto on = read_bool(*ws)) {
      listener.websocket = *on;
    } else {
      ok = false;
    }
  }
  if (const Value* t = map->get("tls"); t && !tcp) {
    listener.tls = read_tls(*t);
    ok = ok && listener.tls.has_value();
  }
  if (ok) config_.listeners.push_back(std::move(listener));
}

std::optional<TlsUpstream> Loader::read_tls_upstream(const Value& v) {
  TlsUpstream tls;
  // `tls: true` = verify against the system's trust store, by the server's address.
  if (v.node.IsScalar()) {
    auto on = read_bool(v);
    if (!on) return std::nullopt;
    if (!*on) {
      error(v.mark, "pool tls can only be true or a map; to talk plain HTTP, leave out tls");
      return std::nullopt;
    }
    return tls;
  }
  auto map = open_map(v, "pool tls", kTlsUpstreamKeys);
  if (!map) return std::nullopt;
  bool ok = true;
  if (const Value* b = map->get("verify")) {
    auto on = read_bool(*b);
    if (on) tls.verify = *on;
    ok = ok && on.has_value();
  }
  if (const Value* ca = map->get("ca")) {
    auto file = read_string(*ca);
    if (file) {
      tls.ca = resolve_path(*file);
      if (std::string why = tls::check_ca_file(tls.ca); !why.empty()) {
        error(ca->mark, why);
        ok = false;
      }
    }
    ok = ok && file.has_value();
  }
  if (const Value* n = map->get("server_name")) {
    auto name = read_string(*n);
    if (name && (name->empty() || name->find_first_of(" /:") != std::string::npos)) {
      error(n->mark, fmt::format("invalid server_name '{}': expected a DNS name", *name));
      name.reset();
    }
    if (name) tls.server_name = *name;
    ok = ok && name.has_value();
  }
  const Value* cert = map->get("cert");
  const Value* key = map->get("key");
  if (cert || key) {
    if (!cert || !key) {
      error((cert ? cert : key)->mark, "pool tls needs both cert and key for a client certificate");
      ok = false;
    } else {
      auto c = read_string(*cert);
      auto k = read_string(*key);
      if (c && k) {
        tls.cert = resolve_path(*c);
        tls.key = resolve_path(*k);
        if (std::string why = tls::check_certificate_pair(tls.cert, tls.key); !why.empty()) {
          error(cert->mark, why);
          ok = false;
        }
      } else {
        ok = false;
      }
    }
  }
  if (!ok) return std::nullopt;
  return tls;
}

std::string Loader::resolve_path(const std::string& path) const {
  if (path.empty() || path.front() == '/') return path;
  std::size_t slash = file_.rfind('/');
  return slash == std::string::npos ? path : file_.substr(0, slash + 1) + path;
}

std::optional<TlsServer> Loader::read_tls(const Value& v) {
  auto map = open_map(v, "tls", kTlsKeys);
  if (!map) return std::nullopt;
  TlsServer tls;
  bool ok = require(*map, "certificates", "tls");
  if (const Value* c = map->get("certificates")) {
    if (!expect_list(*c)) {
      ok = false;
    } else if (c->node.size() == 0) {
      error(c->mark, "tls.certificates needs at least one certificate");
      ok = false;
    } else {
      for (const YAML::Node& item : c->node) {
        const Value entry = item_of(item);
        auto cm = open_map(entry, "certificate", kTlsCertificateKeys);
        if (!cm) {
          ok = false;
          continue;
        }
        bool has = require(*cm, "cert", "certificate");
        has = require(*cm, "key", "certificate") && has;
        if (!has) {
          ok = false;
          continue;
        }
        auto cert = read_string(*cm->get("cert"));
        auto key = read_string(*cm->get("key"));
        if (!cert || !key) {
          ok = false;
          continue;
        }
        TlsCertificate tc{resolve_path(*cert), resolve_path(*key), entry.mark};
        if (std::string why = tls::check_certificate_pair(tc.cert, tc.key); !why.empty()) {
          error(entry.mark, why);
          ok = false;
          continue;
        }
        tls.certificates.push_back(std::move(tc));
      }
    }
  }
  auto read_version = [&](std::string_view key, std::string& out) {
    const Value* val = map->get(key);
    if (!val) return;
    auto text = read_string(*val);
    if (!text) {
      ok = false;
      return;
    }
    if (std::find(std::begin(kTlsVersions), std::end(kTlsVersions), *text) ==
        std::end(kTlsVersions)) {
      error(val->mark, fmt::format("unsupported TLS version '{}'; expected TLSv1.2 or TLSv1.3 "
                                   "(TLS 1.0 and 1.1 are insecure and not offered)",
                                   *text));
      ok = false;
      return;
    }
    out = *text;
  };
  read_version("min_version", tls.min_version);
  read_version("max_version", tls.max_version);
  if (tls.min_version > tls.max_version) {
    error(map->get("min_version") ? map->get("min_version")->mark : v.mark,
          fmt::format("tls.min_version {} is above tls.max_version {}", tls.min_version,
                      tls.max_version));
    ok = false;
  }
  auto read_openssl = [&](std::string_view key, std::string& out,
                          std::string (*check)(const std::string&)) {
    const Value* val = map->get(key);
    if (!val) return;
    auto text = read_string(*val);
    if (!text) {
      ok = false;
      return;
    }
    if (std::string why = check(*text); !why.empty()) {
      error(val->mark, fmt::format("OpenSSL rejects tls.{} '{}': {}", key, *text, why));
      ok = false;
      return;
    }
    out = *text;
  };
  read_openssl("ciphers", tls.ciphers, &tls::check_cipher_list);
  read_openssl("ciphersuites", tls.ciphersuites, &tls::check_ciphersuites);
  read_openssl("groups", tls.groups, &tls::check_groups);
  if (const Value* a = map->get("alpn")) {
    auto items = read_strings(*a, "tls.alpn");
    if (!items) {
      ok = false;
    } else {
      tls.alpn.clear();
      for (const Item& it : *items) {
        if (it.text != "http/1.1" && it.text != "http/1.0") {
          error(it.mark, fmt::format("unsupported ALPN protocol '{}'; this build speaks http/1.1 "
                                     "and http/1.0",
                                     it.text));
          ok = false;
        }
        tls.alpn.push_back(it.text);
      }
    }
  }
  if (const Value* b = map->get("session_tickets")) {
    auto on = read_bool(*b);
    if (on) tls.session_tickets = *on;
    ok = ok && on.has_value();
  }
  if (const Value* d = map->get("ticket_rotation")) {
    auto r =
        read_duration(*d, "tls.ticket_rotation", Millis(60 * 1000), Millis(7ll * 24 * 3600 * 1000));
    if (r) tls.ticket_rotation = *r;
    ok = ok && r.has_value();
  }
  if (const Value* n = map->get("session_cache")) {
    auto size = read_int(*n, "tls.session_cache", 0, 10000000);
    if (size) tls.session_cache = static_cast<std::uint32_t>(*size);
    ok = ok && size.has_value();
  }
  if (const Value* ca = map->get("client_ca")) {
    auto file = read_string(*ca);
    if (file) {
      tls.client_ca = resolve_path(*file);
      if (std::string why = tls::check_ca_file(tls.client_ca); !why.empty()) {
        error(ca->mark, why);
        ok = false;
      }
    }
    ok = ok && file.has_value();
  }
  if (const Value* m = map->get("verify_client")) {
    auto text = read_string(*m);
    if (text) {
      auto it = std::find(std::begin(kVerifyModes), std::end(kVerifyModes), *text);
      if (it == std::end(kVerifyModes)) {
        error(m->mark, fmt::format("unknown verify_client '{}'; expected none, optional or "
                                   "required",
                                   *text));
        ok = false;
      } else {
        tls.verify_client = static_cast<TlsServer::Verify>(it - std::begin(kVerifyModes));
      }
    }
    ok = ok && text.has_value();
  }
  if (tls.verify_client != TlsServer::Verify::kNone && tls.client_ca.empty() && ok) {
    error(map->get("verify_client")->mark,
          "verify_client needs client_ca: the CAs that client certificates must chain to");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return tls;
}

void Loader::read_route_tables(const Value& v) {
  auto tables = open_named_map(v);
  if (!tables) return;
  for (const Field& f : tables->fields) {
    defined_tables_.push_back(f.key);
    read_route_table(f.key, f.value);
  }
}

void Loader::read_route_table(const std::string& name, const Value& v) {
  if (!expect_list(v)) return;
  if (v.node.size() == 0) {
    error(v.mark, fmt::format("route table '{}' is empty; it needs at least one route", name));
    return;
  }
  RouteTable table;
  table.name = name;
  bool ok = true;
  std::optional<int> catch_all_line;
  for (const YAML::Node& item : v.node) {
    const Value route_value = item_of(item);
    if (catch_all_line) {
      error(route_value.mark,
            fmt::format("unreachable route: the route at line {} matches every request",
                        *catch_all_line));
      ok = false;
    }
    bool matches_everything = false;
    auto route = read_route(name, route_value, matches_everything);
    if (matches_everything && !catch_all_line) catch_all_line = route_value.mark.line;
    if (route) {
      table.routes.push_back(std::move(*route));
    } else {
      ok = false;
    }
  }
  if (ok) config_.routes.emplace(name, std::move(table));
}

std::optional<Route> Loader::read_route(const std::string& table, const Value& v,
                                        bool& matches_everything) {
  auto map = open_map(v, "route", kRouteKeys);
  if (!map) return std::nullopt;
  Route route;
  route.mark = map->mark;
  bool ok = map->fields.size() == v.node.size();  // false: open_map reported a key
  // A goto may fall through (its table can match nothing), so only a route without match whose
  // action always answers matches every request. A route with a misspelt key is not counted:
  // the typo may well be `match`, and "unreachable" on every later route would only be noise.
  matches_everything = ok && map->field("match") == nullptr && map->get("goto") == nullptr;

  std::vector<std::string_view> actions;
  for (std::string_view action : kRouteActions) {
    if (map->get(action) != nullptr) actions.push_back(action);
  }
  if (actions.size() != 1) {
    error(map->mark, fmt::format("route needs exactly one of {}", join(kRouteActions)));
    ok = false;
  }
  // Only judged when the action is clear; with none or several the message above says enough.
  const std::optional<std::string_view> action =
      actions.size() == 1 ? std::optional(actions[0]) : std::nullopt;

  if (const Field* m = map->field("match")) {
    route.match = read_match(m->value);
    ok = ok && route.match.has_value();
  }
  if (const Value* pool = map->get("pool")) {
    if (auto name = read_name(*pool, "pool name")) {
      pool_refs_.push_back({*name, pool->mark});
      route.pool = *name;
    } else {
      ok = false;
    }
  }
  if (const Value* split = map->get("split")) {
    route.split = read_split(*split);
    ok = ok && route.split.has_value();
  }
  if (const Value* redirect = map->get("redirect")) {
    route.redirect = read_redirect(*redirect);
    ok = ok && route.redirect.has_value();
  }
  if (const Value* respond = map->get("respond")) {
    route.respond = read_respond(*respond);
    ok = ok && route.respond.has_value();
  }
  if (const Value* go_to = map->get("goto")) {
    if (auto name = read_name(*go_to, "goto table name")) {
      if (*name == table) {
        error(go_to->mark, fmt::format("a route cannot goto its own table '{}'", table));
        ok = false;
      } else {
        table_refs_.push_back({*name, go_to->mark});
        gotos_.push_back({table, *name, go_to->mark});
        route.go_to = *name;
      }
    } else {
      ok = false;
    }
  }
  if (const Field* sticky = map->field("sticky")) {
    if (action && *action != "split") {
      error(sticky->key_mark, "sticky is only allowed with split");
      ok = false;
    }
    Split unused;  // still validated when the split itself is wrong
    ok = read_sticky(sticky->value, route.split ? *route.split : unused) && ok;
  }
  if (const Field* h = map->field("handoff")) {
    if (action && *action != "pool") {
      error(h->key_mark, "handoff is only allowed with pool (the connection moves to one server)");
      ok = false;
    }
    auto on = read_bool(h->value);
    if (on) route.handoff = *on;
    route.handoff_mark = h->key_mark;
    ok = ok && on.has_value();
  }
  // Keys that shape how a pool or split route forwards: an error on any other action.
  auto forwarding_key = [&](std::string_view key) -> const Field* {
    const Field* f = map->field(key);
    if (f != nullptr && action && *action != "pool" && *action != "split") {
      error(f->key_mark, fmt::format("{} is only allowed with pool or split", key));
      ok = false;
    }
    return f;
  };
  for (std::string_view key : {"connect", "per_connection"}) {
    const Field* f = forwarding_key(key);
    if (f == nullptr) continue;
    if (key == "connect") {
      ok = read_route_connect(f->value, route) && ok;
    } else if (auto on = read_bool(f->value)) {
      route.per_connection = *on;
    } else {
      ok = false;
    }
  }
  if (route.handoff && (!route.connect_ports.empty() || route.per_connection)) {
    error(route.handoff_mark, fmt::format("handoff and {} exclude each other (handoff moves the "
                                          "connection itself to the server)",
                                          route.per_connection ? "per_connection" : "connect"));
    ok = false;
  }
  if (!route.connect_ports.empty() && route.per_connection) {
    error(map->field("per_connection")->key_mark,
          "per_connection and connect exclude each other (a CONNECT is a tunnel already)");
    ok = false;
  }
  for (std::string_view key : {"request_headers", "response_headers", "rewrite", "fallback"}) {
    const Field* f = forwarding_key(key);
    if (f == nullptr) continue;
    if (key == "fallback") {
      ok = read_route_fallback(f->value, route) && ok;
    } else if (key == "rewrite") {
      auto rewrite = read_rewrite(f->value);
      if (rewrite) route.rewrite = std::move(*rewrite);
      ok = ok && rewrite.has_value();
    } else {
      HeaderEdits& target =
          key == "request_headers" ? route.request_headers : route.response_headers;
      auto edits = read_header_edits(f->value, key);
      if (edits) target = std::move(*edits);
      ok = ok && edits.has_value();
    }
  }
  if (ok && (!route.connect_ports.empty() || route.per_connection)) {
    // Tunnels carry raw TCP: checked once pools are read (check_tunnel_pools).
    const Field* f = map->field(route.per_connection ? "per_connection" : "connect");
    std::string_view what = route.per_connection ? "per_connection" : "connect";
    if (route.pool) tunnel_pool_refs_.push_back({*route.pool, f->key_mark, what});
    if (route.split) {
      for (const auto& target : route.split->pools) {
        tunnel_pool_refs_.push_back({target.pool, f->key_mark, what});
      }
    }
    if (route.fallback_pool) tunnel_pool_refs_.push_back({*route.fallback_pool, f->key_mark, what});
  }
  if (!ok) return std::nullopt;
  return route;
}

// `connect: true` (port 443) or `connect: { ports: [443, 8443] }`; `connect: false` is none.
bool Loader::read_route_connect(const Value& v, Route& route) {
  if (!v.node.IsMap()) {
    auto on = read_bool(v);
    if (!on) return false;
    if (*on) route.connect_ports = {443};
    return true;
  }
  auto map = open_map(v, "connect", kConnectKeys);
  if (!map) return false;
  bool ok = map->fields.size() == v.node.size();
  route.connect_ports = {443};
  if (const Value* p = map->get("ports")) {
    route.connect_ports.clear();
    std::vector<Value> items;
    if (p->node.IsSequence()) {
      for (const YAML::Node& n : p->node) items.push_back(item_of(n));
      if (items.empty()) {
        error(p->mark, "connect.ports needs at least one port");
        ok = false;
      }
    } else {
      items.push_back(*p);
    }
    for (const Value& item : items) {
      if (auto port = read_int(item, "connect port", 1, 65535)) {
        route.connect_ports.push_back(static_cast<std::uint16_t>(*port));
      } else {
        ok = false;
      }
    }
  }
  return ok;
}

// Pools of connect and per_connection routes: a tunnel needs the server's raw TCP socket.
void Loader::check_tunnel_pools() {
  for (const TunnelPoolRef& ref : tunnel_pool_refs_) {
    auto it = config_.pools.find(ref.pool);
    if (it == config_.pools.end() || !it->second.tls) continue;
    error(ref.mark, fmt::format("pool '{}' uses tls; a {} route tunnels raw TCP to its servers "
                                "and needs a pool without tls",
                                ref.pool, ref.what));
  }
}

// Read after the route's action, so that a fallback to the route's own pool can be recognised.
bool Loader::read_route_fallback(const Value& v, Route& route) {
  auto f = read_one_of(v, "fallback", kRouteFallbackKeys);
  if (!f) return false;
  if (f->key == "respond") {
    route.fallback_respond = read_respond(f->value);
    return route.fallback_respond.has_value();
  }
  auto name = read_name(f->value, "fallback pool name");
  if (!name) return false;
  if (route.pool && *name == *route.pool) {
    // The fallback is used exactly when that pool has no server available.
    error(f->value.mark,
          fmt::format("fallback pool '{}' is the route's own pool; name another pool", *name));
    return false;
  }
  pool_refs_.push_back({*name, f->value.mark});
  route.fallback_pool = std::move(*name);
  return true;
}

std::optional<std::vector<Loader::Item>> Loader::read_strings(const Value& v,
                                                              std::string_view what) {
  std::vector<Item> items;
  if (v.node.IsScalar()) {
    items.push_back({v.node.Scalar(), v.mark});
    return items;
  }
  if (!v.node.IsSequence()) {
    error(v.mark, fmt::format("expected a string or a list of strings, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  if (v.node.size() == 0) {
    error(v.mark, fmt::format("{} needs at least one value", what));
    return std::nullopt;
  }
  bool ok = true;
  for (const YAML::Node& node : v.node) {
    auto text = read_string(item_of(node));
    if (text) items.push_back({std::move(*text), mark_of(node)});
    ok = ok && text.has_value();
  }
  if (!ok) return std::nullopt;
  return items;
}

std::optional<std::string> Loader::read_regex(const Value& v, int* capture_groups) {
  auto pattern = read_string(v);
  if (!pattern) return std::nullopt;
  RE2::Options options;
  options.set_log_errors(false);
  const RE2 re(*pattern, options);
  if (!re.ok()) {
    error(v.mark, fmt::format("invalid regex: {}", re.error()));
    return std::nullopt;
  }
  if (capture_groups != nullptr) *capture_groups = re.NumberOfCapturingGroups();
  return pattern;
}

std::optional<Match> Loader::read_match(const Value& v) {
  auto map = open_map(v, "match", kMatchKeys);
  if (!map) return std::nullopt;
  if (v.node.size() == 0) {
    error(map->mark, "empty match");
    return std::nullopt;
  }
  bool ok = map->fields.size() == v.node.size();
  std::vector<Match> children;
  for (const Field& f : map->fields) {
    auto matcher = read_matcher(f);
    if (matcher) children.push_back(std::move(*matcher));
    ok = ok && matcher.has_value();
  }
  if (!ok) return std::nullopt;
  if (children.size() == 1) return std::move(children.front());
  Match all;
  all.kind = Match::Kind::kAll;
  all.mark = map->mark;
  all.children = std::move(children);
  return all;
}

std::optional<Match> Loader::read_matcher(const Field& f) {
  Match match;
  match.mark = f.key_mark;
  const std::string& key = f.key;

  if (key == "header" || key == "query" || key == "cookie") {
    return read_value_tests(f, key == "header"  ? Match::Kind::kHeader
                               : key == "query" ? Match::Kind::kQuery
                                                : Match::Kind::kCookie);
  }
  if (key == "all" || key == "any") {
    match.kind = key == "all" ? Match::Kind::kAll : Match::Kind::kAny;
    if (!expect_list(f.value)) return std::nullopt;
    if (f.value.node.size() == 0) {
      error(f.value.mark, fmt::format("{} needs at least one match", key));
      return std::nullopt;
    }
    bool ok = true;
    for (const YAML::Node& node : f.value.node) {
      auto child = read_match(item_of(node));
      if (child) match.children.push_back(std::move(*child));
      ok = ok && child.has_value();
    }
    if (!ok) return std::nullopt;
    return match;
  }
  if (key == "not") {
    match.kind = Match::Kind::kNot;
    auto child = read_match(f.value);
    if (!child) return std::nullopt;
    match.children.push_back(std::move(*child));
    return match;
  }
  if (key == "path_regex") {
    match.kind = Match::Kind::kPathRegex;
    auto pattern = read_regex(f.value);
    if (!pattern) return std::nullopt;
    match.patterns.push_back(std::move(*pattern));
    return match;
  }

  // The rest take a string or a list of strings.
  auto items = read_strings(f.value, key);
  if (!items) return std::nullopt;
  bool ok = true;
  for (const Item& item : *items) {
    std::string message;
    if (key == "host") {
      match.kind = Match::Kind::kHost;
      message = check_host_pattern(item.text);
      match.patterns.push_back(lower(item.text));
    } else if (key == "path" || key == "path_prefix") {
      match.kind = key == "path" ? Match::Kind::kPath : Match::Kind::kPathPrefix;
      message = check_path_pattern(item.text);
      match.patterns.push_back(item.text);
    } else if (key == "method") {
      match.kind = Match::Kind::kMethod;
      const std::string& m = item.text;
      const auto is_upper = [](char c) { return c >= 'A' && c <= 'Z'; };
      const auto is_letter = [&](char c) { return is_upper(c) || (c >= 'a' && c <= 'z'); };
      if (m.empty() || !std::all_of(m.begin(), m.end(), is_letter)) {
        message = fmt::format("invalid method '{}'; a method is upper-case letters, e.g. GET", m);
      } else if (!std::all_of(m.begin(), m.end(), is_upper)) {
        std::string upper = m;
        for (char& c : upper) c = is_upper(c) ? c : static_cast<char>(c - 'a' + 'A');
        message = fmt::format("method names are case-sensitive; did you mean '{}'?", upper);
      }
      match.patterns.push_back(m);
    } else {  // source
      match.kind = Match::Kind::kSource;
      Cidr cidr;
      message = parse_cidr(item.text, cidr);
      match.cidrs.push_back(std::move(cidr));
    }
    if (!message.empty()) {
      error(item.mark, std::move(message));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return match;
}

std::optional<Match> Loader::read_value_tests(const Field& f, Match::Kind kind) {
  auto names = open_named_map(f.value);
  if (!names) return std::nullopt;
  if (f.value.node.size() == 0) {
    error(names->mark, fmt::format("{} needs at least one name", f.key));
    return std::nullopt;
  }
  bool ok = names->fields.size() == f.value.node.size();
  std::vector<Match> tests;
  for (const Field& n : names->fields) {
    Match match;
    match.kind = kind;
    match.mark = n.key_mark;
    match.name = n.key;
    if (kind == Match::Kind::kHeader) {
      if (!is_token(n.key)) {
        error(n.key_mark, fmt::format("invalid header name '{}'", n.key));
        ok = false;
      }
      match.name = lower(n.key);  // header names are case-insensitive
    } else if (kind == Match::Kind::kCookie && !is_token(n.key)) {
      error(n.key_mark, fmt::format("invalid cookie name '{}'", n.key));
      ok = false;
    } else if (kind == Match::Kind::kQuery && n.key.empty()) {
      error(n.key_mark, "query parameter name must not be empty");
      ok = false;
    }
    auto test = read_value_test(n.value, f.key);
    if (test) match.test = std::move(*test);
    ok = ok && test.has_value();
    tests.push_back(std::move(match));
  }
  if (!ok) return std::nullopt;
  if (tests.size() == 1) return std::move(tests.front());
  Match all;
  all.kind = Match::Kind::kAll;
  all.mark = f.key_mark;
  all.children = std::move(tests);
  return all;
}

std::optional<ValueTest> Loader::read_value_test(const Value& v, std::string_view what) {
  ValueTest test;
  if (v.node.IsScalar()) {
    test.op = ValueTest::Op::kExact;
    test.value = v.node.Scalar();
    return test;
  }
  if (!v.node.IsMap()) {
    error(v.mark, fmt::format("expected a string or a map with present, exact or regex, got {}",
                              kind_of(v.node)));
    return std::nullopt;
  }
  const std::string section = fmt::format("{} test", what);
  auto map = open_map(v, section, kValueTestKeys);
  if (!map) return std::nullopt;
  if (map->fields.size() != v.node.size()) return std::nullopt;  // open_map reported a key
  if (map->fields.size() != 1) {
    error(map->mark, fmt::format("a {} test needs exactly one of {}", what, join(kValueTestKeys)));
    return std::nullopt;
  }
  const Field& f = map->fields.front();
  if (f.key == "present") {
    auto present = read_bool(f.value);
    if (!present) return std::nullopt;
    test.op = *present ? ValueTest::Op::kPresent : ValueTest::Op::kAbsent;
  } else if (f.key == "exact") {
    auto value = read_string(f.value);
    if (!value) return std::nullopt;
    test.op = ValueTest::Op::kExact;
    test.value = std::move(*value);
  } else {  // regex
    auto pattern = read_regex(f.value);
    if (!pattern) return std::nullopt;
    test.op = ValueTest::Op::kRegex;
    test.value = std::move(*pattern);
  }
  return test;
}

std::optional<Split> Loader::read_split(const Value& v) {
  if (!expect_list(v)) return std::nullopt;
  if (v.node.size() == 0) {
    error(v.mark, "split needs at least one pool");
    return std::nullopt;
  }
  Split split;
  bool ok = true;
  std::uint64_t total = 0;
  std::map<std::string, int> seen;  // pool -> line
  for (const YAML::Node& node : v.node) {
    auto map = open_map(item_of(node), "split entry", kSplitEntryKeys);
    if (!map) {
      ok = false;
      continue;
    }
    WeightedPool entry;
    bool entry_ok = require(*map, "pool", "split entry");
    if (const Value* p = map->get("pool")) {
      if (auto name = read_name(*p, "pool name")) {
        pool_refs_.push_back({*name, p->mark});
        entry.pool = *name;
        if (auto [prev, inserted] = seen.emplace(*name, p->mark.line); !inserted) {
          error(p->mark, fmt::format("pool '{}' is listed twice in split; first at line {}", *name,
                                     prev->second));
          entry_ok = false;
        }
      } else {
        entry_ok = false;
      }
    }
    if (const Value* w = map->get("weight")) {
      auto n = read_int(*w, "split weight", 0, kMaxSplitWeight);
      if (n) entry.weight = static_cast<std::uint32_t>(*n);
      entry_ok = entry_ok && n.has_value();
    }
    if (entry_ok) {
      total += entry.weight;
      split.pools.push_back(std::move(entry));
    }
    ok = ok && entry_ok;
  }
  if (ok && total == 0) {
    error(v.mark, "split weights add up to 0; at least one weight must be above 0");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return split;
}

bool Loader::read_sticky(const Value& v, Split& split) {
  auto map = open_map(v, "sticky", kStickyKeys);
  if (!map) return false;
  if (map->fields.size() != v.node.size()) return false;  // open_map reported a key
  if (map->fields.size() != 1) {
    error(map->mark, fmt::format("sticky needs exactly one of {}", join(kStickyKeys)));
    return false;
  }
  const Field& f = map->fields.front();
  const bool header = f.key == "header";
  auto name = read_name(f.value, header ? "sticky header name" : "sticky cookie name");
  if (!name) return false;
  if (!is_token(*name)) {
    error(f.value.mark, fmt::format("invalid {} name '{}'", f.key, *name));
    return false;
  }
  split.sticky_on = header ? Split::StickyOn::kHeader : Split::StickyOn::kCookie;
  split.sticky_name = header ? lower(*name) : *name;
  return true;
}

std::optional<Redirect> Loader::read_redirect(const Value& v) {
  auto map = open_map(v, "redirect", kRedirectKeys);
  if (!map) return std::nullopt;
  Redirect redirect;
  bool ok = map->fields.size() == v.node.size();
  if (const Value* s = map->get("status")) {
    auto n = read_int(*s, "redirect.status", 100, 599);
    if (n && std::find(std::begin(kRedirectStatuses), std::end(kRedirectStatuses), *n) ==
                 std::end(kRedirectStatuses)) {
      error(s->mark, fmt::format("redirect status must be 301, 302, 303, 307 or 308, got {}", *n));
      n.reset();
    }
    if (n) redirect.status = static_cast<int>(*n);
    ok = ok && n.has_value();
  }
  // Each part: a template, then the checks particular to that part of a URL.
  const auto read_part =
      [&](std::string_view part,
          std::string (*check)(const std::string&)) -> std::optional<std::string> {
    const Value* p = map->get(part);
    if (p == nullptr) return std::nullopt;
    auto text = read_string(*p);
    if (!text) {
      ok = false;
      return std::nullopt;
    }
    std::string message = check_template(*text, part);
    if (message.empty()) message = check(*text);
    if (!message.empty()) {
      error(p->mark, std::move(message));
      ok = false;
      return std::nullopt;
    }
    return text;
  };
  redirect.scheme = read_part("scheme", [](const std::string& s) -> std::string {
    if (s.find('{') != std::string::npos || iequals(s, "http") || iequals(s, "https")) return {};
    return fmt::format("redirect scheme must be http, https or a template, got '{}'", s);
  });
  if (redirect.scheme && redirect.scheme->find('{') == std::string::npos) {
    *redirect.scheme = lower(*redirect.scheme);  // schemes are case-insensitive
  }
  redirect.host = read_part("host", [](const std::string& s) -> std::string {
    if (s.empty()) return "redirect host must not be empty";
    if (s.find_first_of("/?#") != std::string::npos) {
      return "redirect host must not contain '/', '?' or '#'";
    }
    return {};
  });
  redirect.path = read_part("path", [](const std::string& s) -> std::string {
    if (!s.starts_with('/') && !s.starts_with("{path}")) {
      return "redirect path must start with '/' or {path}";
    }
    if (s.find_first_of("?#") != std::string::npos) {
      return "redirect path must not contain '?' or '#'; give the query in query";
    }
    return {};
  });
  redirect.query = read_part("query", [](const std::string& s) -> std::string {
    if (s.starts_with('?')) return "redirect query is written without the leading '?'";
    if (s.find('#') != std::string::npos) return "redirect query must not contain '#'";
    return {};
  });
  if (ok && !map->get("scheme") && !map->get("host") && !map->get("path") && !map->get("query")) {
    // It would send the client back to the very URL it asked for, forever.
    error(map->mark, "redirect changes nothing; give at least one of scheme, host, path, query");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return redirect;
}

std::optional<HeaderEdits> Loader::read_header_edits(const Value& v, std::string_view section) {
  auto map = open_map(v, section, kHeaderEditKeys);
  if (!map) return std::nullopt;
  HeaderEdits edits;
  bool ok = map->fields.size() == v.node.size();
  struct Use {
    std::string_view op;
    int line;
  };
  std::map<std::string, Use> uses;  // lower-case name -> first set/add/remove of it
  // False (after reporting) when `name` was already used by another operation, or twice by one
  // that replaces (set, remove): the outcome would depend on the order edits are applied in.
  const auto note_use = [&](const std::string& name, std::string_view op, SourceMark mark) {
    auto [prev, inserted] = uses.emplace(lower(name), Use{op, mark.line});
    if (inserted) return true;
    if (prev->second.op != op) {
      error(mark, fmt::format("header '{}' is in both {} (line {}) and {}", name, prev->second.op,
                              prev->second.line, op));
      return false;
    }
    if (op == "add") return true;  // several fields of one name are fine
    error(mark, fmt::format("duplicate header '{}'; first {} at line {}", name,
                            op == "set" ? "set" : "listed", prev->second.line));
    return false;
  };
  for (const Field& f : map->fields) {
    if (f.key == "remove") {
      auto names = read_strings(f.value, "remove");
      if (!names) {
        ok = false;
        continue;
      }
      for (const Item& name : *names) {
        if (!is_token(name.text)) {
          error(name.mark, fmt::format("invalid header name '{}'", name.text));
          ok = false;
        } else if (icontains(kUnremovableHeaders, name.text)) {
          error(name.mark,
                fmt::format("header '{}' frames the message and cannot be removed", name.text));
          ok = false;
        } else if (!note_use(name.text, "remove", name.mark)) {
          ok = false;
        } else {
          edits.remove.push_back(lower(name.text));
        }
      }
      continue;
    }
    // set or add
    auto headers = open_named_map(f.value);
    if (!headers) {
      ok = false;
      continue;
    }
    ok = ok && headers->fields.size() == f.value.node.size();
    for (const Field& h : headers->fields) {
      if (!is_token(h.key)) {
        error(h.key_mark, fmt::format("invalid header name '{}'", h.key));
        ok = false;
        continue;
      }
      if (icontains(kUneditableHeaders, h.key)) {
        error(h.key_mark,
              fmt::format("header '{}' is set by the proxy and cannot be configured", h.key));
        ok = false;
        continue;
      }
      if (!note_use(h.key, f.key, h.key_mark)) {
        ok = false;
        continue;
      }
      auto value = read_string(h.value);
      if (!value) {
        ok = false;
        continue;
      }
      if (const char* bad = bad_field_value(*value)) {
        error(h.value.mark, fmt::format("header '{}' value must not contain {}", h.key, bad));
        ok = false;
        continue;
      }
      (f.key == "set" ? edits.set : edits.add).push_back({h.key, std::move(*value)});
    }
  }
  if (!ok) return std::nullopt;
  return edits;
}

std::optional<PathRewrite> Loader::read_rewrite(const Value& v) {
  auto map = open_map(v, "rewrite", kRewriteKeys);
  if (!map) return std::nullopt;
  if (map->fields.size() != v.node.size()) return std::nullopt;  // open_map reported a key
  if (map->fields.size() != 1) {
    error(map->mark, fmt::format("rewrite needs exactly one of {}", join(kRewriteKeys)));
    return std::nullopt;
  }
  const Field& f = map->fields.front();
  PathRewrite rewrite;
  const bool prefix = f.key == "path_prefix";
  const std::string section = fmt::format("rewrite.{}", f.key);
  auto parts = open_map(f.value, section, prefix ? kRewritePrefixKeys : kRewriteRegexKeys);
  if (!parts) return std::nullopt;
  bool ok = parts->fields.size() == f.value.node.size();
  for (std::string_view key : prefix ? kRewritePrefixKeys : kRewriteRegexKeys) {
    ok = require(*parts, key, section) && ok;
  }
  // What the rewrite produces goes into the request line: a space there would split it.
  const auto check_output = [&](std::string_view text, SourceMark mark, std::string_view what) {
    for (char c : text) {
      if (c == '?') {
        error(mark, fmt::format("{} must not contain '?'; the request's query is kept", what));
        return false;
      }
      if (!is_path_char(c) && c != '\\') {
        error(mark, fmt::format("{} contains '{}'; write it percent-encoded as %{:02X}", what,
                                shown_char(c), static_cast<unsigned char>(c)));
        return false;
      }
    }
    return true;
  };
  if (prefix) {
    rewrite.kind = PathRewrite::Kind::kPrefix;
    // `from` is compared with the path as the client sent it, so it need not be normalised.
    for (std::string_view key : kRewritePrefixKeys) {
      const Value* part = parts->get(key);
      if (part == nullptr) continue;
      const std::string what = fmt::format("rewrite {}", key);
      auto text = read_string(*part);
      if (text && !text->starts_with('/')) {
        error(part->mark, fmt::format("{} must start with '/'", what));
        text.reset();
      }
      if (text && !check_output(*text, part->mark, what)) text.reset();
      if (text) (key == "from" ? rewrite.from : rewrite.to) = std::move(*text);
      ok = ok && text.has_value();
    }
  } else {
    rewrite.kind = PathRewrite::Kind::kRegex;
    int groups = -1;
    if (const Value* pattern = parts->get("pattern")) {
      auto text = read_regex(*pattern, &groups);
      if (text) rewrite.from = std::move(*text);
      ok = ok && text.has_value();
    }
    if (const Value* replace = parts->get("replace")) {
      auto text = read_string(*replace);
      if (text && groups >= 0) {
        if (std::string message = check_replacement(*text, groups); !message.empty()) {
          error(replace->mark, std::move(message));
          text.reset();
        }
      }
      if (text && !check_output(*text, replace->mark, "rewrite replace")) text.reset();
      if (text) rewrite.to = std::move(*text);
      ok = ok && text.has_value();
    }
  }
  if (!ok) return std::nullopt;
  return rewrite;
}

std::optional<Respond> Loader::read_respond(const Value& v) {
  auto map = open_map(v, "respond", kRespondKeys);
  if (!map) return std::nullopt;
  Respond respond;
  bool ok = true;
  const Value* status = map->get("status");
  if (status != nullptr) {
    auto n = read_int(*status, "respond.status", 100, 599);
    if (n) respond.status = static_cast<int>(*n);
    ok = ok && n.has_value();
  }
  if (const Value* h = map->get("headers")) {
    if (auto headers = open_named_map(*h)) {
      std::vector<const Field*> seen;
      for (const Field& f : headers->fields) {
        if (!is_token(f.key)) {
          error(f.key_mark, fmt::format("invalid header name '{}'", f.key));
          ok = false;
          continue;
        }
        // The proxy frames the message and manages the connection itself; a configured value
        // could contradict what it writes and desynchronise the client.
        if (std::find_if(std::begin(kProxyOwnedHeaders), std::end(kProxyOwnedHeaders),
                         [&](std::string_view h) { return iequals(h, f.key); }) !=
            std::end(kProxyOwnedHeaders)) {
          error(f.key_mark,
                fmt::format("header '{}' is set by the proxy and cannot be configured", f.key));
          ok = false;
          continue;
        }
        // Header names are case-insensitive, so "Content-Type" and "content-type" are the same
        // header even though YAML sees two keys.
        auto prev = std::find_if(seen.begin(), seen.end(),
                                 [&](const Field* s) { return iequals(s->key, f.key); });
        if (prev != seen.end()) {
          error(f.key_mark, fmt::format("duplicate header '{}'; first set at line {}", f.key,
                                        (*prev)->key_mark.line));
          ok = false;
          continue;
        }
        seen.push_back(&f);
        auto value = read_string(f.value);
        if (!value) {
          ok = false;
          continue;
        }
        // CR or LF would let the value end the header line and inject headers of its own.
        if (const char* bad = bad_field_value(*value)) {
          error(f.value.mark, fmt::format("header '{}' value must not contain {}", f.key, bad));
          ok = false;
          continue;
        }
        respond.headers.push_back({f.key, *value});
      }
    } else {
      ok = false;
    }
  }
  if (const Value* b = map->get("body")) {
    auto body = read_string(*b);
    if (body) {
      respond.body = std::move(*body);
      const int s = respond.status;
      if (!respond.body.empty() && (s < 200 || s == 204 || s == 304)) {
        // RFC 9110 forbids content in these responses, so clients would misread the stream.
        error(b->mark, fmt::format("a {} response cannot have a body", s));
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return respond;
}

void Loader::read_pools(const Value& v) {
  auto pools = open_named_map(v);
  if (!pools) return;
  for (const Field& f : pools->fields) {
    defined_pools_.push_back(f.key);
    read_pool(f.key, f.key_mark, f.value);
  }
}

void Loader::read_pool(const std::string& name, SourceMark mark, const Value& v) {
  auto map = open_map(v, "pool", kPoolKeys);
  if (!map) return;
  Pool pool;
  pool.name = name;
  pool.mark = mark;
  bool ok = require(*map, "servers", fmt::format("pool '{}'", name));
  // Null when the scheduler is not known; checks that depend on it are then skipped.
  const upstream::SchedulerInfo* scheduler = upstream::find_scheduler(pool.scheduler);
  if (const Value* s = map->get("scheduler")) {
    scheduler = nullptr;
    if (auto text = read_string(*s)) {
      scheduler = upstream::find_scheduler(*text);
      if (scheduler == nullptr) {
        std::vector<std::string_view> names;
        for (const upstream::SchedulerInfo& info : upstream::schedulers()) {
          names.push_back(info.name);
        }
        error(s->mark, fmt::format("unsupported scheduler '{}'; this build supports: {}", *text,
                                   join(names)));
      } else {
        pool.scheduler = *text;
      }
    }
    ok = ok && scheduler != nullptr;
  }
  // hash and fallback configure hashing schedulers only; elsewhere they would silently do nothing.
  for (std::string_view key : {"hash", "fallback"}) {
    const Field* f = map->field(key);
    if (f == nullptr || scheduler == nullptr || scheduler->default_key != HashKey::On::kDefault) {
      continue;
    }
    std::vector<std::string_view> hashing;
    for (const upstream::SchedulerInfo& info : upstream::schedulers()) {
      if (info.default_key != HashKey::On::kDefault) hashing.push_back(info.name);
    }
    if (hashing.empty()) {
      error(f->key_mark, fmt::format("{} is only allowed with a hashing scheduler, and this build "
                                     "has none",
                                     key));
    } else {
      error(f->key_mark,
            fmt::format("{} is only allowed with a hashing scheduler ({}); '{}' does not hash", key,
                        join(hashing), scheduler->name));
    }
    ok = false;
  }
  if (const Value* h = map->get("hash")) {
    auto hash = read_hash(*h);
    if (hash) pool.hash = std::move(*hash);
    ok = ok && hash.has_value();
  }
  if (const Value* f = map->get("fallback")) {
    auto b = read_bool(*f);
    if (b) pool.fallback = *b;
    ok = ok && b.has_value();
  }
  if (const Value* m = map->get("max_idle_per_server")) {
    auto n = read_int(*m, "max_idle_per_server", 0, kMaxIdlePerServer);
    if (n) pool.max_idle_per_server = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
  }
  if (const Value* r = map->get("retries")) {
    auto n = read_int(*r, "retries", 0, kMaxRetries);
    if (n) pool.retries = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
  }
  for (auto [key, member] : {std::pair{"connect_timeout", &Pool::connect_timeout},
                             std::pair{"response_timeout", &Pool::response_timeout}}) {
    if (const Value* t = map->get(key)) {
      auto d = read_timeout(*t, key);
      if (d) pool.*member = *d;
      ok = ok && d.has_value();
    }
  }
  if (const Value* q = map->get("queue")) {
    auto queue = read_queue(*q);
    if (queue) pool.queue = *queue;
    ok = ok && queue.has_value();
  }
  if (const Value* p = map->get("persistence")) {
    auto persistence = read_persistence(*p);
    if (persistence) pool.persistence = std::move(*persistence);
    ok = ok && persistence.has_value();
  }
  if (const Value* h = map->get("health")) {
    pool.health = read_health(*h);
    ok = ok && pool.health.has_value();
  }
  if (const Value* o = map->get("outlier")) {
    auto outlier = read_outlier(*o);
    if (outlier) pool.outlier = *outlier;
    ok = ok && outlier.has_value();
  }
  if (const Value* s = map->get("servers")) {
    if (!expect_list(*s)) {
      ok = false;
    } else if (s->node.size() == 0) {
      error(s->mark, fmt::format("pool '{}' needs at least one server", name));
      ok = false;
    } else if (s->node.size() > kMaxServersPerPool) {
      // The balancer tracks tried servers in a 64-bit mask.
      error(s->mark, fmt::format("pool '{}' has {} servers; at most {} are supported", name,
                                 s->node.size(), kMaxServersPerPool));
      ok = false;
    } else {
      std::map<std::string, int> seen;  // bind key -> line
      bool servers_ok = true;
      for (const YAML::Node& item : s->node) {
        const Value server_value = item_of(item);
        auto server = read_server(server_value);
        if (!server) {
          servers_ok = false;
          continue;
        }
        if (auto key = bind_key(server->address)) {
          auto [prev, inserted] = seen.emplace(*key, server_value.mark.line);
          if (!inserted) {
            error(server_value.mark,
                  fmt::format("duplicate server {} in pool '{}'; first listed at line {}",
                              server->address.text, name, prev->second));
            servers_ok = false;
            continue;
          }
        }
        pool.servers.push_back(std::move(*server));
      }
      // Only judged on a complete list: a server with errors might be the non-backup one.
      if (servers_ok && std::all_of(pool.servers.begin(), pool.servers.end(),
                                    [](const Server& server) { return server.backup; })) {
        error(s->mark, fmt::format("every server of pool '{}' is a backup; backups are used only "
                                   "while no other server is available, so at least one server "
                                   "must not be a backup",
                                   name));
        servers_ok = false;
      }
      ok = ok && servers_ok;
    }
  }
  if (const Value* t = map->get("tls")) {
    pool.tls = read_tls_upstream(*t);
    ok = ok && pool.tls.has_value();
  }
  if (ok) config_.pools.emplace(name, std::move(pool));
}

void Loader::not_a_server(const Value& v) {
  error(v.mark,
        fmt::format("expected a server address or a map with 'address', got {}", kind_of(v.node)));
}

bool Loader::has_server_port(const std::optional<SocketAddress>& address, const Value& where) {
  if (!address) return false;
  if (port_of(*address) == 0) {
    error(where.mark,
          fmt::format("invalid address '{}': a server needs a port other than 0", address->text));
    return false;
  }
  return true;
}

std::optional<Server> Loader::read_server(const Value& v) {
  Server server;
  std::optional<SocketAddress> address;
  Value address_value = v;
  if (v.node.IsScalar()) {
    address = read_address(v);
  } else if (v.node.IsMap()) {
    auto map = open_map(v, "server", kServerKeys);
    if (!map) return std::nullopt;
    bool ok = require(*map, "address", "server");
    if (const Value* w = map->get("weight")) {
      auto n = read_int(*w, "weight", kMinWeight, kMaxWeight);
      if (n) server.weight = static_cast<std::uint32_t>(*n);
      ok = ok && n.has_value();
    }
    if (const Value* m = map->get("max_connections")) {
      auto n = read_int(*m, "max_connections", 0, kMaxServerConnections);
      if (n) server.max_connections = static_cast<std::uint32_t>(*n);
      ok = ok && n.has_value();
    }
    for (auto [key, member] :
         {std::pair{"drain", &Server::drain}, std::pair{"backup", &Server::backup},
          std::pair{"maintenance", &Server::maintenance}}) {
      if (const Value* b = map->get(key)) {
        auto flag = read_bool(*b);
        if (flag) server.*member = *flag;
        ok = ok && flag.has_value();
      }
    }
    if (const Value* a = map->get("address")) {
      address_value = *a;
      address = read_address(*a);
    }
    if (const Value* a = map->get("agent")) {
      auto agent = read_address(*a);
      if (agent && !has_server_port(agent, *a)) agent.reset();
      if (agent) server.agent = std::move(*agent);
      ok = ok && agent.has_value();
    }
    if (!ok) return std::nullopt;
  } else {
    not_a_server(v);
    return std::nullopt;
  }
  if (!has_server_port(address, address_value)) return std::nullopt;
  server.address = std::move(*address);
  return server;
}

std::optional<HashKey> Loader::read_hash(const Value& v) {
  HashKey hash;
  if (v.node.IsScalar()) {
    const std::string& word = v.node.Scalar();
    if (word == "source") {
      hash.on = HashKey::On::kSource;
    } else if (word == "source_port") {
      hash.on = HashKey::On::kSourcePort;
    } else if (word == "url") {
      hash.on = HashKey::On::kUrl;
    } else if (auto suggestion = closest(word, kHashWords)) {
      error(v.mark, fmt::format("unknown hash '{}'; did you mean '{}'?", word, *suggestion));
      return std::nullopt;
    } else {
      error(v.mark, fmt::format("unknown hash '{}'; expected {}, or a map with header or cookie",
                                word, join(kHashWords)));
      return std::nullopt;
    }
    return hash;
  }
  if (!v.node.IsMap()) {
    error(v.mark, fmt::format("expected {}, or a map with header or cookie, got {}",
                              join(kHashWords), kind_of(v.node)));
    return std::nullopt;
  }
  auto f = read_one_of(v, "hash", kHashKeys);
  if (!f) return std::nullopt;
  const bool header = f->key == "header";
  auto name = read_name(f->value, header ? "hash header name" : "hash cookie name");
  if (!name) return std::nullopt;
  if (!is_token(*name)) {
    error(f->value.mark, fmt::format("invalid {} name '{}'", f->key, *name));
    return std::nullopt;
  }
  hash.on = header ? HashKey::On::kHeader : HashKey::On::kCookie;
  hash.name = header ? lower(*name) : std::move(*name);  // header names are case-insensitive
  return hash;
}

std::optional<Queue> Loader::read_queue(const Value& v) {
  auto map = open_map(v, "queue", kQueueKeys);
  if (!map) return std::nullopt;
  Queue queue;
  bool ok = true;
  if (const Value* s = map->get("size")) {
    auto n = read_int(*s, "queue.size", 0, kMaxQueueSize);
    if (n) queue.size = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
  }
  if (const Value* t = map->get("timeout")) {
    auto d = read_timeout(*t, "queue.timeout");
    if (d) queue.timeout = *d;
    ok = ok && d.has_value();
  }
  if (!ok) return std::nullopt;
  return queue;
}

std::optional<Persistence> Loader::read_persistence(const Value& v) {
  auto f = read_one_of(v, "persistence", kPersistenceKeys);
  if (!f) return std::nullopt;
  Persistence persistence;
  bool ok = true;
  if (f->key == "source") {
    persistence.kind = Persistence::Kind::kSource;
    auto map = open_map(f->value, "persistence.source", kSourcePersistenceKeys);
    if (!map) return std::nullopt;
    if (const Value* t = map->get("timeout")) {
      auto d = read_duration(*t, "persistence.source.timeout", kMinPersistenceTimeout,
                             kMaxPersistenceTimeout);
      if (d) persistence.timeout = *d;
      ok = ok && d.has_value();
    }
    for (auto [key, bits, member] : {std::tuple{"netmask", 32, &Persistence::netmask_v4},
                                     std::tuple{"netmask_v6", 128, &Persistence::netmask_v6}}) {
      if (const Value* n = map->get(key)) {
        auto length = read_int(*n, fmt::format("persistence.source.{}", key), 0, bits);
        if (length) persistence.*member = static_cast<std::uint8_t>(*length);
        ok = ok && length.has_value();
      }
    }
  } else {
    persistence.kind = Persistence::Kind::kCookie;
    auto map = open_map(f->value, "persistence.cookie", kCookiePersistenceKeys);
    if (!map) return std::nullopt;
    if (const Value* n = map->get("name")) {
      auto name = read_name(*n, "persistence cookie name");
      if (name && !is_token(*name)) {
        error(n->mark, fmt::format("invalid cookie name '{}'", *name));
        name.reset();
      }
      if (name) persistence.cookie = std::move(*name);
      ok = ok && name.has_value();
    }
  }
  if (!ok) return std::nullopt;
  return persistence;
}

// A configured duration for a message: as written, or the default it stands for.
std::string shown_duration(const Value* v, Millis value) {
  if (v != nullptr) return v->node.Scalar();
  return fmt::format("({} by default)", format_duration(value));
}

std::optional<HealthCheck> Loader::read_health(const Value& v) {
  auto map = open_map(v, "health", kHealthKeys);
  if (!map) return std::nullopt;
  HealthCheck health;
  bool ok = map->fields.size() == v.node.size();  // false: open_map reported a key
  const int kinds = static_cast<int>(
      std::count_if(std::begin(kHealthKinds), std::end(kHealthKinds),
                    [&](std::string_view kind) { return map->get(kind) != nullptr; }));
  // With a misspelt key the message above is the one that helps.
  if (ok && kinds != 1) {
    error(map->mark, fmt::format("health needs exactly one of {}", join(kHealthKinds)));
    ok = false;
  }
  if (const Value* h = map->get("http")) {
    health.kind = HealthCheck::Kind::kHttp;
    ok = read_health_http(*h, health) && ok;
  }
  if (const Value* t = map->get("tcp")) {
    health.kind = HealthCheck::Kind::kTcp;
    auto tcp = read_bool(*t);
    if (tcp && !*tcp) {
      error(t->mark,
            "health.tcp can only be true; to turn active health checks off, leave out health");
      tcp.reset();
    }
    ok = ok && tcp.has_value();
  }
  const Value* interval = map->get("interval");
  bool interval_ok = true;
  if (interval != nullptr) {
    auto d = read_duration(*interval, "health.interval", kMinHealthInterval, kMaxTimeout);
    if (d) health.interval = *d;
    interval_ok = d.has_value();
  }
  if (const Value* t = map->get("timeout")) {
    auto d = read_timeout(*t, "health.timeout");
    if (d && interval_ok && *d > health.interval) {
      error(t->mark, fmt::format("health.timeout {} must not be longer than health.interval {}: "
                                 "a check must end before the next one starts",
                                 t->node.Scalar(), shown_duration(interval, health.interval)));
      d.reset();
    }
    if (d) health.timeout = *d;
    ok = ok && d.has_value();
  }
  ok = ok && interval_ok;
  for (auto [key, member] :
       {std::pair{"rise", &HealthCheck::rise}, std::pair{"fall", &HealthCheck::fall}}) {
    if (const Value* n = map->get(key)) {
      auto count = read_int(*n, fmt::format("health.{}", key), 1, kMaxHealthCount);
      if (count) health.*member = static_cast<std::uint32_t>(*count);
      ok = ok && count.has_value();
    }
  }
  if (const Value* j = map->get("jitter")) {
    // "10%" or a plain 10.
    std::optional<std::uint32_t> percent;
    if (!j->node.IsScalar()) {
      error(j->mark, fmt::format("expected a percentage, e.g. 10%, got {}", kind_of(j->node)));
    } else {
      std::string_view text = j->node.Scalar();
      if (text.ends_with('%')) text.remove_suffix(1);
      int n = -1;  // stays out of range when too long for an int
      if (all_digits(text)) std::from_chars(text.data(), text.data() + text.size(), n);
      if (!all_digits(text)) {
        error(j->mark, fmt::format("expected a percentage, e.g. 10%, got '{}'", j->node.Scalar()));
      } else if (n < 0 || n > kMaxJitterPercent) {
        error(j->mark, fmt::format("health.jitter must be between 0% and {}%, got {}",
                                   kMaxJitterPercent, j->node.Scalar()));
      } else {
        percent = static_cast<std::uint32_t>(n);
      }
    }
    if (percent) health.jitter_percent = *percent;
    ok = ok && percent.has_value();
  }
  if (!ok) return std::nullopt;
  return health;
}

bool Loader::read_health_http(const Value& v, HealthCheck& health) {
  auto map = open_map(v, "health.http", kHealthHttpKeys);
  if (!map) return false;
  bool ok = true;
  if (const Value* m = map->get("method")) {
    auto method = read_name(*m, "health.http.method");
    if (method && !is_token(*method)) {
      error(m->mark,
            fmt::format("invalid health.http.method '{}'; a method is a token, e.g. GET", *method));
      method.reset();
    }
    if (method) health.method = std::move(*method);
    ok = ok && method.has_value();
  }
  if (const Value* p = map->get("path")) {
    auto path = read_string(*p);
    if (path) {
      if (std::string message = check_health_path(*path); message.empty()) {
        health.path = std::move(*path);
      } else {
        error(p->mark, std::move(message));
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const Value* h = map->get("host")) {
    auto host = read_name(*h, "health.http.host");
    const auto is_host_char = [](char c) {
      const char l = ascii_lower(c);
      return (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') ||
             std::string_view("-._:[]").find(c) != std::string_view::npos;
    };
    if (host && !std::all_of(host->begin(), host->end(), is_host_char)) {
      error(h->mark, fmt::format("invalid health.http.host '{}': expected a host name or IP "
                                 "address, optionally with a port",
                                 *host));
      host.reset();
    }
    if (host) health.host = std::move(*host);
    ok = ok && host.has_value();
  }
  if (const Value* e = map->get("expect")) {
    // 200, or an inclusive range "200-399".
    bool expect_ok = false;
    if (!e->node.IsScalar()) {
      error(e->mark, fmt::format("expected a status code or a range, e.g. 200 or 200-399, got {}",
                                 kind_of(e->node)));
    } else {
      const std::string& text = e->node.Scalar();
      const std::size_t dash = text.find('-');
      const std::string_view low = std::string_view(text).substr(0, dash);
      const std::string_view high =
          dash == std::string::npos ? low : std::string_view(text).substr(dash + 1);
      const auto status = [](std::string_view s) {
        int n = -1;
        if (all_digits(s) && s.size() <= 3) std::from_chars(s.data(), s.data() + s.size(), n);
        return n;
      };
      const int min = status(low), max = status(high);
      if (!all_digits(low) || !all_digits(high)) {
        error(e->mark, fmt::format("invalid health.http.expect '{}': expected a status code or a "
                                   "range, e.g. 200 or 200-399",
                                   text));
      } else if (min < 100 || min > 599 || max < 100 || max > 599) {
        error(e->mark, fmt::format("health.http.expect must be between 100 and 599, got {}", text));
      } else if (min > max) {
        error(e->mark, fmt::format("health.http.expect range '{}' is empty; did you mean '{}-{}'?",
                                   text, max, min));
      } else {
        health.expect_min = min;
        health.expect_max = max;
        expect_ok = true;
      }
    }
    ok = ok && expect_ok;
  }
  if (const Value* b = map->get("body")) {
    auto body = read_string(*b);
    if (body) health.body_contains = std::move(*body);
    ok = ok && body.has_value();
  }
  return ok;
}

std::optional<OutlierDetection> Loader::read_outlier(const Value& v) {
  auto map = open_map(v, "outlier", kOutlierKeys);
  if (!map) return std::nullopt;
  OutlierDetection outlier;
  bool ok = true;
  if (const Value* c = map->get("consecutive_failures")) {
    auto n = read_int(*c, "outlier.consecutive_failures", 0, kMaxConsecutiveFailures);
    if (n) outlier.consecutive_failures = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
  }
  if (const Value* c = map->get("count_5xx")) {
    auto b = read_bool(*c);
    if (b) outlier.count_5xx = *b;
    ok = ok && b.has_value();
  }
  const Value* base = map->get("base_ejection");
  const Value* max = map->get("max_ejection");
  bool ejections_ok = true;
  for (auto [value, key, member] :
       {std::tuple{base, "base_ejection", &OutlierDetection::base_ejection},
        std::tuple{max, "max_ejection", &OutlierDetection::max_ejection}}) {
    if (value == nullptr) continue;
    auto d = read_timeout(*value, fmt::format("outlier.{}", key));
    if (d) outlier.*member = *d;
    ejections_ok = ejections_ok && d.has_value();
  }
  if (ejections_ok && outlier.max_ejection < outlier.base_ejection) {
    // Pointed at what was written; with both given, at max_ejection.
    constexpr std::string_view kWhy =
        "an ejection starts at base_ejection and doubles up to max_ejection";
    if (max != nullptr) {
      error(max->mark,
            fmt::format("outlier.max_ejection {} must not be shorter than "
                        "outlier.base_ejection {}: {}",
                        max->node.Scalar(), shown_duration(base, outlier.base_ejection), kWhy));
    } else {
      error(base->mark,
            fmt::format("outlier.base_ejection {} must not be longer than "
                        "outlier.max_ejection {}: {}",
                        base->node.Scalar(), shown_duration(max, outlier.max_ejection), kWhy));
    }
    ejections_ok = false;
  }
  ok = ok && ejections_ok;
  if (!ok) return std::nullopt;
  return outlier;
}

void Loader::read_admin(const Value& v) {
  auto map = open_map(v, "admin", kAdminKeys);
  if (!map) return;
  bool ok = require(*map, "bind", "admin");
  ok = require(*map, "token_file", "admin") && ok;
  Admin admin;
  // Both addresses must differ from every listener's and from each other.
  auto read_bind = [&](const Value& b, std::string_view owner) -> std::optional<SocketAddress> {
    auto address = read_address(b);
    if (!address) return std::nullopt;
    if (auto key = bind_key(*address)) {
      auto [prev, inserted] = binds_.emplace(*key, BindUse{std::string(owner), b.mark.line});
      if (!inserted) {
        error(b.mark, fmt::format("duplicate bind {}; already used by {} at line {}", address->text,
                                  prev->second.owner, prev->second.line));
        return std::nullopt;
      }
    }
    return address;
  };
  if (const Value* b = map->get("bind")) {
    auto address = read_bind(*b, "admin");
    if (address) admin.bind = std::move(*address);
    ok = ok && address.has_value();
  }
  if (const Value* b = map->get("metrics_bind")) {
    auto address = read_bind(*b, "admin.metrics_bind");
    if (address) admin.metrics_bind = std::move(*address);
    ok = ok && address.has_value();
  }
  for (auto [key, member] : {std::pair{"token_file", &Admin::token_file},
                             std::pair{"read_only_token_file", &Admin::read_only_token_file}}) {
    if (const Value* f = map->get(key)) {
      auto file = read_name(*f, fmt::format("admin.{}", key));
      if (file) admin.*member = resolve_path(*file);
      ok = ok && file.has_value();
    }
  }
  if (const Value* t = map->get("tls")) {
    auto tls = open_map(*t, "admin.tls", kAdminTlsKeys);
    bool has = tls && require(*tls, "cert", "admin.tls");
    has = tls && require(*tls, "key", "admin.tls") && has;
    std::optional<std::string> cert, key;
    if (has) {
      cert = read_name(*tls->get("cert"), "admin.tls.cert");
      key = read_name(*tls->get("key"), "admin.tls.key");
    }
    if (cert && key) {
      TlsCertificate tc{resolve_path(*cert), resolve_path(*key), t->mark};
      if (std::string why = tls::check_certificate_pair(tc.cert, tc.key); !why.empty()) {
        error(t->mark, why);
        ok = false;
      } else {
        admin.tls = std::move(tc);
      }
    } else {
      ok = false;
    }
  }
  if (ok) config_.admin = std::move(admin);
}

// ---------------------------------------------------------------------------------------------
// l4: the kernel fast path (src/l4/). Limits come from the BPF map sizes in l4/abi/l4_abi.h.

void Loader::read_l4(const Value& v) {
  auto map = open_map(v, "l4", kL4Keys);
  if (!map) return;
  L4 l4;
  l4.mark = v.mark;
  bool ok = map->fields.size() == v.node.size();  // false: open_map reported a key
  if (const Value* i = map->get("interfaces")) {
    auto names = read_strings(*i, "l4.interfaces");
    if (names) {
      std::map<std::string, int> seen;  // name -> line
      for (const Item& name : *names) {
        // IFNAMSIZ is 16 with the terminating NUL; '/' and blanks cannot appear in a name.
        const bool valid = !name.text.empty() && name.text.size() <= 15 &&
                           name.text.find_first_of("/ \t:") == std::string::npos;
        if (!valid) {
          error(name.mark, fmt::format("invalid interface name '{}': expected 1 to 15 characters "
                                       "without '/', ':' or blanks",
                                       name.text));
          ok = false;
        } else if (auto [prev, inserted] = seen.emplace(name.text, name.mark.line); !inserted) {
          error(name.mark, fmt::format("duplicate interface '{}'; first listed at line {}",
                                       name.text, prev->second));
          ok = false;
        } else {
          l4.interfaces.push_back(name.text);
        }
      }
    }
    ok = ok && names.has_value();
  }
  if (const Value* m = map->get("xdp_mode")) {
    auto text = read_string(*m);
    if (text) {
      if (*text == "auto") {
        l4.xdp_mode = L4::XdpMode::kAuto;
      } else if (*text == "native") {
        l4.xdp_mode = L4::XdpMode::kNative;
      } else if (*text == "generic") {
        l4.xdp_mode = L4::XdpMode::kGeneric;
      } else {
        error(m->mark,
              fmt::format("unknown xdp_mode '{}'; expected one of: {}", *text, join(kL4XdpModes)));
        text.reset();
      }
    }
    ok = ok && text.has_value();
  }
  if (const Value* p = map->get("pin_path")) {
    auto path = read_name(*p, "l4.pin_path");
    if (path && path->front() != '/') {
      error(p->mark, fmt::format("l4.pin_path must be an absolute path (a directory on bpffs, "
                                 "e.g. /sys/fs/bpf/switchyard), got '{}'",
                                 *path));
      path.reset();
    }
    if (path) l4.pin_path = std::move(*path);
    ok = ok && path.has_value();
  }
  if (const Value* c = map->get("connections")) ok = read_l4_connections(*c, l4) && ok;
  if (const Value* s = map->get("services")) {
    if (!expect_list(*s)) {
      ok = false;
    } else if (s->node.size() > L4_MAX_SERVICES) {
      error(s->mark, fmt::format("l4 has {} services; at most {} are supported", s->node.size(),
                                 L4_MAX_SERVICES));
      ok = false;
    } else {
      std::map<std::string, int> names;  // name -> line
      std::map<std::string, int> vips;   // "vip/proto" -> line
      std::size_t reals = 0;
      for (const YAML::Node& item : s->node) {
        const Value service_value = item_of(item);
        auto service = read_l4_service(service_value);
        if (!service) {
          ok = false;
          continue;
        }
        if (auto [prev, inserted] = names.emplace(service->name, service->mark.line); !inserted) {
          error(service->mark, fmt::format("duplicate l4 service '{}'; first defined at line {}",
                                           service->name, prev->second));
          ok = false;
          continue;
        }
        const std::string vip_key = fmt::format(
            "{}/{}", bind_key(service->vip).value_or(service->vip.text), service->protocol);
        if (auto [prev, inserted] = vips.emplace(vip_key, service->mark.line); !inserted) {
          error(service->mark,
                fmt::format("l4 service '{}' repeats {} {} of the service at line {}",
                            service->name, service->protocol == IPPROTO_UDP ? "udp" : "tcp",
                            service->vip.text, prev->second));
          ok = false;
          continue;
        }
        reals += service->servers.size();
        l4.services.push_back(std::move(*service));
      }
      if (reals > L4_MAX_REALS) {
        error(s->mark, fmt::format("l4 services have {} servers together; at most {} are "
                                   "supported",
                                   reals, L4_MAX_REALS));
        ok = false;
      }
    }
  }
  if (ok && !l4.services.empty() && l4.interfaces.empty()) {
    error(v.mark,
          "l4 has services but no interfaces: list where the XDP program is attached, "
          "e.g. interfaces: [eth0]");
    ok = false;
  }
  if (ok) config_.l4 = std::move(l4);
}

bool Loader::read_l4_connections(const Value& v, L4& l4) {
  auto map = open_map(v, "l4.connections", kL4ConnectionKeys);
  if (!map) return false;
  bool ok = map->fields.size() == v.node.size();
  if (const Value* s = map->get("size")) {
    auto n = read_int(*s, "l4.connections.size", kMinL4Connections, kMaxL4Connections);
    if (n) l4.connections = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
  }
  for (auto [key, member] : {std::pair{"tcp_timeout", &L4::tcp_timeout},
                             std::pair{"tcp_fin_timeout", &L4::tcp_fin_timeout},
                             std::pair{"udp_timeout", &L4::udp_timeout}}) {
    if (const Value* t = map->get(key)) {
      // Flow entries are refreshed once a second, so shorter timeouts would not be honoured.
      auto d = read_duration(*t, fmt::format("l4.connections.{}", key), Millis(1000), kMaxTimeout);
      if (d) l4.*member = *d;
      ok = ok && d.has_value();
    }
  }
  return ok;
}

std::optional<L4Mode> Loader::read_l4_mode(const Value& v) {
  auto text = read_string(v);
  if (!text) return std::nullopt;
  if (*text == "nat") return L4Mode::kNat;
  if (*text == "dr") return L4Mode::kDr;
  if (*text == "tun") return L4Mode::kTun;
  if (auto suggestion = closest(lower(*text), kL4Modes)) {
    error(v.mark, fmt::format("unknown l4 mode '{}'; did you mean '{}'?", *text, *suggestion));
  } else {
    error(v.mark, fmt::format("unknown l4 mode '{}'; expected one of: {}", *text, join(kL4Modes)));
  }
  return std::nullopt;
}

std::optional<L4Service> Loader::read_l4_service(const Value& v) {
  auto map = open_map(v, "l4 service", kL4ServiceKeys);
  if (!map) return std::nullopt;
  L4Service service;
  service.mark = v.mark;
  bool ok = map->fields.size() == v.node.size();
  ok = require(*map, "name", "l4 service") && ok;
  ok = require(*map, "vip", "l4 service") && ok;
  ok = require(*map, "servers", "l4 service") && ok;
  if (const Value* n = map->get("name")) {
    auto name = read_name(*n, "l4 service name");
    if (name) service.name = std::move(*name);
    ok = ok && name.has_value();
  }
  bool vip_ok = false;
  if (const Value* a = map->get("vip")) {
    auto vip = read_address(*a);
    if (vip && port_of(*vip) == 0) {
      error(a->mark, fmt::format("invalid vip '{}': a virtual service needs a port other than 0",
                                 vip->text));
      vip.reset();
    }
    if (vip) service.vip = std::move(*vip);
    vip_ok = vip.has_value();
    ok = ok && vip_ok;
  }
  if (const Value* p = map->get("protocol")) {
    auto text = read_string(*p);
    if (text && *text == "tcp") {
      service.protocol = IPPROTO_TCP;
    } else if (text && *text == "udp") {
      service.protocol = IPPROTO_UDP;
    } else if (text) {
      error(p->mark, fmt::format("unknown protocol '{}'; expected tcp or udp", *text));
      text.reset();
    }
    ok = ok && text.has_value();
  }
  if (const Value* s = map->get("scheduler")) {
    auto text = read_string(*s);
    if (text && !contains(kL4Schedulers, *text)) {
      if (auto suggestion = closest(lower(*text), kL4Schedulers)) {
        error(s->mark,
              fmt::format("unsupported l4 scheduler '{}'; did you mean '{}'?", *text, *suggestion));
      } else {
        error(s->mark, fmt::format("unsupported l4 scheduler '{}'; the L4 fast path supports: {}",
                                   *text, join(kL4Schedulers)));
      }
      text.reset();
    }
    if (text) service.scheduler = std::move(*text);
    ok = ok && text.has_value();
  }
  if (const Field* h = map->field("hash")) {
    auto text = read_string(h->value);
    if (text && service.scheduler != "sh" && service.scheduler != "mh") {
      error(h->key_mark, fmt::format("hash is only allowed with the sh and mh schedulers; '{}' "
                                     "does not hash the client",
                                     service.scheduler));
      text.reset();
    } else if (text && *text != "source" && *text != "source_port") {
      error(h->value.mark,
            fmt::format("unknown l4 hash '{}'; expected source or source_port", *text));
      text.reset();
    }
    if (text) service.hash_port = *text == "source_port";
    ok = ok && text.has_value();
  }
  if (const Value* d = map->get("on_down")) {
    auto text = read_string(*d);
    if (text && *text != "keep" && *text != "reschedule") {
      error(d->mark, fmt::format("unknown on_down '{}'; expected keep (flows of a DOWN server "
                                 "continue) or reschedule (they move to another server)",
                                 *text));
      text.reset();
    }
    if (text) service.reschedule_down = *text == "reschedule";
    ok = ok && text.has_value();
  }
  std::optional<L4Mode> default_mode = L4Mode::kNat;
  if (const Value* m = map->get("mode")) {
    default_mode = read_l4_mode(*m);
    ok = ok && default_mode.has_value();
  }
  if (const Value* h = map->get("handoff")) {
    auto on = read_bool(*h);
    if (on) service.handoff = *on;
    ok = ok && on.has_value();
    if (on && *on && service.protocol != IPPROTO_TCP) {
      error(h->mark, fmt::format("l4 service '{}': handoff needs protocol tcp", service.name));
      ok = false;
    }
  }
  if (const Value* h = map->get("health")) {
    service.health = read_health(*h);
    ok = ok && service.health.has_value();
  }
  if (const Value* s = map->get("servers"); s && default_mode) {
    if (!expect_list(*s)) {
      ok = false;
    } else if (s->node.size() == 0) {
      error(s->mark, fmt::format("l4 service '{}' needs at least one server", service.name));
      ok = false;
    } else {
      std::map<std::string, int> seen;  // address -> line
      for (const YAML::Node& item : s->node) {
        const Value server_value = item_of(item);
        auto server = read_l4_server(server_value, *default_mode, service, vip_ok);
        if (!server) {
          ok = false;
          continue;
        }
        const std::string key = bind_key(server->address).value_or(server->address.text);
        if (auto [prev, inserted] = seen.emplace(key, server_value.mark.line); !inserted) {
          error(server_value.mark,
                fmt::format("duplicate server {} in l4 service '{}'; first listed at line {}",
                            server->address.text, service.name, prev->second));
          ok = false;
          continue;
        }
        // A handed-off connection is answered by the server itself, from the VIP: only the
        // modes that deliver the client's packets unchanged can carry it.
        if (service.handoff && server->mode == L4Mode::kNat) {
          error(server_value.mark,
                fmt::format("l4 service '{}' has handoff: server {} must use mode dr or tun "
                            "(the server answers the client itself, from the VIP)",
                            service.name, server->address.text));
          ok = false;
          continue;
        }
        service.servers.push_back(std::move(*server));
      }
    }
  }
  if (!ok) return std::nullopt;
  return service;
}

std::optional<L4Server> Loader::read_l4_server(const Value& v, L4Mode default_mode,
                                               const L4Service& service, bool vip_ok) {
  L4Server server;
  server.mode = default_mode;
  server.mark = v.mark;
  std::optional<SocketAddress> address;
  Value address_value = v;
  if (v.node.IsScalar()) {
    address = read_address(v);
  } else if (v.node.IsMap()) {
    auto map = open_map(v, "l4 server", kL4ServerKeys);
    if (!map) return std::nullopt;
    bool ok = map->fields.size() == v.node.size();
    ok = require(*map, "address", "l4 server") && ok;
    if (const Value* w = map->get("weight")) {
      auto n = read_int(*w, "weight", kMinWeight, kMaxWeight);
      if (n) server.weight = static_cast<std::uint32_t>(*n);
      ok = ok && n.has_value();
    }
    if (const Value* m = map->get("mode")) {
      auto mode = read_l4_mode(*m);
      if (mode) server.mode = *mode;
      ok = ok && mode.has_value();
    }
    if (const Value* a = map->get("address")) {
      address_value = *a;
      address = read_address(*a);
    }
    if (!ok) return std::nullopt;
  } else {
    not_a_server(v);
    return std::nullopt;
  }
  if (!has_server_port(address, address_value)) return std::nullopt;
  if (vip_ok) {
    const char* mode = server.mode == L4Mode::kNat  ? "nat"
                       : server.mode == L4Mode::kDr ? "dr"
                                                    : "tun";
    // NAT rewrites addresses within one family; DR only changes the MAC, so the packet's own
    // addresses must be routable to the server. TUN carries either family in either.
    if (server.mode != L4Mode::kTun && address->family() != service.vip.family()) {
      error(address_value.mark,
            fmt::format("{} server {} and vip {} are of different address families; only tun "
                        "mode can carry IPv4 in IPv6 or IPv6 in IPv4",
                        mode, address->text, service.vip.text));
      return std::nullopt;
    }
    // DR and TUN deliver the client's packet unchanged, so the server sees the VIP's port.
    if (server.mode != L4Mode::kNat && port_of(*address) != port_of(service.vip)) {
      error(address_value.mark,
            fmt::format("{} server {} must use the vip's port {}: {} mode does not rewrite the "
                        "packet (only nat mode can change the port)",
                        mode, address->text, port_of(service.vip), mode));
      return std::nullopt;
    }
  }
  server.address = std::move(*address);
  return server;
}

void Loader::read_handoff(const Value& v) {
  auto map = open_map(v, "handoff", kHandoffKeys);
  if (!map) return;
  if (!require(*map, "key_file", "handoff")) return;
  Handoff handoff;
  const Value& f = *map->get("key_file");
  auto file = read_name(f, "handoff.key_file");
  if (!file) return;
  handoff.key_file = resolve_path(*file);
  std::string why;
  auto key = handoff::read_key_file(handoff.key_file, why);
  if (!key) {
    error(f.mark, why);
    return;
  }
  handoff.key = std::move(*key);
  if (const Value* t = map->get("timeout")) {
    auto d = read_timeout(*t, "handoff.timeout");
    if (!d) return;
    handoff.timeout = *d;
  }
  config_.handoff = std::move(handoff);
}

void Loader::check_handoff_routes() {
  for (const auto& [name, table] : config_.routes) {
    for (const Route& route : table.routes) {
      if (!route.handoff) continue;
      if (!config_.handoff) {
        error(route.handoff_mark,
              "handoff needs the top-level `handoff:` section (key_file shared with the agents)");
        continue;
      }
      auto pool = route.pool ? config_.pools.find(*route.pool) : config_.pools.end();
      if (pool == config_.pools.end()) continue;  // reported as an unknown pool
      for (const Server& server : pool->second.servers) {
        if (server.agent) continue;
        error(route.handoff_mark,
              fmt::format("handoff: server {} of pool '{}' has no `agent` (its switchyard agent's "
                          "control address)",
                          server.address.text, pool->first));
        break;
      }
    }
  }
}

void Loader::check_references() {
  for (const Reference& ref : table_refs_) {
    check_reference(ref, "route table", "route tables", defined_tables_);
  }
  for (const Reference& ref : pool_refs_) check_reference(ref, "pool", "pools", defined_pools_);
  check_gotos();
}

// A goto cycle would send a request around the tables forever. Every cycle has at least one edge
// that a depth-first search meets as a back edge; each such goto is reported with the cycle.
void Loader::check_gotos() {
  enum class State { kNew, kOnPath, kDone };
  std::map<std::string, State> state;
  std::vector<std::string> path;
  auto visit = [&](auto& self, const std::string& table) -> void {
    state[table] = State::kOnPath;
    path.push_back(table);
    for (const GotoEdge& edge : gotos_) {
      if (edge.from != table) continue;
      const State s = state[edge.to];
      if (s == State::kOnPath) {
        std::string cycle;
        auto start = std::find(path.begin(), path.end(), edge.to);
        for (auto it = start; it != path.end(); ++it) cycle += *it + " -> ";
        error(edge.mark, fmt::format("goto cycle: {}{}", cycle, edge.to));
      } else if (s == State::kNew) {
        self(self, edge.to);
      }
    }
    path.pop_back();
    state[table] = State::kDone;
  };
  for (const std::string& table : defined_tables_) {
    if (state[table] == State::kNew) visit(visit, table);
  }
}

void Loader::check_reference(const Reference& ref, std::string_view what, std::string_view plural,
                             const std::vector<std::string>& defined) {
  if (std::find(defined.begin(), defined.end(), ref.name) != defined.end()) return;
  const std::vector<std::string_view> names(defined.begin(), defined.end());
  if (defined.empty()) {
    error(ref.mark, fmt::format("unknown {} '{}'; no {} are defined", what, ref.name, plural));
  } else if (auto suggestion = closest(ref.name, names)) {
    error(ref.mark,
          fmt::format("unknown {} '{}'; did you mean '{}'?", what, ref.name, *suggestion));
  } else {
    error(ref.mark,
          fmt::format("unknown {} '{}'; defined {}: {}", what, ref.name, plural, join(names)));
  }
}

// Reads a whole file, reporting the OS reason on failure.
std::optional<std::string> read_file(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::generic_category().message(errno);
    return std::nullopt;
  }
  std::string contents;
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      contents.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = std::generic_category().message(errno);
      ::close(fd);
      return std::nullopt;
    }
  }
  ::close(fd);
  return contents;
}

}  // namespace

std::string Diagnostic::to_string() const {
  if (line == 0) return fmt::format("{}: {}", file, message);
  return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

LoadResult load_string(std::string_view yaml, const std::string& file_name) {
  try {
    return Loader(file_name).run(yaml);
  } catch (const std::exception& e) {
    // Only allocation failure can get here; the caller still gets a diagnostic, not a crash.
    LoadResult result;
    result.diagnostics.push_back({file_name, 0, 0, fmt::format("cannot load: {}", e.what())});
    return result;
  }
}

LoadResult load_file(const std::string& path) {
  try {
    std::string message;
    auto contents = read_file(path, message);
    if (!contents) {
      LoadResult result;
      result.diagnostics.push_back({path, 0, 0, fmt::format("cannot read file: {}", message)});
      return result;
    }
    return load_string(*contents, path);
  } catch (const std::exception& e) {
    LoadResult result;
    result.diagnostics.push_back({path, 0, 0, fmt::format("cannot load: {}", e.what())});
    return result;
  }
}

std::string parse_socket_address(std::string_view text, SocketAddress& out) {
  constexpr std::string_view kExpected = "expected IP:port, e.g. 127.0.0.1:8080 or [::1]:8080";
  if (text.empty()) return std::string(kExpected);

  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return fmt::format("missing ']' after IPv6 address; {}", kExpected);
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fmt::format("missing port; {}", kExpected);
    port = rest.substr(1);
    bracketed = true;
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fmt::format("missing port; {}", kExpected);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "an IPv6 address needs brackets, e.g. [::1]:8080";
    }
  }
  if (host.empty()) {
    return fmt::format("missing IP address (use 0.0.0.0 or [::] for all); {}", kExpected);
  }
  if (port.empty()) return fmt::format("missing port; {}", kExpected);
  unsigned port_number = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (!all_digits(port) || ec != std::errc() || port_number > 65535) {
    return fmt::format("invalid port '{}'; expected 0..65535", port);
  }

  SocketAddress result;
  result.text = std::string(text);
  const std::string host_z(host);  // inet_pton needs a NUL-terminated string
  if (bracketed) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&result.storage);
    if (inet_pton(AF_INET6, host_z.c_str(), &in6->sin6_addr) != 1) {
      return fmt::format("'{}' is not a valid IPv6 address", host);
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<std::uint16_t>(port_number));
    result.length = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&result.storage);
    if (inet_pton(AF_INET, host_z.c_str(), &in->sin_addr) != 1) {
      return fmt::format("'{}' is not a numeric IPv4 address (host names are not supported); {}",
                         host, kExpected);
    }
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<std::uint16_t>(port_number));
    result.length = sizeof(sockaddr_in);
  }
  out = std::move(result);
  return {};
}

}  // namespace switchyard::config
