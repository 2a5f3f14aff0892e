// Writes the heads the proxy sends: the request it forwards upstream and the response it returns
// to the client, with hop-by-hop headers removed and forwarding headers added (RFC 9110 §7.6).
//
// Output is appended to a caller-owned std::string whose capacity is reused, so steady-state
// forwarding does not allocate. Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"
#include "http/message_parser.h"

namespace switchyard::http {

struct RequestForwarding {
  std::string_view client_ip;       // for X-Forwarded-For
  std::string_view proto = "http";  // for X-Forwarded-Proto
  std::string_view default_host;    // Host to add when an HTTP/1.0 client sent none
  bool x_forwarded_for = true;
  bool x_forwarded_proto = true;
  bool via = true;
  std::string_view target;                     // request-target to send; empty = the client's
  const config::HeaderEdits* edits = nullptr;  // route's request header edits, if any
  std::string_view extra_fields;  // complete "Name: value\r\n" lines to add
  // TLS listeners: drop X-Client-Verify / X-Client-Cert-Subject sent by the client, so that only
  // the proxy's own (in extra_fields) reach the server.
  bool drop_client_cert_fields = false;
  // An upgrade the proxy forwards (the client's Upgrade value, e.g. "websocket"): sent as
  // "Connection: Upgrade" + "Upgrade: <value>" instead of being stripped as hop-by-hop.
  std::string_view upgrade;
};

// The request head to send upstream: always HTTP/1.1, keep-alive, body framing untouched.
void write_upstream_request(const char* base, const Head& request, const RequestForwarding& fwd,
                            std::string& out);

struct ResponseForwarding {
  bool client_http10 = false;  // client spoke HTTP/1.0
  bool keep_alive = true;      // connection stays open after this response
  bool dechunk = false;        // body is sent de-chunked and close-delimited (HTTP/1.0 client)
  bool via = true;
  const config::HeaderEdits* edits = nullptr;  // route's response header edits, if any
  std::string_view extra_fields;  // complete "Name: value\r\n" lines to add (e.g. Set-Cookie)
  // A 101 Switching Protocols being passed on: "Connection: Upgrade" + "Upgrade: <value>"
  // (instead of any keep-alive/close field).
  std::string_view upgrade;
};

// The response head to send to the client.
void write_client_response(const char* base, const Head& response, const ResponseForwarding& fwd,
                           std::string& out);

// True for headers that describe one connection, never forwarded (plus those named by Connection).
bool is_hop_by_hop(std::string_view name);

// Header edits, in this order: fields named in `remove` or `set` are dropped from the message,
// then every `set` and `add` field is appended.
bool edits_drop(const config::HeaderEdits* edits, std::string_view name);
void append_edits(const config::HeaderEdits* edits, std::string& out);

}  // namespace switchyard::http
