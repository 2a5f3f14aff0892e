// Shared pieces of the fuzz targets: a check macro that aborts (so libFuzzer and the replay tests
// both report it), a deterministic way to split input into reads, and small *reference* parsers
// written straight from RFC 9112's grammar. The references are deliberately naive and strict; the
// targets compare llhttp (through MessageParser) against them, so any input the proxy accepts but
// the RFC does not, or frames differently, is reported. Test code only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message_parser.h"

namespace switchyard::fuzz {

// Printable view of bytes for failure messages.
inline std::string escape(std::string_view s, std::size_t max = 400) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

[[noreturn]] inline void fail(const char* file, int line, const char* cond,
                              const std::string& msg) {
  std::fprintf(stderr, "%s:%d: FUZZ CHECK FAILED: %s\n  %s\n", file, line, cond, msg.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, msg)                                                \
  do {                                                                       \
    if (!(cond)) ::switchyard::fuzz::fail(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

// Splits input into "reads" of 1..max bytes, deterministically from a seed byte: the parser must
// give the same answer however its input is cut.
class Splitter {
 public:
  explicit Splitter(std::uint8_t seed) : state_(seed * 2654435761u + 1) {
    mode_ = seed & 3;  // 0: all at once, 1: byte by byte, 2/3: pseudo-random sizes
  }
  std::size_t next(std::size_t remaining) {
    if (mode_ == 0) return remaining;
    if (mode_ == 1) return remaining ? 1 : 0;
    state_ = state_ * 1103515245u + 12345u;
    std::size_t n = 1 + (state_ >> 16) % (mode_ == 2 ? 7 : 300);
    return n < remaining ? n : remaining;
  }

 private:
  std::uint32_t state_;
  int mode_;
};

inline bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// field-vchar / SP / HTAB (RFC 9110 §5.5): no CTLs other than HTAB, no DEL.
inline bool is_field_char(unsigned char c) {
  return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

inline std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Reference: request head (RFC 9112 §2-§6) and the framing of its body (§6.3), with Switchyard's
// policy where the RFC leaves a choice (documented in docs/http-policy.md): only HTTP/1.0 and 1.1,
// no obs-fold, CRLF line ends only, Transfer-Encoding must be exactly one "chunked" (last), not
// with Content-Length and not in HTTP/1.0, Content-Length a single decimal number (repeats must
// be identical).

enum class Framing { kNone, kLength, kChunked };

struct RefHead {
  bool complete = false;   // found the end of the head
  bool valid = false;      // complete and acceptable
  std::string why;         // when !valid
  std::size_t length = 0;  // bytes of the head (leading empty lines included)
  std::string method, target;
  int major = 0, minor = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // names as sent, values OWS-trimmed
  Framing framing = Framing::kNone;
  std::uint64_t content_length = 0;
};

// Reads one line ending in CRLF from s at pos; false if no CRLF (or a bare CR/LF inside).
inline bool ref_line(std::string_view s, std::size_t& pos, std::string_view& line, bool& bad) {
  std::size_t start = pos;
  for (std::size_t i = pos; i < s.size(); ++i) {
    if (s[i] == '\n') {
      bad = true;  // bare LF
      return false;
    }
    if (s[i] == '\r') {
      if (i + 1 >= s.size()) return false;  // need more
      if (s[i + 1] != '\n') {
        bad = true;  // bare CR
        return false;
      }
      line = s.substr(start, i - start);
      pos = i + 2;
      return true;
    }
  }
  return false;
}

inline RefHead ref_request_head(std::string_view s) {
  RefHead h;
  std::size_t pos = 0;
  // §2.2: a server SHOULD ignore at least one empty line (CRLF) before the request-line.
  while (s.substr(pos, 2) == "\r\n") pos += 2;
  auto invalid = [&](const char* why) {
    h.valid = false;
    h.why = why;
    return h;
  };
  bool bad = false;
  std::string_view line;
  if (!ref_line(s, pos, line, bad)) {
    if (bad) {
      h.complete = true;
      return invalid("bare CR or LF in the request line");
    }
    return h;
  }
  // request-line = method SP request-target SP HTTP-version
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  // Keep scanning to the end of the head even when the line is bad, so `complete` is right.
  std::vector<std::string_view> field_lines;
  for (;;) {
    std::string_view fl;
    if (!ref_line(s, pos, fl, bad)) {
      if (bad) {
        h.complete = true;
        return invalid("bare CR or LF in the head");
      }
      return h;  // incomplete
    }
    if (fl.empty()) break;
    field_lines.push_back(fl);
  }
  h.complete = true;
  h.length = pos;
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos)
    return invalid("request line without two spaces");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return invalid("method is not a token");
  if (target.empty()) return invalid("empty request-target");
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return invalid("request-target has a CTL, space or non-ASCII");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return invalid("bad HTTP-version");
  }
  // Policy: the request-target forms of RFC 9112 §3.2 only where they belong, no fragment,
  // absolute-form only for http/https without userinfo.
  if (target.find('#') != std::string_view::npos) return invalid("fragment in the target");
  if (target[0] != '/' && !(target == "*" && method == "OPTIONS") && method != "CONNECT") {
    std::string lt = lower(target);
    std::size_t skip = lt.rfind("http://", 0) == 0 ? 7 : lt.rfind("https://", 0) == 0 ? 8 : 0;
    if (skip == 0) return invalid("target form not allowed");
    std::string_view authority = target.substr(skip);
    authority = authority.substr(0, authority.find_first_of("/?"));
    if (authority.empty() || authority.find('@') != std::string_view::npos)
      return invalid("bad authority in the target");
  }
  h.method = method;
  h.target = target;
  h.major = version[5] - '0';
  h.minor = version[7] - '0';
  if (h.major != 1 || h.minor > 1) return invalid("HTTP version other than 1.0 and 1.1");
  for (std::string_view fl : field_lines) {
    if (fl[0] == ' ' || fl[0] == '\t') return invalid("obs-fold");
    std::size_t colon = fl.find(':');
    if (colon == std::string_view::npos) return invalid("field line without colon");
    std::string_view name = fl.substr(0, colon);
    if (!is_token(name)) return invalid("field name is not a token");
    std::string_view value = trim_ows(fl.substr(colon + 1));
    for (char c : value) {
      if (!is_field_char(static_cast<unsigned char>(c))) return invalid("bad char in field value");
    }
    if (lower(name) == "host") {
      for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        bool ok = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                  std::string_view("-._~%!$&'()*+,;=:[]").find(c) != std::string_view::npos;
        if (!ok) return invalid("invalid Host");
      }
    }
    h.fields.emplace_back(std::string(name), std::string(value));
  }
  // §6.3 framing.
  bool has_te = false, has_cl = false;
  std::vector<std::string> te_tokens;
  for (const auto& [name, value] : h.fields) {
    std::string n = lower(name);
    if (n == "transfer-encoding") {
      has_te = true;
      std::string_view v = value;
      while (true) {
        std::size_t comma = v.find(',');
        std::string_view tok = trim_ows(v.substr(0, comma));
        if (!tok.empty()) te_tokens.push_back(lower(tok));
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    } else if (n == "content-length") {
      if (value.empty()) return invalid("empty Content-Length");
      std::uint64_t cl = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return invalid("Content-Length is not one decimal number");
        std::uint64_t d = static_cast<std::uint64_t>(c - '0');
        if (cl > (UINT64_MAX - d) / 10) return invalid("Content-Length overflow");
        cl = cl * 10 + d;
      }
      // Policy: even identical repeats are refused (RFC 9110 §8.6 allows either).
      if (has_cl) return invalid("several Content-Length fields");
      has_cl = true;
      h.content_length = cl;
    }
  }
  if (has_te) {
    if (has_cl) return invalid("Transfer-Encoding with Content-Length");
    if (h.minor == 0) return invalid("Transfer-Encoding in HTTP/1.0");
    if (te_tokens.empty() || te_tokens.back() != "chunked")
      return invalid("TE not ending in chunked");
    for (std::size_t i = 0; i + 1 < te_tokens.size(); ++i) {
      if (te_tokens[i] == "chunked") return invalid("chunked applied twice");
    }
    h.framing = Framing::kChunked;
  } else if (has_cl) {
    h.framing = Framing::kLength;
  }
  h.valid = true;
  return h;
}

// ---------------------------------------------------------------------------------------------
// Reference: chunked body (RFC 9112 §7.1), from just after the head.
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//   chunk-ext-val = token / quoted-string

struct RefChunked {
  enum class Result { kNeedMore, kComplete, kError } result = Result::kNeedMore;
  std::size_t consumed = 0;  // kComplete: bytes of the chunked body
  std::string data;          // decoded data so far
  std::string why;
  std::size_t trailer_fields = 0;
  // A trailer field llhttp interprets (Content-Length, Transfer-Encoding: framing fields, which
  // RFC 9110 §6.5.1 keeps out of trailers); llhttp may refuse the body for them.
  bool framing_trailer = false;
  // Valid extensions llhttp 8.1 refuses: one after an extension with a value (";a=b;c"), a
  // quoted-pair in a quoted value (";a=\"b\\\"c\"").
  bool llhttp_refuses = false;
};

// Policy: llhttp (and so Switchyard) refuses the "bad whitespace" (BWS) the grammar allows around
// ';' and '=' (RFC 9112 §7.1.1 asks recipients to remove it); stricter is safe, so the reference
// refuses it too, and both directions are checked.
inline bool ref_chunk_ext(std::string_view ext) {
  std::size_t i = 0;
  auto ows = [] {};
  auto token = [&] {
    std::size_t s = i;
    while (i < ext.size() && is_tchar(static_cast<unsigned char>(ext[i]))) ++i;
    return i > s;
  };
  for (;;) {
    ows();
    if (i == ext.size()) return true;
    if (ext[i] != ';') return false;
    ++i;
    ows();
    if (!token()) return false;
    std::size_t save = i;
    ows();
    if (i < ext.size() && ext[i] == '=') {
      ++i;
      ows();
      if (i < ext.size() && ext[i] == '"') {
        ++i;
        for (;;) {
          if (i >= ext.size()) return false;
          auto c = static_cast<unsigned char>(ext[i]);
          if (c == '"') {
            ++i;
            break;
          }
          if (c == '\\') {
            if (i + 1 >= ext.size()) return false;
            auto q = static_cast<unsigned char>(ext[i + 1]);
            if (!(q == '\t' || q == ' ' || (q >= 0x21 && q != 0x7f))) return false;
            i += 2;
            continue;
          }
          if (!(c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
                (c >= 0x5d && c <= 0x7e) || c >= 0x80)) {
            return false;
          }
          ++i;
        }
      } else if (!token()) {
        return false;
      }
    } else {
      i = save;
    }
  }
}

// `max_trailers` and the line limits are Switchyard's (ChunkedChecker): a chunk-size line of at
// most 4096 bytes with its CRLF, at most `max_trailers` trailer fields in 64 KiB.
inline RefChunked ref_chunked(std::string_view s, std::size_t max_trailers = 100) {
  RefChunked r;
  std::size_t pos = 0;
  auto error = [&](const char* why) {
    r.result = RefChunked::Result::kError;
    r.why = why;
    return r;
  };
  for (;;) {
    std::string_view line;
    bool bad = false;
    if (!ref_line(s, pos, line, bad)) {
      if (bad) return error("bare CR or LF in a chunk-size line");
      return r;
    }
    if (line.size() + 2 > 4096) return error("chunk-size line too long");
    std::size_t i = 0;
    std::uint64_t size = 0;
    while (i < line.size()) {
      char c = line[i];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) break;
      if (size > (UINT64_MAX >> 4)) return error("chunk size overflow");
      size = size * 16 + static_cast<std::uint64_t>(d);
      ++i;
    }
    if (i == 0) return error("chunk size without hex digits");
    if (!ref_chunk_ext(line.substr(i))) return error("bad chunk extension");
    std::string_view ext = line.substr(i);
    std::size_t eq = ext.find('=');
    if (eq != std::string_view::npos && ext.find(';', eq) != std::string_view::npos) {
      r.llhttp_refuses = true;  // (a ';' inside a quoted value counts too: harmless)
    }
    if (ext.find('\\') != std::string_view::npos) r.llhttp_refuses = true;
    if (size == 0) break;
    if (s.size() - pos < size) {
      r.data.append(s.substr(pos));
      return r;  // need more
    }
    r.data.append(s.substr(pos, size));
    pos += size;
    if (s.size() - pos < 2) {
      if (s.size() - pos == 1 && s[pos] != '\r') return error("chunk data not followed by CRLF");
      return r;
    }
    if (s.substr(pos, 2) != "\r\n") return error("chunk data not followed by CRLF");
    pos += 2;
  }
  // trailer-section CRLF
  std::size_t trailer_bytes = 0;
  for (;;) {
    std::string_view line;
    bool bad = false;
    if (!ref_line(s, pos, line, bad)) {
      if (bad) return error("bare CR or LF in the trailer section");
      return r;
    }
    trailer_bytes += line.size() + 2;
    if (trailer_bytes > 64 * 1024) return error("trailer section too large");
    if (line.empty()) break;
    if (r.trailer_fields == max_trailers) return error("too many trailer fields");
    if (line[0] == ' ' || line[0] == '\t') return error("obs-fold in a trailer");
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
      return error("bad trailer field");
    for (char c : trim_ows(line.substr(colon + 1))) {
      if (!is_field_char(static_cast<unsigned char>(c))) return error("bad trailer value");
    }
    ++r.trailer_fields;
    std::string name = lower(line.substr(0, colon));
    if (name == "content-length" || name == "transfer-encoding") r.framing_trailer = true;
  }
  r.result = RefChunked::Result::kComplete;
  r.consumed = pos;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Drives a MessageParser over a whole buffer the way Session does: reads of Splitter sizes,
// restarting after each stop. Records where the head and the message ended.

struct Parsed {
  http::MessageParser::Status last = http::MessageParser::Status::kNeedMore;
  bool head_complete = false;
  bool message_complete = false;
  std::size_t head_end = 0;     // offset just past the head
  std::size_t message_end = 0;  // offset just past the message
  std::string body;             // decoded body bytes (through the body sink)
};

inline void body_to_string(void* ctx, const char* data, std::size_t len) {
  static_cast<std::string*>(ctx)->append(data, len);
}

// Parses one message starting at buf[start]; `base` for the head spans is buf + start. Like
// Session, what is left of a read after the head stops is parsed at once (even when nothing is
// left: that is when a message without a body completes, or a framing conflict is reported).
inline Parsed drive(http::MessageParser& p, std::string_view buf, std::size_t start,
                    Splitter& split) {
  using Status = http::MessageParser::Status;
  Parsed r;
  p.set_body_sink(&body_to_string, &r.body);
  p.begin_head(buf.data() + start);
  std::size_t pos = start;
  while (pos < buf.size() && !r.message_complete && r.last != Status::kError) {
    std::size_t read_end = pos + split.next(buf.size() - pos);
    for (;;) {
      std::size_t n = read_end - pos;
      std::size_t consumed = 0;
      Status s = p.parse(buf.data() + pos, n, consumed);
      r.last = s;
      if (s == Status::kError) break;
      FUZZ_CHECK(consumed <= n, "parser consumed more than it was given");
      pos += consumed;
      if (s == Status::kNeedMore) {
        FUZZ_CHECK(consumed == n, "kNeedMore left input unconsumed");
        break;
      }
      if (s == Status::kHeadComplete) {
        FUZZ_CHECK(!r.head_complete, "two heads in one message");
        r.head_complete = true;
        r.head_end = pos;
        continue;
      }
      FUZZ_CHECK(r.head_complete, "message complete before its head");
      r.message_complete = true;
      r.message_end = pos;
      break;
    }
  }
  p.set_body_sink(nullptr, nullptr);
  return r;
}

}  // namespace switchyard::fuzz
