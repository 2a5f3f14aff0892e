#include "http/message_parser.h"

#include <array>
#include <cstdint>
#include <cstring>

namespace switchyard::http {
namespace {

MessageParser& self(llhttp_t* p) {
  return *static_cast<MessageParser*>(p->data);
}

// Byte classes for check_head(), which looks at every byte of every head: one table lookup per
// byte instead of a search through a set of characters (find_first_of and friends call memchr on
// the set for each byte, which was 15 % of all the proxy's instructions per small request).
enum ByteClass : std::uint8_t {
  kTokenChar = 1,  // tchar (RFC 9110 §5.6.2)
  kFieldChar = 2,  // field-vchar / SP / HTAB (RFC 9110 §5.5): no control characters but HTAB
  kHostChar = 4,   // a Host value (RFC 9110 §7.2, RFC 3986 §3.2.2-3): reg-name, IP literal, port
  kLineEnd = 8,    // CR or LF
};

constexpr std::array<std::uint8_t, 256> kByteClasses = [] {
  std::array<std::uint8_t, 256> t{};
  auto mark = [&t](std::string_view chars, std::uint8_t cls) {
    for (char c : chars) t[static_cast<unsigned char>(c)] |= cls;
  };
  for (int c = 0; c < 256; ++c) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (alnum) t[static_cast<std::size_t>(c)] |= kTokenChar | kHostChar;
    if (c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f))
      t[static_cast<std::size_t>(c)] |= kFieldChar;
  }
  mark("!#$%&'*+-.^_`|~", kTokenChar);
  mark("-._~%!$&'()*+,;=:[]", kHostChar);
  mark("\r\n", kLineEnd);
  return t;
}();

bool is_tchar(unsigned char c) {
  return kByteClasses[c] & kTokenChar;
}
bool is_field_char(unsigned char c) {
  return kByteClasses[c] & kFieldChar;
}
bool is_host_char(unsigned char c) {
  return kByteClasses[c] & kHostChar;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// The request-target forms of RFC 9112 §3.2, each only where it belongs: origin-form, absolute-
// form (http/https, an authority without userinfo), authority-form for CONNECT, "*" for OPTIONS.
// Fragments are not part of any form: "/a#/../b" would be routed by one path and served by
// another.
const char* check_target(std::string_view method, std::string_view target) {
  if (target.find('#') != std::string_view::npos) return "fragment in the request-target";
  if (target.front() == '/') return nullptr;
  if (target == "*") return method == "OPTIONS" ? nullptr : "asterisk-form target without OPTIONS";
  if (method == "CONNECT") return nullptr;  // authority-form; the session checks host:port
  std::string_view rest;
  if (iequals_prefix(target, "http://")) {
    rest = target.substr(7);
  } else if (iequals_prefix(target, "https://")) {
    rest = target.substr(8);
  } else {
    return "request-target is not origin-form or an http(s) absolute-form";
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  if (authority.empty()) return "absolute-form target without a host";
  if (authority.find('@') != std::string_view::npos) return "userinfo in the request-target";
  for (char c : authority) {
    if (!is_host_char(static_cast<unsigned char>(c))) return "invalid authority in the target";
  }
  return nullptr;
}

// A strict RFC 9112 head: start line, field lines, empty line, each ending in CRLF, single spaces
// in the start line, HTTP/1.0 or 1.1 only, token names directly followed by ':', no obs-fold, no
// control characters in values. llhttp checks most of this itself; checking the bytes again here
// means no leniency of the parser (present or future) reaches a server or a client: we forward
// heads re-serialised from these bytes. Returns null when valid, else the reason.
const char* check_head(bool request, std::string_view s) {
  std::size_t i = 0;
  // RFC 9112 §2.2: empty lines before a request line are ignored.
  if (request) {
    while (s.substr(i, 2) == "\r\n") i += 2;
  }
  // Next line [i, e) and its CRLF; a lone CR or LF anywhere is an error.
  auto next_line = [&](std::string_view& line) {
    std::size_t e = i;
    while (e < s.size() && !(kByteClasses[static_cast<unsigned char>(s[e])] & kLineEnd)) ++e;
    if (e + 1 >= s.size() || s[e] != '\r' || s[e + 1] != '\n') return false;
    line = s.substr(i, e - i);
    i = e + 2;
    return true;
  };
  std::string_view line;
  if (!next_line(line)) return "bare CR or LF in the start line";
  if (request) {
    std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return "malformed request line";
    std::string_view method = line.substr(0, sp1);
    for (char c : method) {
      if (!is_tchar(static_cast<unsigned char>(c))) return "invalid method";
    }
    std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return "request line without an HTTP version";
    if (sp2 == sp1 + 1) return "extra space in the request line";
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    for (char c : target) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) return "invalid character in the request-target";
    }
    std::string_view version = line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return "HTTP version is not 1.0 or 1.1";
    if (const char* why = check_target(method, target)) return why;
  } else {
    std::string_view version = line.substr(0, 8);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return "HTTP version is not 1.0 or 1.1";
    if (line.size() < 12 || line[8] != ' ') return "malformed status line";
    // RFC 9110 §15: status codes are 100..599.
    if (line[9] < '1' || line[9] > '5') return "status code outside 100..599";
    for (std::size_t k = 10; k < 12; ++k) {
      if (line[k] < '0' || line[k] > '9') return "malformed status code";
    }
    // "HTTP/1.1 200" without the SP and reason is common enough from servers to accept.
    if (line.size() > 12) {
      if (line[12] != ' ') return "malformed status line";
      for (char c : line.substr(13)) {
        if (!is_field_char(static_cast<unsigned char>(c))) return "invalid reason phrase";
      }
    }
  }
  for (;;) {
    if (!next_line(line)) return "bare CR or LF in the header section";
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return "obs-fold (line folding) in a header";
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return "header line without a name";
    std::string_view name = line.substr(0, colon);
    for (char c : name) {
      auto u = static_cast<unsigned char>(c);
      if (u == ' ' || u == '\t') return "whitespace in a header field name";
      if (!is_tchar(u)) return "invalid character in a header field name";
    }
    std::string_view value = line.substr(colon + 1);
    for (char c : value) {
      if (!is_field_char(static_cast<unsigned char>(c)))
        return "invalid character in a header value";
    }
    if (request && iequals(name, "host")) {
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      for (char c : value) {
        if (!is_host_char(static_cast<unsigned char>(c))) return "invalid Host";
      }
    }
  }
  return i == s.size() ? nullptr : "head does not end at its empty line";
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

bool list_contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

MessageParser::MessageParser(Kind kind, std::uint32_t max_header_count)
    : kind_(kind), max_header_count_(max_header_count) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &MessageParser::on_message_begin;
  settings_.on_method = &MessageParser::on_method;
  settings_.on_url = &MessageParser::on_url;
  settings_.on_status = &MessageParser::on_status;
  settings_.on_header_field = &MessageParser::on_header_field;
  settings_.on_header_value = &MessageParser::on_header_value;
  settings_.on_headers_complete = &MessageParser::on_headers_complete;
  settings_.on_body = &MessageParser::on_body;
  settings_.on_message_complete = &MessageParser::on_message_complete;
  llhttp_init(&parser_, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings_);
  parser_.data = this;
  // Grows to the largest head this connection has sent, then stays: no allocation in steady
  // state, and an idle connection does not hold room for max_header_count fields.
  head_.headers.reserve(16);
}

void MessageParser::begin_head(const char* base) {
  base_ = base;
}

void MessageParser::reset(const char* base) {
  llhttp_reset(&parser_);
  base_ = base;
  in_head_ = true;
  error_ = nullptr;
  at_message_start_ = true;
  in_body_ = false;
}

MessageParser::Status MessageParser::parse(const char* data, std::size_t len,
                                           std::size_t& consumed) {
  consumed = 0;
  if (error_) return Status::kError;
  if (at_message_start_) {
    // Heads are parsed in place in the caller's buffer: this is where the next one starts.
    head_start_ = static_cast<std::uint32_t>(data - base_);
    at_message_start_ = false;
  }
  const bool body = in_body_;  // a head stops parse() at its end: a call is all head or all body
  pause_ = Pause::kNone;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  Status status;
  std::size_t used;
  switch (err) {
    case HPE_OK:
      used = len;
      status = Status::kNeedMore;
      break;
    case HPE_PAUSED:
      used = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
      status = pause_ == Pause::kHead ? Status::kHeadComplete : Status::kMessageComplete;
      break;
    case HPE_PAUSED_UPGRADE:
      // We strip Upgrade before forwarding, so the message simply ends here.
      used = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume_after_upgrade(&parser_);
      status = Status::kMessageComplete;
      break;
    default:
      if (!error_) error_ = "";  // llhttp's own error: error_reason() asks llhttp
      return Status::kError;
  }
  if (body && check_chunks_) {
    // What llhttp took as chunked framing and data, read again strictly: it must be valid and
    // end exactly where llhttp ended the message.
    if (!chunks_.feed(data, used)) {
      error_ = chunks_.error();
      return Status::kError;
    }
    if (chunks_.done() != (status == Status::kMessageComplete)) {
      error_ = "ambiguous chunked framing";
      return Status::kError;
    }
  }
  if (status == Status::kHeadComplete) {
    // The whole head is in [head_start_, here) of the caller's buffer: check it byte by byte.
    std::size_t head_end = static_cast<std::size_t>(data + used - base_);
    error_ = check_head(kind_ == Kind::kRequest,
                        std::string_view(base_ + head_start_, head_end - head_start_));
    if (error_) return Status::kError;
    in_body_ = true;
    check_chunks_ = head_.chunked && !head_.no_body;
    if (check_chunks_) chunks_.start(max_header_count_);
  } else if (status == Status::kMessageComplete) {
    in_body_ = false;
    at_message_start_ = true;
  }
  consumed = used;
  return status;
}

bool MessageParser::finish_at_eof() {
  if (in_head_) return false;
  // Our on_message_complete pauses, which llhttp_finish reports as HPE_PAUSED: that is success.
  llhttp_errno_t err = llhttp_finish(&parser_);
  return err == HPE_OK || err == HPE_PAUSED;
}

std::string_view MessageParser::error_reason() const {
  if (too_many_headers_) return "too many header fields";
  if (error_ && *error_) return error_;
  const char* reason = llhttp_get_error_reason(&parser_);
  return reason ? std::string_view(reason)
                : std::string_view(llhttp_errno_name(llhttp_get_errno(&parser_)));
}

void MessageParser::extend(Span& span, const char* at, std::size_t len) {
  auto offset = static_cast<std::uint32_t>(at - base_);
  if (span.length == 0) span.offset = offset;
  // llhttp may report one token in several pieces when input arrives in several reads; the pieces
  // are contiguous in our buffer, so extending the span is enough.
  span.length = offset + static_cast<std::uint32_t>(len) - span.offset;
}

int MessageParser::on_message_begin(llhttp_t* p) {
  MessageParser& m = self(p);
  Head& h = m.head_;
  h.method = h.target = h.reason = Span{};
  h.status = 0;
  h.headers.clear();
  h.chunked = h.has_content_length = h.keep_alive = h.body_until_eof = h.no_body = false;
  h.content_length = 0;
  m.last_ = Last::kNone;
  m.in_head_ = true;
  m.too_many_headers_ = false;
  m.body_bytes_ = 0;
  return 0;
}

int MessageParser::on_method(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.method, at, len);
  return 0;
}

int MessageParser::on_url(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.target, at, len);
  return 0;
}

int MessageParser::on_status(llhttp_t* p, const char* at, std::size_t len) {
  self(p).extend(self(p).head_.reason, at, len);
  return 0;
}

int MessageParser::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  if (!m.in_head_) return 0;  // a trailer field: not part of the head; ChunkedChecker checks it
  if (m.last_ != Last::kField) {
    if (m.head_.headers.size() >= m.max_header_count_) {
      m.too_many_headers_ = true;
      return -1;
    }
    m.head_.headers.emplace_back();
  }
  m.last_ = Last::kField;
  m.extend(m.head_.headers.back().name, at, len);
  return 0;
}

int MessageParser::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  if (!m.in_head_) return 0;
  m.last_ = Last::kValue;
  m.extend(m.head_.headers.back().value, at, len);
  return 0;
}

int MessageParser::on_headers_complete(llhttp_t* p) {
  MessageParser& m = self(p);
  Head& h = m.head_;
  for (HeaderSpan& f : h.headers) {
    // llhttp 8 accepts "Name : value"; RFC 9112 §5.1 requires a 400 (a classic smuggling vector).
    // (check_head() checks every byte again once the head is complete.)
    for (char c : f.name.in(m.base_)) {
      if (c == ' ' || c == '\t') {
        m.error_ = "whitespace in a header field name";
        return -1;
      }
    }
    // Trailing whitespace is not part of a field value (RFC 9110 §5.5); llhttp keeps it.
    std::string_view v = f.value.in(m.base_);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    f.value.length = static_cast<std::uint32_t>(v.size());
  }
  h.version_major = p->http_major;
  h.version_minor = p->http_minor;
  h.status = p->status_code;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  h.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  h.content_length = h.has_content_length ? p->content_length : 0;
  if (m.kind_ == Kind::kResponse) {
    int s = h.status;
    if (m.request_was_head_ || s / 100 == 1 || s == 204 || s == 304) {
      // llhttp would otherwise wait for a body these responses never carry; resuming after the
      // pause keeps this flag, so this is how we say "no body" and still stop here.
      p->flags |= F_SKIPBODY;
      h.no_body = true;
    } else {
      h.body_until_eof = !h.chunked && !h.has_content_length;
    }
  } else {
    h.no_body = !h.chunked && h.content_length == 0;
    // A request's body is always framed by its headers: a tunnel (CONNECT, Upgrade) starts only
    // after the request message has ended, and a CONNECT with a body is refused. Left set, llhttp
    // would ignore a CONNECT's Content-Length (desyncing the upstream connection) and stop after an
    // Upgrade request.
    p->upgrade = 0;
  }
  if (m.check_framing() != 0) return -1;
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  m.in_head_ = false;
  m.pause_ = Pause::kHead;
  return HPE_PAUSED;
}

int MessageParser::on_body(llhttp_t* p, const char* at, std::size_t len) {
  MessageParser& m = self(p);
  m.body_bytes_ += len;
  if (m.body_sink_) m.body_sink_(m.body_sink_ctx_, at, len);
  return 0;
}

int MessageParser::on_message_complete(llhttp_t* p) {
  self(p).pause_ = Pause::kMessage;
  return HPE_PAUSED;
}

// Transfer-Encoding beyond what llhttp checks (RFC 9112 §6.1, §6.3): never in HTTP/1.0 ("MUST
// treat the message as if the framing is faulty"), never empty, and chunked at most once and
// only as the last coding. Anything else is framed differently by different implementations.
int MessageParser::check_framing() {
  bool te = false;
  int chunked = 0;
  std::string_view last;
  for (const HeaderSpan& f : head_.headers) {
    if (!iequals(f.name.in(base_), "transfer-encoding")) continue;
    te = true;
    std::string_view list = f.value.in(base_);
    while (!list.empty()) {
      std::size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) {
        last = item;
        if (iequals(item, "chunked")) ++chunked;
      }
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  if (!te) return 0;
  if (head_.version_major == 1 && head_.version_minor == 0) {
    error_ = "Transfer-Encoding in an HTTP/1.0 message";
  } else if (last.empty()) {
    error_ = "empty Transfer-Encoding";
  } else if (chunked > 1 || (chunked == 1 && !iequals(last, "chunked"))) {
    error_ = "chunked must be the final transfer coding, applied once";
  } else if ((chunked == 1) != head_.chunked) {
    // We forward the field with its whitespace trimmed, but llhttp reads "chunked<TAB>" as
    // another coding (for a response: a body delimited by close). Found by fuzzing: the client
    // would have read the body as chunked.
    error_ = "ambiguous Transfer-Encoding";
  }
  return error_ ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// ChunkedChecker

void ChunkedChecker::start(std::uint32_t max_trailer_fields) {
  *this = ChunkedChecker{};
  max_trailer_fields_ = max_trailer_fields;
}

bool ChunkedChecker::fail(const char* why) {
  state_ = State::kError;
  error_ = why;
  return false;
}

bool ChunkedChecker::feed(const char* data, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) {
    if (state_ == State::kData) {
      // Chunk data: skipped in one step.
      std::size_t take = len - i < size_ ? len - i : static_cast<std::size_t>(size_);
      size_ -= take;
      data_bytes_ += take;
      i += take;
      if (size_ > 0) return true;
      state_ = State::kDataCR;
      if (i == len) return true;
    }
    auto c = static_cast<unsigned char>(data[i]);
    if (state_ <= State::kSizeLF && ++line_ > kMaxLine) return fail("chunk-size line too long");
    if (state_ >= State::kTrailerStart && state_ <= State::kEndLF &&
        ++trailer_bytes_ > kMaxTrailerBytes) {
      return fail("trailer section too large");
    }
    switch (state_) {
      case State::kSize: {
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d >= 0) {
          if (size_ > (UINT64_MAX >> 4)) return fail("chunk size overflow");
          size_ = size_ * 16 + static_cast<unsigned>(d);
          digits_ = true;
        } else if (!digits_) {
          return fail("chunk size without hex digits");
        } else if (c == ';') {
          state_ = State::kExtName0;
        } else if (c == '\r') {
          state_ = State::kSizeLF;
        } else {
          return fail("invalid character after a chunk size");
        }
        break;
      }
      case State::kExtName0:
        if (!is_tchar(c)) return fail("invalid chunk extension name");
        state_ = State::kExtName;
        break;
      case State::kExtName:
        if (c == '=') {
          state_ = State::kExtValue0;
        } else if (c == ';') {
          state_ = State::kExtName0;
        } else if (c == '\r') {
          state_ = State::kSizeLF;
        } else if (!is_tchar(c)) {
          return fail("invalid chunk extension name");
        }
        break;
      case State::kExtValue0:
        if (c == '"') {
          state_ = State::kExtQuoted;
        } else if (is_tchar(c)) {
          state_ = State::kExtToken;
        } else {
          return fail("invalid chunk extension value");
        }
        break;
      case State::kExtToken:
        if (c == ';') {
          state_ = State::kExtName0;
        } else if (c == '\r') {
          state_ = State::kSizeLF;
        } else if (!is_tchar(c)) {
          return fail("invalid chunk extension value");
        }
        break;
      case State::kExtQuoted:
        if (c == '"') {
          state_ = State::kExtQuoteEnd;
        } else if (c == '\\') {
          state_ = State::kExtQuotedPair;
        } else if (!is_field_char(c)) {
          return fail("invalid character in a quoted chunk extension");
        }
        break;
      case State::kExtQuotedPair:
        if (!is_field_char(c)) return fail("invalid character in a quoted chunk extension");
        state_ = State::kExtQuoted;
        break;
      case State::kExtQuoteEnd:
        if (c == ';') {
          state_ = State::kExtName0;
        } else if (c == '\r') {
          state_ = State::kSizeLF;
        } else {
          return fail("invalid character after a quoted chunk extension");
        }
        break;
      case State::kSizeLF:
        if (c != '\n') return fail("chunk-size line not ended by CRLF");
        line_ = 0;
        state_ = size_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData:
        break;  // handled above
      case State::kDataCR:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        state_ = State::kDataLF;
        break;
      case State::kDataLF:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        state_ = State::kSize;
        digits_ = false;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kEndLF;
        } else if (is_tchar(c)) {
          if (++trailer_fields_ > max_trailer_fields_) return fail("too many trailer fields");
          state_ = State::kTrailerName;
        } else {
          return fail("invalid trailer field (or obs-fold)");
        }
        break;
      case State::kTrailerName:
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (!is_tchar(c)) {
          return fail("invalid trailer field name");
        }
        break;
      case State::kTrailerValue:
        if (c == '\r') {
          state_ = State::kTrailerLF;
        } else if (!is_field_char(c)) {
          return fail("invalid character in a trailer field value");
        }
        break;
      case State::kTrailerLF:
        if (c != '\n') return fail("trailer field not ended by CRLF");
        state_ = State::kTrailerStart;
        break;
      case State::kEndLF:
        if (c != '\n') return fail("chunked body not ended by CRLF");
        state_ = State::kDone;
        break;
      case State::kDone:
        return fail("bytes after the end of the chunked body");
      case State::kError:
        return false;
    }
  }
  return state_ != State::kError;
}

}  // namespace switchyard::http
