// normalize_path: the one canonical form every path matcher compares against, so that
// "/a/%2e%2e/b",
// "/b" and "//b" cannot be used to slip past (or accidentally miss) a path rule.
#include <string>
#include <string_view>

#include "rules/rule_set.h"
#include "rules/uri_chars.h"

namespace switchyard::rules {

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
    if (!append_normalised_escapes(raw, out, /*strict=*/true)) return false;
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
