// Fuzz target: the response side of MessageParser and write_client_response, driven the way
// Session drives them: interim 1xx responses, HEAD requests, HTTP/1.0 clients (chunked bodies
// de-chunked and delimited by close). Oracle: what the proxy sends the client (its head plus the
// body it forwards) is parsed by a fresh strict parser as exactly one response with the same body,
// ending where the proxy's ended; a response the proxy accepts is never framed two ways.
//
// Input: byte 0 = mode (bits 0-2 and the rest: how the input is cut into reads, bit 3: the
// request was HEAD, bit 4: the client speaks HTTP/1.0, bit 5: the client asked to close); the
// rest is what the server sends.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "http/head_writer.h"
#include "http/message_parser.h"

namespace {

using switchyard::fuzz::escape;
using switchyard::fuzz::Parsed;
using switchyard::http::MessageParser;
using Status = MessageParser::Status;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint8_t mode = data[0];
  bool head_request = (mode & 8) != 0;
  bool client10 = (mode & 16) != 0;
  bool client_keep_alive = (mode & 32) == 0;
  switchyard::fuzz::Splitter split(mode);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  MessageParser proxy(MessageParser::Kind::kResponse, 100);
  proxy.reset(in.data());
  proxy.set_request_was_head(head_request);
  std::size_t start = 0;
  Parsed p;
  for (int interim = 0;; ++interim) {
    if (interim > 8) return 0;
    p = switchyard::fuzz::drive(proxy, in, start, split);
    if (!p.head_complete) return 0;  // 502 (or still waiting)
    int status = proxy.head().status;
    FUZZ_CHECK(status >= 100 && status <= 599, "status out of range");
    if (status / 100 != 1) break;
    if (status == 101) return 0;  // Session answers 502: we never ask for an upgrade
    FUZZ_CHECK(p.message_complete && p.message_end == p.head_end, "an interim response has a body");
    start = p.message_end;
  }
  const switchyard::http::Head& h = proxy.head();
  const char* base = in.data() + start;
  if (p.last == Status::kError && !p.message_complete) return 0;  // bad framing: 502 or close
  if (!p.message_complete && h.body_until_eof && proxy.finish_at_eof()) {
    // The server closes: that ends a body without framing.
    p.message_complete = true;
    p.message_end = in.size();
  }

  bool dechunk = client10 && h.chunked && !h.no_body;
  switchyard::http::ResponseForwarding fwd;
  fwd.client_http10 = client10;
  fwd.keep_alive = client_keep_alive && !h.body_until_eof && !dechunk;
  fwd.dechunk = dechunk;
  std::string out;
  switchyard::http::write_client_response(base, h, fwd, out);

  // What the client receives.
  std::string_view raw_body =
      in.substr(p.head_end, (p.message_complete ? p.message_end : in.size()) - p.head_end);
  std::string wire = out;
  wire.append(dechunk ? std::string_view(p.body) : raw_body);

  MessageParser client(MessageParser::Kind::kResponse, 10000);
  client.reset(wire.data());
  client.set_request_was_head(head_request);
  switchyard::fuzz::Splitter whole(0);
  Parsed c = switchyard::fuzz::drive(client, wire, 0, whole);
  FUZZ_CHECK(c.head_complete && c.head_end == out.size(),
             "the client cannot parse the head we send: " + escape(out) + " (" +
                 std::string(client.error_reason()) + ")");
  const switchyard::http::Head& ch = client.head();
  FUZZ_CHECK(ch.status == h.status, "status changed");
  for (const auto& f : ch.headers) {
    std::string_view name = f.name.in(wire.data());
    FUZZ_CHECK(
        !switchyard::http::is_hop_by_hop(name) || switchyard::http::iequals(name, "connection"),
        "hop-by-hop header forwarded: " + escape(out));
  }
  if (h.no_body) {
    // (Framing fields of a bodiless response describe another response; HTTP/1.0 clients do
    // not get Transfer-Encoding at all.)
    FUZZ_CHECK(ch.no_body, "a bodiless response got a body: " + escape(out));
  } else if (dechunk) {
    FUZZ_CHECK(!ch.chunked && !ch.has_content_length && !ch.keep_alive,
               "a de-chunked body must be delimited by close: " + escape(out));
  } else {
    FUZZ_CHECK(ch.chunked == h.chunked && ch.has_content_length == h.has_content_length &&
                   ch.content_length == h.content_length && ch.no_body == h.no_body &&
                   ch.body_until_eof == h.body_until_eof,
               "the client frames the body differently: proxy read " +
                   escape(in.substr(start, p.head_end - start)) + ", client gets " + escape(out));
  }
  if (ch.body_until_eof) {
    FUZZ_CHECK(!fwd.keep_alive, "a body delimited by close on a kept-alive connection");
  }
  if (!p.message_complete) {
    FUZZ_CHECK(!c.message_complete || c.message_end == wire.size(),
               "the client's response ends before the proxy's: " + escape(wire));
    return 0;
  }
  if (ch.body_until_eof && !c.message_complete) {
    FUZZ_CHECK(client.finish_at_eof(), "the client cannot end the body at close");
    c.message_complete = true;
    c.message_end = wire.size();
  }
  FUZZ_CHECK(c.message_complete && c.message_end == wire.size(),
             "the client's response does not end where the proxy's did: " + escape(wire));
  FUZZ_CHECK(c.body == p.body, "the client decodes a different body");
  return 0;
}
