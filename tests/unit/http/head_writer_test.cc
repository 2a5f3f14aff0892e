#include "http/head_writer.h"

#include <catch2/catch.hpp>
#include <string>

#include "http/error_page.h"

using namespace switchyard::http;

namespace {

// Parses `raw` as a head, keeping the buffer alive in the fixture.
struct ParsedHead {
  std::string buf;
  MessageParser parser;
  ParsedHead(std::string raw, MessageParser::Kind kind) : buf(std::move(raw)), parser(kind, 100) {
    parser.begin_head(buf.data());
    std::size_t consumed = 0;
    REQUIRE(parser.parse(buf.data(), buf.size(), consumed) == MessageParser::Status::kHeadComplete);
  }
};

}  // namespace

TEST_CASE("upstream request drops hop-by-hop headers and adds forwarding headers", "[http]") {
  ParsedHead in(
      "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: close\r\nUpgrade: h2c\r\n"
      "X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
      MessageParser::Kind::kRequest);
  RequestForwarding fwd;
  fwd.client_ip = "10.1.2.3";
  std::string out;
  write_upstream_request(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out ==
        "GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\n"
        "X-Forwarded-Proto: http\r\nVia: 1.1 switchyard\r\n\r\n");
}

TEST_CASE("an existing X-Forwarded-For is extended, not replaced", "[http]") {
  ParsedHead in("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
                MessageParser::Kind::kRequest);
  RequestForwarding fwd;
  fwd.client_ip = "2.2.2.2";
  fwd.x_forwarded_proto = false;
  fwd.via = false;
  std::string out;
  write_upstream_request(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n\r\n");
}

TEST_CASE("an HTTP/1.0 request without Host gets the upstream's address", "[http]") {
  ParsedHead in("GET / HTTP/1.0\r\n\r\n", MessageParser::Kind::kRequest);
  RequestForwarding fwd;
  fwd.client_ip = "2.2.2.2";
  fwd.default_host = "10.0.0.1:80";
  fwd.x_forwarded_for = fwd.x_forwarded_proto = false;
  std::string out;
  write_upstream_request(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\nVia: 1.0 switchyard\r\n\r\n");
}

TEST_CASE("client response says close when the connection will close", "[http]") {
  ParsedHead in("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
                MessageParser::Kind::kResponse);
  ResponseForwarding fwd;
  fwd.keep_alive = false;
  fwd.via = false;
  std::string out;
  write_client_response(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
}

TEST_CASE("de-chunked responses to HTTP/1.0 clients lose Transfer-Encoding", "[http]") {
  ParsedHead in("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n",
                MessageParser::Kind::kResponse);
  ResponseForwarding fwd;
  fwd.client_http10 = true;
  fwd.keep_alive = false;
  fwd.dechunk = true;
  fwd.via = false;
  std::string out;
  write_client_response(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "HTTP/1.0 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\n");
}

TEST_CASE("error responses name their status in a small body and close", "[http]") {
  std::string out;
  write_error_response(431, out);
  CHECK(out ==
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
        "Content-Length: 36\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        "431 Request Header Fields Too Large\n");
}

TEST_CASE("configured responses carry their headers and body", "[http]") {
  switchyard::config::Respond r;
  r.status = 503;
  r.headers.push_back({"Retry-After", "30"});
  r.body = "down for maintenance\n";
  std::string out;
  write_respond(r, true, false, out);
  CHECK(out ==
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 21\r\n\r\n"
        "down for maintenance\n");
  std::string head_only;
  write_respond(r, false, true, head_only);
  CHECK(head_only ==
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 21\r\n"
        "Connection: close\r\n\r\n");
}

TEST_CASE("route header edits remove, replace and add fields", "[http]") {
  ParsedHead in("GET /v1/x?q=1 HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\nX-Version: 0\r\n\r\n",
                MessageParser::Kind::kRequest);
  switchyard::config::HeaderEdits edits;
  edits.remove.push_back("cookie");
  edits.set.push_back({"X-Version", "1"});
  edits.add.push_back({"X-Trace", "on"});
  RequestForwarding fwd;
  fwd.x_forwarded_for = fwd.x_forwarded_proto = fwd.via = false;
  fwd.edits = &edits;
  fwd.target = "/api/v1/x?q=1";
  std::string out;
  write_upstream_request(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "GET /api/v1/x?q=1 HTTP/1.1\r\nHost: a\r\nX-Version: 1\r\nX-Trace: on\r\n\r\n");

  ParsedHead resp("HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n",
                  MessageParser::Kind::kResponse);
  switchyard::config::HeaderEdits redits;
  redits.remove.push_back("server");
  redits.set.push_back({"Cache-Control", "max-age=60"});
  ResponseForwarding rf;
  rf.via = false;
  rf.edits = &redits;
  std::string rout;
  write_client_response(resp.buf.data(), resp.parser.head(), rf, rout);
  CHECK(rout == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nCache-Control: max-age=60\r\n\r\n");
}

TEST_CASE("Connection cannot strip the fields that frame a message or name its target", "[http]") {
  ParsedHead in(
      "POST /x HTTP/1.1\r\nHost: a\r\nConnection: content-length, host, x-drop\r\n"
      "Content-Length: 3\r\nX-Drop: 1\r\n\r\n",
      MessageParser::Kind::kRequest);
  RequestForwarding fwd;
  fwd.x_forwarded_for = fwd.x_forwarded_proto = fwd.via = false;
  std::string out;
  write_upstream_request(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
}

TEST_CASE("an absolute-form target goes upstream in origin-form with its authority as Host",
          "[http]") {
  RequestForwarding fwd;
  fwd.x_forwarded_for = fwd.x_forwarded_proto = fwd.via = false;
  fwd.default_host = "10.0.0.1:80";
  // RFC 9112 §3.2.2: the received Host is replaced by the target's authority, which is what the
  // routes matched on.
  ParsedHead a("GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: b.example\r\nX: 1\r\n\r\n",
               MessageParser::Kind::kRequest);
  std::string out;
  write_upstream_request(a.buf.data(), a.parser.head(), fwd, out);
  CHECK(out == "GET /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nX: 1\r\n\r\n");
  // No path: "/"; no Host at all (HTTP/1.0): the authority, not the default.
  ParsedHead b("GET HTTPS://a.example?x HTTP/1.0\r\n\r\n", MessageParser::Kind::kRequest);
  out.clear();
  write_upstream_request(b.buf.data(), b.parser.head(), fwd, out);
  CHECK(out == "GET /?x HTTP/1.1\r\nHost: a.example\r\n\r\n");
}

TEST_CASE("a route that sets or adds Host sends exactly one Host", "[http]") {
  switchyard::config::HeaderEdits set;
  set.set.push_back({"host", "internal.example"});
  switchyard::config::HeaderEdits add;
  add.add.push_back({"Host", "added.example"});
  RequestForwarding fwd;
  fwd.x_forwarded_for = fwd.x_forwarded_proto = fwd.via = false;
  fwd.default_host = "10.0.0.1:80";
  ParsedHead with_host("GET / HTTP/1.1\r\nHost: a\r\n\r\n", MessageParser::Kind::kRequest);
  ParsedHead without_host("GET / HTTP/1.0\r\n\r\n", MessageParser::Kind::kRequest);
  for (const auto* edits : {&set, &add}) {
    fwd.edits = edits;
    const std::string host = edits == &set ? "host: internal.example" : "Host: added.example";
    for (ParsedHead* in : {&with_host, &without_host}) {
      std::string out;
      write_upstream_request(in->buf.data(), in->parser.head(), fwd, out);
      CHECK(out == "GET / HTTP/1.1\r\n" + host + "\r\n\r\n");
    }
  }
}

TEST_CASE("HTTP/1.0 clients never get Transfer-Encoding, even without a body", "[http]") {
  ParsedHead in("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"x\"\r\n\r\n",
                MessageParser::Kind::kResponse);
  ResponseForwarding fwd;
  fwd.client_http10 = true;
  fwd.keep_alive = false;
  fwd.via = false;
  std::string out;
  write_client_response(in.buf.data(), in.parser.head(), fwd, out);
  CHECK(out == "HTTP/1.0 304 Not Modified\r\nETag: \"x\"\r\nConnection: close\r\n\r\n");
}
