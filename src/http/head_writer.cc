#include "http/head_writer.h"

#include <array>

namespace switchyard::http {
namespace {

// Transfer-Encoding is hop-by-hop too, but bodies are forwarded with their framing intact, so it
// travels with them; write_client_response drops it when it re-frames.
constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "proxy-connection",  "te",
    "trailer",    "upgrade",    "proxy-authenticate"};

std::string_view connection_value(const char* base, const Head& head) {
  for (const HeaderSpan& h : head.headers) {
    if (iequals(h.name.in(base), "connection")) return h.value.in(base);
  }
  return {};
}

// A sender may name further hop-by-hop fields in Connection (RFC 9110 §7.6.1); several Connection
// fields form one list, so every one of them is consulted. Fields that frame the message or
// identify its target are never dropped this way: the body is forwarded with the framing we
// parsed, so the next hop must see the same framing ("Connection: content-length" would
// otherwise smuggle the body upstream as a second request).
bool named_by_connection(const char* base, const Head& head, std::string_view name) {
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
      iequals(name, "host")) {
    return false;
  }
  for (const HeaderSpan& h : head.headers) {
    if (iequals(h.name.in(base), "connection") && list_contains_token(h.value.in(base), name))
      return true;
  }
  return false;
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

}  // namespace

bool edits_drop(const config::HeaderEdits* edits, std::string_view name) {
  if (!edits) return false;
  for (const std::string& r : edits->remove) {
    if (iequals(r, name)) return true;
  }
  for (const config::Header& h : edits->set) {
    if (iequals(h.name, name)) return true;
  }
  return false;
}

void append_edits(const config::HeaderEdits* edits, std::string& out) {
  if (!edits) return;
  for (const config::Header& h : edits->set) append_header(out, h.name, h.value);
  for (const config::Header& h : edits->add) append_header(out, h.name, h.value);
}

bool is_hop_by_hop(std::string_view name) {
  for (std::string_view h : kHopByHop) {
    if (iequals(name, h)) return true;
  }
  return false;
}

void write_upstream_request(const char* base, const Head& request, const RequestForwarding& fwd,
                            std::string& out) {
  out.append(request.method.in(base)).append(" ");
  out.append(fwd.target.empty() ? request.target.in(base) : fwd.target);
  out.append(" HTTP/1.1\r\n");
  bool has_connection_list = !connection_value(base, request).empty();
  bool has_host = false;
  bool xff_done = false;
  for (const HeaderSpan& h : request.headers) {
    std::string_view name = h.name.in(base);
    std::string_view value = h.value.in(base);
    if (is_hop_by_hop(name)) continue;
    if (has_connection_list && named_by_connection(base, request, name)) continue;
    if (edits_drop(fwd.edits, name)) continue;
    if (iequals(name, "host")) has_host = true;
    if (fwd.x_forwarded_for && !xff_done && iequals(name, "x-forwarded-for")) {
      out.append(name).append(": ").append(value).append(", ").append(fwd.client_ip).append("\r\n");
      xff_done = true;
      continue;
    }
    if (fwd.x_forwarded_proto && iequals(name, "x-forwarded-proto")) continue;  // ours is the truth
    if (fwd.drop_client_cert_fields &&
        (iequals(name, "x-client-verify") || iequals(name, "x-client-cert-subject"))) {
      continue;
    }
    append_header(out, name, value);
  }
  if (!has_host && !fwd.default_host.empty()) append_header(out, "Host", fwd.default_host);
  if (fwd.x_forwarded_for && !xff_done) append_header(out, "X-Forwarded-For", fwd.client_ip);
  if (fwd.x_forwarded_proto) append_header(out, "X-Forwarded-Proto", fwd.proto);
  append_edits(fwd.edits, out);
  out.append(fwd.extra_fields);
  if (fwd.via) {
    out.append("Via: ")
        .append(request.version_minor == 0 ? "1.0" : "1.1")
        .append(" switchyard\r\n");
  }
  out.append("\r\n");
}

void write_client_response(const char* base, const Head& response, const ResponseForwarding& fwd,
                           std::string& out) {
  out.append(fwd.client_http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  char code[4] = {char('0' + response.status / 100 % 10), char('0' + response.status / 10 % 10),
                  char('0' + response.status % 10), 0};
  out.append(code, 3).append(" ").append(response.reason.in(base)).append("\r\n");
  bool has_connection_list = !connection_value(base, response).empty();
  for (const HeaderSpan& h : response.headers) {
    std::string_view name = h.name.in(base);
    if (is_hop_by_hop(name)) continue;
    if (has_connection_list && named_by_connection(base, response, name)) continue;
    // RFC 9112 §6.1: never Transfer-Encoding to an HTTP/1.0 client (it cannot know it; we
    // de-chunk its bodies), including on the bodiless answers to HEAD, 204 and 304.
    if ((fwd.dechunk || fwd.client_http10) && iequals(name, "transfer-encoding")) continue;
    if (edits_drop(fwd.edits, name)) continue;
    append_header(out, name, h.value.in(base));
  }
  append_edits(fwd.edits, out);
  out.append(fwd.extra_fields);
  if (fwd.via) out.append("Via: 1.1 switchyard\r\n");
  if (!fwd.keep_alive) {
    out.append("Connection: close\r\n");
  } else if (fwd.client_http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

}  // namespace switchyard::http
