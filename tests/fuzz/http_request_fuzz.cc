// Fuzz target: the request side of MessageParser (the llhttp wrapper) and the head writer, driven
// the way Session drives them: a client byte stream cut into reads, pipelined messages, the
// checks Session makes after each head. Oracles:
//   1. Every head the proxy accepts is valid RFC 9112 (reference parser in fuzz_support.h) and
//      its body framing is the reference's: no input is framed differently by the proxy and by a
//      strict recipient.
//   2. The head the proxy forwards, followed by the body bytes it forwards, is parsed by a fresh
//      strict parser (the "origin") as exactly one message ending exactly where the proxy's did:
//      the upstream never sees two requests where the proxy saw one, or a different body.
//   3. Spans stay inside the head; forwarded names are tokens and values hold no CR/LF/NUL.
//
// Input: byte 0 picks how the stream is cut into reads; the rest is what the client sends.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "http/head_writer.h"
#include "http/message_parser.h"

namespace {

using switchyard::fuzz::escape;
using switchyard::fuzz::Framing;
using switchyard::fuzz::Parsed;
using switchyard::fuzz::Splitter;
using switchyard::http::MessageParser;
using Status = MessageParser::Status;

constexpr std::uint32_t kMaxHeaders = 100;  // the default limit

// What Session::on_request_head refuses before reading a body: no or several Hosts, CONNECT.
bool session_refuses(const switchyard::http::Head& h, const char* base) {
  int hosts = 0;
  for (const auto& f : h.headers) {
    if (switchyard::http::iequals(f.name.in(base), "host")) ++hosts;
  }
  if ((hosts == 0 && h.version_minor >= 1) || hosts > 1) return true;
  return h.method.in(base) == "CONNECT";
}

void check_head_spans(const switchyard::http::Head& h, const char* base, std::size_t head_len) {
  auto inside = [&](const switchyard::http::Span& s) {
    return std::size_t{s.offset} + s.length <= head_len;
  };
  FUZZ_CHECK(inside(h.method) && h.method.length > 0, "method span outside the head");
  FUZZ_CHECK(inside(h.target) && h.target.length > 0, "target span outside the head");
  for (const auto& f : h.headers) {
    FUZZ_CHECK(inside(f.name) && inside(f.value), "header span outside the head");
    std::string_view name = f.name.in(base);
    FUZZ_CHECK(switchyard::fuzz::is_token(name), "header name is not a token: " + escape(name));
    for (char c : f.value.in(base)) {
      FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0',
                 "header value with CR/LF/NUL: " + escape(f.value.in(base)));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  Splitter split(data[0]);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  MessageParser proxy(MessageParser::Kind::kRequest, kMaxHeaders);
  std::size_t start = 0;
  std::string up_head;
  for (int message = 0; message < 16 && start < in.size(); ++message) {
    Parsed p = switchyard::fuzz::drive(proxy, in, start, split);
    if (!p.head_complete) return 0;  // error or incomplete: 400/431/408, nothing forwarded
    const char* base = in.data() + start;
    const switchyard::http::Head& h = proxy.head();
    std::size_t head_len = p.head_end - start;
    check_head_spans(h, base, head_len);
    if (session_refuses(h, base)) return 0;
    // The first parse after the head is where llhttp reports framing conflicts (TE with CL...);
    // errors in the body come later. Either way Session answers 400 and closes both sides, so
    // the head is compared with the reference only when the message was accepted or is still
    // arriving.
    bool body_error = p.last == Status::kError;
    switchyard::fuzz::RefHead ref = switchyard::fuzz::ref_request_head(in.substr(start));
    if (!body_error) {
      FUZZ_CHECK(ref.valid, "proxy accepted a head the RFC rejects (" + ref.why +
                                "): " + escape(in.substr(start, head_len)));
      FUZZ_CHECK(ref.length == head_len, "head length differs: proxy " + std::to_string(head_len) +
                                             ", reference " + std::to_string(ref.length) + ": " +
                                             escape(in.substr(start, head_len)));
      FUZZ_CHECK(ref.method == h.method.in(base) && ref.target == h.target.in(base),
                 "request line differs from the reference");
      FUZZ_CHECK(ref.major == h.version_major && ref.minor == h.version_minor, "version differs");
      bool ref_chunked = ref.framing == Framing::kChunked;
      FUZZ_CHECK(ref_chunked == h.chunked, "chunked framing differs from the reference: " +
                                               escape(in.substr(start, head_len)));
      bool ref_cl = ref.framing == Framing::kLength;
      FUZZ_CHECK(
          ref_cl == h.has_content_length && (!ref_cl || ref.content_length == h.content_length),
          "Content-Length framing differs from the reference: " +
              escape(in.substr(start, head_len)));
    }

    std::string_view body_raw =
        in.substr(p.head_end, (p.message_complete ? p.message_end : in.size()) - p.head_end);
    if (p.message_complete) {
      if (h.chunked) {
        auto rc = switchyard::fuzz::ref_chunked(in.substr(p.head_end));
        FUZZ_CHECK(rc.result == switchyard::fuzz::RefChunked::Result::kComplete &&
                       rc.consumed == body_raw.size() && rc.data == p.body,
                   "chunked body accepted by the proxy differs from the reference (" + rc.why +
                       "): " + escape(body_raw));
      } else if (h.has_content_length) {
        FUZZ_CHECK(body_raw.size() == h.content_length && p.body == body_raw,
                   "Content-Length body differs from its length");
      } else {
        FUZZ_CHECK(body_raw.empty(), "request without framing has a body");
      }
    }
    if (body_error) return 0;  // Session answers 400 and closes both sides

    // What the origin receives: our head, then the body bytes exactly as they came.
    switchyard::http::RequestForwarding fwd;
    fwd.client_ip = "192.0.2.1";
    fwd.default_host = "10.0.0.1:80";
    up_head.clear();
    switchyard::http::write_upstream_request(base, h, fwd, up_head);
    std::string wire = up_head;
    wire.append(body_raw);
    MessageParser origin(MessageParser::Kind::kRequest, 10000);
    Splitter whole(0);
    Parsed o = switchyard::fuzz::drive(origin, wire, 0, whole);
    FUZZ_CHECK(o.head_complete && o.head_end == up_head.size(),
               "the origin cannot parse the forwarded head: " + escape(up_head));
    FUZZ_CHECK(origin.head().chunked == h.chunked &&
                   origin.head().has_content_length == h.has_content_length &&
                   origin.head().content_length == h.content_length,
               "the forwarded head frames the body differently: " + escape(up_head));
    FUZZ_CHECK(origin.head().headers.size() <= h.headers.size() + 4, "forwarded head grew");
    if (p.message_complete) {
      FUZZ_CHECK(o.message_complete && o.message_end == wire.size() && o.body == p.body,
                 "the origin sees a different message than the proxy: " + escape(wire));
    } else {
      FUZZ_CHECK(!o.message_complete || o.message_end == wire.size(),
                 "the origin's message ends before the proxy's: " + escape(wire));
      return 0;
    }
    if (!h.keep_alive) return 0;  // Session closes after this exchange
    start = p.message_end;
  }
  return 0;
}
