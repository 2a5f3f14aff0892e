#include "http/message_parser.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

using switchyard::http::MessageParser;
using Status = MessageParser::Status;

namespace {

struct Parsed {
  Status status;
  std::size_t consumed;
};

Parsed parse(MessageParser& p, const std::string& buf, std::size_t from) {
  std::size_t consumed = 0;
  Status s = p.parse(buf.data() + from, buf.size() - from, consumed);
  return {s, consumed};
}

}  // namespace

TEST_CASE("request head stops at its last CRLF with spans into the buffer", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 100);
  std::string buf = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Two:  v \r\n\r\n";
  p.begin_head(buf.data());
  Parsed r = parse(p, buf, 0);
  REQUIRE(r.status == Status::kHeadComplete);
  CHECK(r.consumed == buf.size());
  const auto& h = p.head();
  CHECK(h.method.in(buf.data()) == "GET");
  CHECK(h.target.in(buf.data()) == "/a?b=1");
  REQUIRE(h.headers.size() == 2);
  CHECK(h.headers[0].name.in(buf.data()) == "Host");
  CHECK(h.headers[0].value.in(buf.data()) == "example.com");
  CHECK(h.headers[1].value.in(buf.data()) == "v");
  CHECK(h.keep_alive);
  CHECK(h.no_body);
  // A request without body completes on the next call, consuming nothing.
  CHECK(parse(p, buf, buf.size()).status == Status::kMessageComplete);
}

TEST_CASE("a head arriving byte by byte yields the same spans", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 100);
  std::string buf = "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  p.begin_head(buf.data());
  std::size_t off = 0;
  Status s = Status::kNeedMore;
  while (off < buf.size()) {
    std::size_t consumed = 0;
    s = p.parse(buf.data() + off, 1, consumed);
    off += consumed;
    if (s == Status::kHeadComplete) break;
  }
  REQUIRE(s == Status::kHeadComplete);
  CHECK(p.head().target.in(buf.data()) == "/upload");
  CHECK(p.head().headers[1].name.in(buf.data()) == "Content-Length");
  CHECK(p.head().content_length == 5);
  Parsed body = parse(p, buf, off);
  CHECK(body.status == Status::kMessageComplete);
  CHECK(body.consumed == 5);
  CHECK(p.body_bytes() == 5);
}

TEST_CASE("pipelined requests stop at each message end", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 100);
  std::string buf =
      "POST /1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
  p.begin_head(buf.data());
  Parsed a = parse(p, buf, 0);
  REQUIRE(a.status == Status::kHeadComplete);
  CHECK(p.head().chunked);
  Parsed b = parse(p, buf, a.consumed);
  REQUIRE(b.status == Status::kMessageComplete);
  CHECK(p.body_bytes() == 3);
  std::size_t next = a.consumed + b.consumed;
  CHECK(buf.substr(next, 6) == "GET /2");
  Parsed c = parse(p, buf, next);
  REQUIRE(c.status == Status::kHeadComplete);
  CHECK(p.head().target.in(buf.data()) == "/2");
}

TEST_CASE("request smuggling shapes are rejected", "[http]") {
  const char* cases[] = {
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\n\n",
      "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
      "BLAH\r\n\r\n",
  };
  for (const char* c : cases) {
    MessageParser p(MessageParser::Kind::kRequest, 100);
    std::string buf = c;
    p.begin_head(buf.data());
    std::size_t consumed = 0;
    Status s = p.parse(buf.data(), buf.size(), consumed);
    // Some framing errors surface on the first parse after the head (where the body would start).
    if (s == Status::kHeadComplete)
      s = p.parse(buf.data() + consumed, buf.size() - consumed, consumed);
    INFO(c);
    CHECK(s == Status::kError);
  }
}

TEST_CASE("more header fields than allowed is an error the caller can tell apart", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 3);
  std::string buf = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  p.begin_head(buf.data());
  CHECK(parse(p, buf, 0).status == Status::kError);
  CHECK(p.too_many_headers());
  CHECK(p.error_reason() == "too many header fields");
}

TEST_CASE("HTTP/1.0 keep-alive follows the Connection header", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 100);
  std::string plain = "GET / HTTP/1.0\r\n\r\n";
  p.begin_head(plain.data());
  REQUIRE(parse(p, plain, 0).status == Status::kHeadComplete);
  CHECK_FALSE(p.head().keep_alive);
  CHECK(p.head().version_minor == 0);

  MessageParser q(MessageParser::Kind::kRequest, 100);
  std::string ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  q.begin_head(ka.data());
  REQUIRE(parse(q, ka, 0).status == Status::kHeadComplete);
  CHECK(q.head().keep_alive);
}

TEST_CASE("responses to HEAD and 204/304 have no body whatever they announce", "[http]") {
  std::string buf =
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\n"
      "Content-Length: 7\r\n\r\n";
  MessageParser p(MessageParser::Kind::kResponse, 100);
  p.set_request_was_head(true);
  p.begin_head(buf.data());
  Parsed a = parse(p, buf, 0);
  REQUIRE(a.status == Status::kHeadComplete);
  CHECK(p.head().no_body);
  CHECK(p.head().status == 200);
  Parsed b = parse(p, buf, a.consumed);
  REQUIRE(b.status == Status::kMessageComplete);
  CHECK(b.consumed == 0);
  p.set_request_was_head(false);
  Parsed c = parse(p, buf, a.consumed);
  REQUIRE(c.status == Status::kHeadComplete);
  CHECK(p.head().status == 304);
  CHECK(p.head().no_body);
  CHECK(parse(p, buf, a.consumed + c.consumed).status == Status::kMessageComplete);
}

TEST_CASE("a response without length ends at EOF", "[http]") {
  std::string buf = "HTTP/1.1 200 OK\r\n\r\nsome bytes";
  MessageParser p(MessageParser::Kind::kResponse, 100);
  p.begin_head(buf.data());
  Parsed a = parse(p, buf, 0);
  REQUIRE(a.status == Status::kHeadComplete);
  CHECK(p.head().body_until_eof);
  CHECK(parse(p, buf, a.consumed).status == Status::kNeedMore);
  CHECK(p.finish_at_eof());
}

TEST_CASE("the body sink sees de-chunked data", "[http]") {
  std::string buf =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  MessageParser p(MessageParser::Kind::kResponse, 100);
  std::string seen;
  p.set_body_sink(
      [](void* ctx, const char* d, std::size_t n) { static_cast<std::string*>(ctx)->append(d, n); },
      &seen);
  p.begin_head(buf.data());
  Parsed a = parse(p, buf, 0);
  REQUIRE(a.status == Status::kHeadComplete);
  REQUIRE(parse(p, buf, a.consumed).status == Status::kMessageComplete);
  CHECK(seen == "hello world");
}

TEST_CASE("token lists match case-insensitively", "[http]") {
  using switchyard::http::list_contains_token;
  CHECK(list_contains_token("keep-alive, Upgrade", "upgrade"));
  CHECK(list_contains_token(" close ", "close"));
  CHECK_FALSE(list_contains_token("closed", "close"));
  CHECK_FALSE(list_contains_token("", "close"));
}

namespace {

// Parses a whole message the way Session does (the rest of the input right after the head).
// Returns the last status and sets `body` to the decoded body.
Status parse_message(MessageParser& p, const std::string& buf, std::string* reason = nullptr) {
  p.begin_head(buf.data());
  std::size_t off = 0;
  Status s = Status::kNeedMore;
  for (int i = 0; i < 3; ++i) {
    std::size_t consumed = 0;
    s = p.parse(buf.data() + off, buf.size() - off, consumed);
    off += consumed;
    if (s != Status::kHeadComplete) break;
  }
  if (reason) *reason = std::string(p.error_reason());
  return s;
}

}  // namespace

TEST_CASE("heads llhttp 8.1 lets through but RFC 9112 does not are refused", "[http]") {
  const char* cases[] = {
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",                 // obs-fold
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",                // obs-fold (tab)
      "DESCRIBE / RTSP/1.0\r\nHost: h\r\n\r\n",                          // not HTTP
      "GET / HTTP/2.0\r\nHost: h\r\n\r\n",                               // not HTTP/1.x
      "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",                              // two spaces
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  // TE in HTTP/1.0
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
      "\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n",
      "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",         // fragment
      "GET * HTTP/1.1\r\nHost: h\r\n\r\n",            // asterisk-form without OPTIONS
      "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n",  // userinfo
      "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n",     // scheme
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",          // Host syntax
      "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
      "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",  // bare LF
  };
  for (const char* c : cases) {
    MessageParser p(MessageParser::Kind::kRequest, 100);
    std::string buf = c;
    std::string reason;
    INFO(c);
    CHECK(parse_message(p, buf, &reason) == Status::kError);
    CHECK(!reason.empty());
  }
}

TEST_CASE("what RFC 9112 allows and llhttp takes still passes", "[http]") {
  const char* cases[] = {
      "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",  // an empty line first
      "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http://h:8/p?q HTTP/1.1\r\nHost: h:8\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: [::1]:80\r\nX: caf\xe9 \t\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;a;b=\"c d\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
  };
  for (const char* c : cases) {
    MessageParser p(MessageParser::Kind::kRequest, 100);
    std::string buf = c;
    std::string reason;
    INFO(c);
    CHECK(parse_message(p, buf, &reason) == Status::kMessageComplete);
    INFO(reason);
  }
}

TEST_CASE("chunked bodies llhttp 8.1 ends in the wrong place are refused", "[http]") {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  const char* bodies[] = {
      "0\r\r\n\r\n",                // llhttp: last chunk "0\r" + "\r\n"
      "5\r\nhello\r\n0\r\n\rX",     // llhttp: "\r" + any byte ends the body
      "5\nhello\r\n0\r\n\r\n",      // bare LF
      "5\r\nhelloX\r\n0\r\n\r\n",   // data longer than its size
      "0\r\nX-T : 1\r\n\r\n",       // space before a trailer colon
      "0\r\nX-T: 1\r\n 2\r\n\r\n",  // obs-fold in a trailer
  };
  for (const char* b : bodies) {
    MessageParser p(MessageParser::Kind::kRequest, 100);
    std::string buf = head + b;
    INFO(b);
    CHECK(parse_message(p, buf) == Status::kError);
  }
  // Extensions have a bound (4 KiB per size line).
  MessageParser p(MessageParser::Kind::kRequest, 100);
  std::string buf = head + "5;" + std::string(5000, 'a') + "\r\nhello\r\n0\r\n\r\n";
  CHECK(parse_message(p, buf) == Status::kError);
}

TEST_CASE("trailer fields are checked but not added to the head", "[http]") {
  MessageParser p(MessageParser::Kind::kRequest, 3);
  std::string buf =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nA: 1\r\nB: 2\r\n\r\n";
  CHECK(parse_message(p, buf) == Status::kMessageComplete);
  CHECK(p.head().headers.size() == 2);
  // More trailer fields than max_header_count: refused.
  MessageParser q(MessageParser::Kind::kRequest, 3);
  std::string many =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  CHECK(parse_message(q, many) == Status::kError);
}

TEST_CASE("ChunkedChecker reads the same body the same way however it is cut", "[http]") {
  const std::string body = "5;a=\"x y\"\r\nhello\r\nA\r\n0123456789\r\n0;z\r\nT: v\r\n\r\n";
  for (std::size_t step = 1; step <= body.size(); ++step) {
    switchyard::http::ChunkedChecker c;
    c.start(10);
    bool ok = true;
    for (std::size_t off = 0; off < body.size(); off += step) {
      ok = ok && c.feed(body.data() + off, std::min(step, body.size() - off));
    }
    INFO(step);
    CHECK(ok);
    CHECK(c.done());
    CHECK(c.data_bytes() == 15);
  }
  switchyard::http::ChunkedChecker c;
  c.start(10);
  CHECK_FALSE(c.feed("fffffffffffffffff\r\n", 19));  // 2^68: overflow
  CHECK(std::string(c.error()) == "chunk size overflow");
}

TEST_CASE("responses are held to the same rules", "[http]") {
  const char* bad[] = {
      "HTTP/1.1 034 Odd\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
      "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\r\n",
  };
  for (const char* r : bad) {
    MessageParser p(MessageParser::Kind::kResponse, 100);
    std::string buf = r;
    INFO(r);
    CHECK(parse_message(p, buf) == Status::kError);
  }
  MessageParser p(MessageParser::Kind::kResponse, 100);
  std::string ok = "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok";  // no reason phrase
  CHECK(parse_message(p, ok) == Status::kMessageComplete);
}
