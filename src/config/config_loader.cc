#include "config/config_loader.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
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
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace switchyard::config {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema: which keys each section accepts. Sections whose values are all of one kind are tables
// of {key, where it goes}, so adding a directive there is a one-line change and the list of
// allowed keys (used for "unknown key" messages) cannot drift from what is actually read.
// Keep docs/configuration.md in step with this block; its test checks the key lists.

constexpr std::string_view kTopLevelKeys[] = {"workers",  "access_log", "limits",
                                              "timeouts", "forwarding", "listeners",
                                              "routes",   "pools",      "admin"};
constexpr std::string_view kAccessLogKeys[] = {"enabled", "format", "path"};
constexpr std::string_view kListenerKeys[] = {"name", "bind", "routes"};
// `match` is listed so that it gets its own explanation rather than a generic "unknown key".
constexpr std::string_view kRouteKeys[] = {"pool", "respond", "match"};
constexpr std::string_view kRespondKeys[] = {"status", "headers", "body"};
constexpr std::size_t kMaxServersPerPool = 64;
constexpr std::string_view kPoolKeys[] = {"scheduler", "max_idle_per_server", "servers"};
constexpr std::string_view kServerKeys[] = {"address", "weight"};
constexpr std::string_view kAdminKeys[] = {"bind"};

constexpr std::string_view kSchedulers[] = {"rr", "wrr"};
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

std::optional<Millis> parse_duration(std::string_view text, std::string& error) {
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
  if (ec != std::errc() || value > kMaxTimeout.count() / factor) {
    error = fmt::format("duration '{}' is too long; the maximum is 24h", text);
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
// YAML access with positions.

SourceMark mark_of(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

SourceMark mark_of(const YAML::Node& node) {
  return mark_of(node.Mark());
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
  std::optional<SocketAddress> read_address(const Value& v);

  void read_top_level(const Value& root);
  void read_access_log(const Value& v);
  void read_limits(const Value& v);
  void read_timeouts(const Value& v);
  void read_forwarding(const Value& v);
  void read_listeners(const Value& v);
  void read_listener(const Value& v);
  void read_route_tables(const Value& v);
  void read_route_table(const std::string& name, const Value& v);
  std::optional<Route> read_route(const Value& v, bool& matches_everything);
  std::optional<Respond> read_respond(const Value& v);
  void read_pools(const Value& v);
  void read_pool(const std::string& name, const Value& v);
  std::optional<Server> read_server(const Value& v);
  void read_admin(const Value& v);

  void check_references();
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
  if (!v.node.IsScalar()) {
    error(v.mark, fmt::format("expected a duration, got {}", kind_of(v.node)));
    return std::nullopt;
  }
  std::string message;
  auto duration = parse_duration(v.node.Scalar(), message);
  if (!duration) {
    error(v.mark, std::move(message));
    return std::nullopt;
  }
  if (duration->count() == 0) {
    error(v.mark, fmt::format("{} must be greater than zero", name));
    return std::nullopt;
  }
  return duration;
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
    std::vector<YAML::Node> documents = YAML::LoadAll(std::string(yaml));
    if (documents.size() > 1) {
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
  // Tables and pools first so references from listeners and routes can be checked afterwards.
  if (const Value* v = top->get("routes")) read_route_tables(*v);
  if (const Value* v = top->get("pools")) read_pools(*v);
  if (const Value* v = top->get("listeners")) {
    read_listeners(*v);
  } else {
    error({}, "at least one listener is required");
  }
  if (const Value* v = top->get("admin")) read_admin(*v);
  check_references();
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
  for (std::string_view key : kListenerKeys) ok = require(*map, key, "listener") && ok;

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
  if (const Value* r = map->get("routes")) {
    auto table = read_name(*r, "listener routes");
    if (table) {
      table_refs_.push_back({*table, r->mark});
      listener.routes = *table;
    }
    ok = ok && table.has_value();
  }
  if (ok) config_.listeners.push_back(std::move(listener));
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
    auto route = read_route(route_value, matches_everything);
    if (matches_everything && !catch_all_line) catch_all_line = route_value.mark.line;
    if (route) {
      table.routes.push_back(std::move(*route));
    } else {
      ok = false;
    }
  }
  if (ok) config_.routes.emplace(name, std::move(table));
}

std::optional<Route> Loader::read_route(const Value& v, bool& matches_everything) {
  auto map = open_map(v, "route", kRouteKeys);
  if (!map) return std::nullopt;
  Route route;
  route.mark = map->mark;
  bool ok = true;
  if (const Field* m = map->field("match")) {
    error(m->key_mark,
          "`match` is not supported by this build; a route without match matches every request");
    ok = false;
  } else {
    matches_everything = true;
  }
  const Value* pool = map->get("pool");
  const Value* respond = map->get("respond");
  if (pool != nullptr && respond != nullptr) {
    error(map->mark, "a route needs exactly one of 'pool' or 'respond', not both");
    ok = false;
  } else if (pool == nullptr && respond == nullptr) {
    error(map->mark, "a route needs exactly one of 'pool' or 'respond'");
    ok = false;
  }
  if (pool != nullptr) {
    if (auto name = read_name(*pool, "pool name")) {
      pool_refs_.push_back({*name, pool->mark});
      route.pool = *name;
    } else {
      ok = false;
    }
  }
  if (respond != nullptr) {
    route.respond = read_respond(*respond);
    ok = ok && route.respond.has_value();
  }
  if (!ok) return std::nullopt;
  return route;
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
        if (value->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
          error(f.value.mark,
                fmt::format("header '{}' value must not contain CR, LF or NUL", f.key));
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
    read_pool(f.key, f.value);
  }
}

void Loader::read_pool(const std::string& name, const Value& v) {
  auto map = open_map(v, "pool", kPoolKeys);
  if (!map) return;
  Pool pool;
  pool.name = name;
  bool ok = require(*map, "servers", fmt::format("pool '{}'", name));
  if (const Value* s = map->get("scheduler")) {
    auto scheduler = read_string(*s);
    if (scheduler && std::find(std::begin(kSchedulers), std::end(kSchedulers), *scheduler) ==
                         std::end(kSchedulers)) {
      error(s->mark, fmt::format("unsupported scheduler '{}'; this build supports: {}", *scheduler,
                                 join(kSchedulers)));
      scheduler.reset();
    }
    if (scheduler) pool.scheduler = *scheduler;
    ok = ok && scheduler.has_value();
  }
  if (const Value* m = map->get("max_idle_per_server")) {
    auto n = read_int(*m, "max_idle_per_server", 0, kMaxIdlePerServer);
    if (n) pool.max_idle_per_server = static_cast<std::uint32_t>(*n);
    ok = ok && n.has_value();
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
      for (const YAML::Node& item : s->node) {
        const Value server_value = item_of(item);
        auto server = read_server(server_value);
        if (!server) {
          ok = false;
          continue;
        }
        if (auto key = bind_key(server->address)) {
          auto [prev, inserted] = seen.emplace(*key, server_value.mark.line);
          if (!inserted) {
            error(server_value.mark,
                  fmt::format("duplicate server {} in pool '{}'; first listed at line {}",
                              server->address.text, name, prev->second));
            ok = false;
            continue;
          }
        }
        pool.servers.push_back(std::move(*server));
      }
    }
  }
  if (ok) config_.pools.emplace(name, std::move(pool));
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
    if (const Value* a = map->get("address")) {
      address_value = *a;
      address = read_address(*a);
    }
    if (!ok) return std::nullopt;
  } else {
    error(v.mark, fmt::format("expected a server address or a map with 'address', got {}",
                              kind_of(v.node)));
    return std::nullopt;
  }
  if (!address) return std::nullopt;
  if (port_of(*address) == 0) {
    error(address_value.mark,
          fmt::format("invalid address '{}': a server needs a port other than 0", address->text));
    return std::nullopt;
  }
  server.address = std::move(*address);
  return server;
}

void Loader::read_admin(const Value& v) {
  auto map = open_map(v, "admin", kAdminKeys);
  if (!map) return;
  if (!require(*map, "bind", "admin")) return;
  const Value* b = map->get("bind");
  auto address = read_address(*b);
  if (!address) return;
  if (auto key = bind_key(*address)) {
    if (auto prev = binds_.find(*key); prev != binds_.end()) {
      error(b->mark, fmt::format("duplicate bind {}; already used by {} at line {}", address->text,
                                 prev->second.owner, prev->second.line));
      return;
    }
  }
  config_.admin = Admin{std::move(*address)};
}

void Loader::check_references() {
  for (const Reference& ref : table_refs_) {
    check_reference(ref, "route table", "route tables", defined_tables_);
  }
  for (const Reference& ref : pool_refs_) check_reference(ref, "pool", "pools", defined_pools_);
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
