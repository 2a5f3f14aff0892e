// Percent-encoding helpers (RFC 3986) shared by path normalisation, pattern compilation, query
// decoding and the config loader's checks, so that all of them agree on what a path means.
#pragma once

#include <string>
#include <string_view>

namespace switchyard::rules {

// Value of a hex digit, -1 if `c` is not one.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 §2.3 unreserved characters: ALPHA DIGIT - . _ ~
inline bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Appends `in` to `out` with its escapes normalised (RFC 3986 §6.2.2.2): escaped unreserved
// characters decoded, the hex of other escapes upper-cased. A malformed escape ("%zz", "%4")
// makes it return false when `strict`; otherwise it is copied as it is.
inline bool append_normalised_escapes(std::string_view in, std::string& out, bool strict) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    int hi = i + 2 < in.size() ? hex_value(in[i + 1]) : -1;
    int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      if (strict) return false;
      out.push_back(c);
      continue;
    }
    auto decoded = static_cast<unsigned char>(hi * 16 + lo);
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

}  // namespace switchyard::rules
