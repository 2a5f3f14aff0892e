// normalize_path: the one canonical form every path matcher compares against, so that
// "/a/%2e%2e/b",
// "/b" and "//b" cannot be used to slip past (or accidentally miss) a path rule.
#include <string>
#include <string_view>

#include "rules/rule_set.h"

namespace switchyard::rules {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Appends `segment` to `out` with percent-encoding normalised (RFC 3986 §6.2.2.2: unreserved
// decoded, hex of the rest upper-cased). Decoding happens before dot-segment removal, so "%2E%2E"
// is a ".." segment, as a server applying the same normalisation would see it.
bool append_segment(std::string_view segment, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (std::size_t i = 0; i < segment.size(); ++i) {
    char c = segment[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= segment.size()) return false;
    int hi = hex_value(segment[i + 1]);
    int lo = hex_value(segment[i + 2]);
    if (hi < 0 || lo < 0) return false;
    unsigned char decoded = static_cast<unsigned char>(hi * 16 + lo);
    if (is_unreserved(decoded)) {
      out.push_back(static_cast<char>(decoded));
    } else {
      out.push_back('%');
      out.push_back(kHex[hi]);
      out.push_back(kHex[lo]);
    }
    i += 2;
  }
  return true;
}

}  // namespace

// `out` is overwritten (not appended to) so callers can reuse one scratch string per request.
bool normalize_path(std::string_view path, std::string& out) {
  out.clear();
  if (path.empty() || path.front() != '/') return false;
  // Most paths are already normal: no escapes, no "//", no "/." (which covers "/./" and "/../").
  // Those are copied in one go; the rest take the segment walk below.
  bool plain = true;
  for (std::size_t i = 0; i < path.size() && plain; ++i) {
    if (path[i] == '%') plain = false;
    if (path[i] == '/' && i + 1 < path.size() && (path[i + 1] == '/' || path[i + 1] == '.')) {
      plain = false;
    }
  }
  if (plain) {
    out.assign(path);
    return true;
  }
  out.push_back('/');
  // Invariant: `out` ends with '/' before each segment is appended; one pass, no segment stack,
  // because popping a segment is just cutting `out` back to its previous '/'.
  std::size_t pos = 1;
  while (true) {
    std::size_t end = path.find('/', pos);
    bool last = end == std::string_view::npos;
    std::string_view raw = path.substr(pos, last ? std::string_view::npos : end - pos);
    std::size_t start = out.size();
    if (!append_segment(raw, out)) return false;
    std::string_view segment(out.data() + start, out.size() - start);
    if (segment.empty()) {
      // Repeated slash (or the trailing one): `out` already ends with '/'.
    } else if (segment == ".") {
      out.resize(start);
    } else if (segment == "..") {
      out.resize(start);
      if (out.size() > 1) out.resize(out.rfind('/', out.size() - 2) + 1);
    } else if (!last) {
      out.push_back('/');
    }
    if (last) break;
    pos = end + 1;
  }
  return true;
}

}  // namespace switchyard::rules
