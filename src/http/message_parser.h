// Incremental HTTP/1.1 message parser: a strict llhttp wrapper that records the head as offsets
// into the caller's buffer (no copies) and stops at the two points a proxy acts on: the end of the
// head and the end of the message.
//
// One parser per connection direction; owned and used by one thread. Nothing here does I/O.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace switchyard::http {

// A byte range relative to the start of the head buffer.
struct Span {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;

  std::string_view in(const char* base) const { return {base + offset, length}; }
};

struct HeaderSpan {
  Span name;
  Span value;
};

// What the parser learnt from a message head. Valid from kHeadComplete until the next head starts.
struct Head {
  Span method;  // requests
  Span target;  // requests: the request-target as sent
  Span reason;  // responses
  int status = 0;
  int version_major = 1;
  int version_minor = 1;
  std::vector<HeaderSpan> headers;  // in arrival order, duplicates kept

  bool chunked = false;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  bool keep_alive = false;      // what the sender asked for, per its HTTP version and Connection
  bool body_until_eof = false;  // response body delimited by the connection closing
  bool no_body = false;         // HEAD response, 1xx/204/304, or a request without body
};

// A strict reading of a chunked body (RFC 9112 §7.1), byte by byte, as Switchyard's policy has
// it (docs/http-policy.md): hex size without sign, prefix or spaces; extensions `;name[=token or
// quoted-string]` without whitespace, at most kMaxLine bytes per size line; every line ending in
// CRLF; trailer fields with token names and visible values (no obs-fold), at most
// `max_trailer_fields` of them and kMaxTrailerBytes in all.
//
// MessageParser runs it over exactly the bytes llhttp consumed as a chunked body and requires both
// to agree on where the body ends: a chunked body is forwarded as it came, so a leniency of llhttp
// (8.1.0 takes "0\r\r\n" for a last chunk, and "\r" plus any byte for the final CRLF) would let
// the next hop read a different message. Usable on its own; no I/O, no allocation.
class ChunkedChecker {
 public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxTrailerBytes = 64 * 1024;

  void start(std::uint32_t max_trailer_fields);
  // Checks the next `len` bytes of the body. False at the first byte that breaks the grammar or a
  // limit, and from then on; error() says why.
  bool feed(const char* data, std::size_t len);
  // The last chunk and the trailer section have been read completely.
  bool done() const { return state_ == State::kDone; }
  const char* error() const { return error_; }
  std::uint64_t data_bytes() const { return data_bytes_; }

 private:
  enum class State : std::uint8_t {
    kSize,
    kExtName0,
    kExtName,
    kExtValue0,
    kExtToken,
    kExtQuoted,
    kExtQuotedPair,
    kExtQuoteEnd,
    kSizeLF,
    kData,
    kDataCR,
    kDataLF,
    kTrailerStart,
    kTrailerName,
    kTrailerValue,
    kTrailerLF,
    kEndLF,
    kDone,
    kError
  };
  bool fail(const char* why);

  State state_ = State::kSize;
  bool digits_ = false;
  std::uint64_t size_ = 0;  // of the chunk being read; then what is left of its data
  std::uint64_t data_bytes_ = 0;
  std::size_t line_ = 0;  // bytes of the current size line
  std::size_t trailer_bytes_ = 0;
  std::uint32_t trailer_fields_ = 0;
  std::uint32_t max_trailer_fields_ = 0;
  const char* error_ = nullptr;
};

class MessageParser {
 public:
  enum class Kind { kRequest, kResponse };
  enum class Status {
    kNeedMore,         // all input consumed, message not finished
    kHeadComplete,     // stopped right after the head; `consumed` bytes were head
    kMessageComplete,  // stopped right after the message; the rest is the next message
    kError,            // malformed input; see error_reason()
  };

  MessageParser(Kind kind, std::uint32_t max_header_count);
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  // Starts a new head whose bytes will be fed from a buffer starting at `base`. The head's bytes
  // must stay at the same offsets from `base` until kHeadComplete (the buffer may move, the
  // offsets may not: spans are offsets).
  void begin_head(const char* base);

  // Forgets everything about earlier messages (as on a new connection) and begins a head.
  void reset(const char* base);

  // For responses: the request was HEAD, so the response has no body whatever it announces.
  void set_request_was_head(bool head) { request_was_head_ = head; }

  // Parses `data[0, len)`; sets `consumed` to the bytes used before stopping.
  Status parse(const char* data, std::size_t len, std::size_t& consumed);

  // Tells the parser the peer closed the connection; true if that cleanly ends the message
  // (a response delimited by EOF).
  bool finish_at_eof();

  const Head& head() const { return head_; }
  bool in_head() const { return in_head_; }
  bool too_many_headers() const { return too_many_headers_; }
  std::string_view error_reason() const;
  // Decoded body bytes of the current message so far (after de-chunking).
  std::uint64_t body_bytes() const { return body_bytes_; }

  // Optional sink for decoded body data, used to de-chunk for HTTP/1.0 peers. Called during parse.
  using BodySink = void (*)(void* ctx, const char* data, std::size_t len);
  void set_body_sink(BodySink sink, void* ctx) {
    body_sink_ = sink;
    body_sink_ctx_ = ctx;
  }

 private:
  static int on_message_begin(llhttp_t* p);
  static int on_method(llhttp_t* p, const char* at, std::size_t len);
  static int on_url(llhttp_t* p, const char* at, std::size_t len);
  static int on_status(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, std::size_t len);
  static int on_message_complete(llhttp_t* p);
  int check_framing();

  void extend(Span& span, const char* at, std::size_t len);

  enum class Last { kNone, kField, kValue };
  enum class Pause { kNone, kHead, kMessage };

  Kind kind_;
  std::uint32_t max_header_count_;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  const char* base_ = nullptr;
  Head head_;
  Last last_ = Last::kNone;
  Pause pause_ = Pause::kNone;  // why llhttp_execute last returned HPE_PAUSED
  bool in_head_ = true;
  bool too_many_headers_ = false;
  // Why the wrapper refused input llhttp let through (see docs/http-policy.md); sticky: once set,
  // parse() keeps returning kError until reset().
  const char* error_ = nullptr;
  bool at_message_start_ = true;  // the next byte parsed starts a message
  bool in_body_ = false;          // between kHeadComplete and kMessageComplete
  bool check_chunks_ = false;     // the current body is chunked: chunks_ checks it
  std::uint32_t head_start_ = 0;  // offset of the current head's first byte from base_
  ChunkedChecker chunks_;
  bool request_was_head_ = false;
  std::uint64_t body_bytes_ = 0;
  BodySink body_sink_ = nullptr;
  void* body_sink_ctx_ = nullptr;
};

// Case-insensitive ASCII comparison for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// True if the comma-separated token list `list` contains `token` (case-insensitive).
bool list_contains_token(std::string_view list, std::string_view token);

}  // namespace switchyard::http
