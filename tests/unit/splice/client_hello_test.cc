// The SNI peek of `mode: tcp` listeners with `sni:` (src/splice/client_hello.h).
#include "splice/client_hello.h"

#include <catch2/catch.hpp>
#include <string>

namespace {

using switchyard::splice::ClientHelloResult;
using switchyard::splice::parse_client_hello_sni;

void put16(std::string& s, std::size_t v) {
  s += static_cast<char>((v >> 8) & 0xff);
  s += static_cast<char>(v & 0xff);
}

// A ClientHello handshake message (type, 24-bit length, body) with an optional server_name.
std::string client_hello(const std::string& host, bool with_extensions = true) {
  std::string body;
  body += "\x03\x03";
  body += std::string(32, 'r');        // random
  body += '\x20' + std::string(32, 's');  // session id
  put16(body, 4);
  body += "\x13\x01\x13\x02";  // cipher suites
  body += "\x01";
  body += '\0';  // compression: null
  if (with_extensions) {
    std::string ext;
    // supported_versions, to have something before server_name.
    ext += '\0';
    ext += '\x2b';
    put16(ext, 3);
    ext += "\x02\x03\x04";
    if (!host.empty()) {
      std::string list;
      list += '\0';  // host_name
      put16(list, host.size());
      list += host;
      std::string sn;
      put16(sn, list.size());
      sn += list;
      ext += '\0';
      ext += '\0';  // type 0: server_name
      put16(ext, sn.size());
      ext += sn;
    }
    put16(body, ext.size());
    body += ext;
  }
  std::string msg;
  msg += '\x01';
  msg += '\0';
  put16(msg, body.size());
  return msg + body;
}

// `msg` in TLS handshake records of at most `record` payload bytes.
std::string records(const std::string& msg, std::size_t record) {
  std::string out;
  for (std::size_t off = 0; off < msg.size(); off += record) {
    std::string part = msg.substr(off, record);
    out += "\x16\x03\x01";
    put16(out, part.size());
    out += part;
  }
  return out;
}

}  // namespace

TEST_CASE("the SNI of a ClientHello is found, however the bytes arrive", "[splice][sni]") {
  const std::string hello = records(client_hello("Api.Example.com"), 16384);
  std::string_view name;
  REQUIRE(parse_client_hello_sni(hello.data(), hello.size(), name) == ClientHelloResult::kFound);
  CHECK(name == "Api.Example.com");
  // Every prefix asks for more; none is mistaken for something else.
  for (std::size_t n = 1; n < hello.size(); ++n) {
    INFO(n);
    REQUIRE(parse_client_hello_sni(hello.data(), n, name) == ClientHelloResult::kNeedMore);
  }
  // Split over several records (clients with large key shares do that). A name that a record
  // boundary cuts is not given (kNoName: the listener's default pool), never a wrong one.
  int found = 0;
  for (std::size_t record : {1u, 7u, 60u, 100u, 117u}) {
    INFO(record);
    const std::string split = records(client_hello("db.example"), record);
    name = {};
    ClientHelloResult r = parse_client_hello_sni(split.data(), split.size(), name);
    REQUIRE((r == ClientHelloResult::kFound || r == ClientHelloResult::kNoName));
    if (r == ClientHelloResult::kFound) {
      CHECK(name == "db.example");
      ++found;
    }
  }
  CHECK(found >= 2);
  // Bytes after the ClientHello (the client is waiting, but fine) do not matter.
  const std::string more = hello + "\x17\x03\x03garbage";
  CHECK(parse_client_hello_sni(more.data(), more.size(), name) == ClientHelloResult::kFound);
}

TEST_CASE("no name, not TLS, or broken: said so", "[splice][sni]") {
  std::string_view name;
  const std::string no_sni = records(client_hello(""), 16384);
  CHECK(parse_client_hello_sni(no_sni.data(), no_sni.size(), name) == ClientHelloResult::kNoName);
  const std::string no_ext = records(client_hello("", false), 16384);
  CHECK(parse_client_hello_sni(no_ext.data(), no_ext.size(), name) == ClientHelloResult::kNoName);
  const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(parse_client_hello_sni(http.data(), http.size(), name) == ClientHelloResult::kNotTls);
  CHECK(parse_client_hello_sni("G", 1, name) == ClientHelloResult::kNotTls);
  // A ServerHello (type 2), and an extension whose length runs past the message.
  std::string server_hello = client_hello("x.example");
  server_hello[0] = '\x02';
  server_hello = records(server_hello, 16384);
  CHECK(parse_client_hello_sni(server_hello.data(), server_hello.size(), name) ==
        ClientHelloResult::kNotTls);
  std::string broken = client_hello("x.example");
  broken[broken.size() - 12] = '\x7f';  // inside the server_name extension's lengths
  broken = records(broken, 16384);
  CHECK(parse_client_hello_sni(broken.data(), broken.size(), name) != ClientHelloResult::kFound);
  const std::string record_too_long = "\x16\x03\x01\x7f\xff";
  CHECK(parse_client_hello_sni(record_too_long.data(), record_too_long.size(), name) ==
        ClientHelloResult::kNotTls);
}
