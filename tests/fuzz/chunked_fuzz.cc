// Fuzz target: the chunked decoder (llhttp behind MessageParser) against a reference written from
// RFC 9112 §7.1. The proxy forwards chunked bodies byte for byte, so where a chunked body ends is
// decided by our parser alone: if it accepts a body a strict recipient would read differently (a
// bare LF, a lenient size, a different end), the next hop can be desynchronised.
// Oracle: whenever the proxy completes the message, the reference completes it at the same byte
// with the same data; when the proxy errors or waits for more, the reference does not complete
// it. Decoded data is taken from the body sink (as for HTTP/1.0 clients, which get bodies
// de-chunked).
//
// Input: byte 0 = mode (bits 0-1 and the rest: how the input is cut into reads, bit 2: response
// instead of request); the rest is the body after a fixed head announcing chunked.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "http/message_parser.h"

namespace {

using switchyard::fuzz::escape;
using switchyard::fuzz::RefChunked;
using switchyard::http::MessageParser;
using Status = MessageParser::Status;

const std::string_view kRequestHead =
    "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string_view kResponseHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint8_t mode = data[0];
  bool response = (mode & 4) != 0;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view head = response ? kResponseHead : kRequestHead;
  std::string buf(head);
  buf.append(body);

  MessageParser p(response ? MessageParser::Kind::kResponse : MessageParser::Kind::kRequest, 100);
  switchyard::fuzz::Splitter split(mode);
  switchyard::fuzz::Parsed r = switchyard::fuzz::drive(p, buf, 0, split);
  FUZZ_CHECK(r.head_complete && r.head_end == head.size(), "the fixed head did not parse");
  FUZZ_CHECK(p.head().chunked, "the fixed head is not chunked");

  RefChunked ref = switchyard::fuzz::ref_chunked(body);
  if (r.message_complete) {
    std::size_t consumed = r.message_end - head.size();
    FUZZ_CHECK(ref.result == RefChunked::Result::kComplete,
               "proxy accepted a chunked body the reference rejects (" + ref.why +
                   "): " + escape(body.substr(0, consumed)));
    FUZZ_CHECK(ref.consumed == consumed, "chunked body ends at " + std::to_string(consumed) +
                                             " for the proxy, " + std::to_string(ref.consumed) +
                                             " for the reference: " + escape(body));
    FUZZ_CHECK(ref.data == r.body,
               "decoded data differs: proxy " + escape(r.body) + ", reference " + escape(ref.data));
    FUZZ_CHECK(p.body_bytes() == r.body.size(), "body_bytes() disagrees with the data");
  } else {
    FUZZ_CHECK(
        ref.result != RefChunked::Result::kComplete || ref.framing_trailer || ref.llhttp_refuses,
        "reference completes a body the proxy " +
            std::string(r.last == Status::kError ? "rejects (" + std::string(p.error_reason()) + ")"
                                                 : "still waits on") +
            ": " + escape(body.substr(0, ref.consumed)));
    if (r.last != Status::kError) {
      // Everything the proxy has decoded so far is what the reference decoded.
      FUZZ_CHECK(ref.result == RefChunked::Result::kNeedMore,
                 "proxy waits for more of a body the reference rejects (" + ref.why +
                     "): " + escape(body));
      FUZZ_CHECK(ref.data == r.body, "partially decoded data differs: proxy " + escape(r.body) +
                                         ", reference " + escape(ref.data));
    }
  }

  // The strict checker on its own (MessageParser runs it behind llhttp) agrees with the
  // reference in both directions: it implements the same policy.
  switchyard::http::ChunkedChecker checker;
  checker.start(100);
  if (ref.result == RefChunked::Result::kComplete) {
    FUZZ_CHECK(checker.feed(body.data(), ref.consumed) && checker.done(),
               "ChunkedChecker rejects a body the reference accepts (" +
                   std::string(checker.error() ? checker.error() : "not done") +
                   "): " + escape(body.substr(0, ref.consumed)));
    FUZZ_CHECK(checker.data_bytes() == ref.data.size(), "ChunkedChecker counts other data");
  } else {
    bool ok = checker.feed(body.data(), body.size());
    FUZZ_CHECK(!checker.done(), "ChunkedChecker completes a body the reference does not");
    // (The reference reads whole lines before judging them; the checker may refuse a line
    // before its end, so "reference waits, checker refuses" is fine.)
    FUZZ_CHECK(
        !ok || ref.result == RefChunked::Result::kNeedMore,
        "ChunkedChecker accepts a body the reference rejects (" + ref.why + "): " + escape(body));
  }
  return 0;
}
