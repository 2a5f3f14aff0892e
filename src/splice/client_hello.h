// Reads the server name (SNI, RFC 6066 §3) from the first bytes a TLS client sends, without
// terminating TLS: for `mode: tcp` listeners that choose a pool by name and then tunnel the
// connection, bytes untouched, to a server that terminates TLS itself.
//
// Pure function over a byte span (no I/O, no allocation); safe on any input.
#pragma once

#include <cstddef>
#include <string_view>

namespace switchyard::splice {

enum class ClientHelloResult {
  kNeedMore,  // a ClientHello may be coming: read more bytes and call again
  kFound,     // `name` is the host_name the client asked for (points into `data`)
  kNoName,    // a complete ClientHello without a server_name extension
  kNotTls,    // not a TLS handshake starting with a ClientHello (or a malformed one)
};

// `data` is everything the client sent so far. The ClientHello may span several TLS records;
// only the handshake message's bytes are needed, not the records after it.
ClientHelloResult parse_client_hello_sni(const char* data, std::size_t len,
                                         std::string_view& name);

}  // namespace switchyard::splice
