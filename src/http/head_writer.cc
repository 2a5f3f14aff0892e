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

// An absolute-form request-target ("http://host:port/path?query", scheme http or https, as
// MessageParser admits them) split into its authority and origin-form ("/path?query", "/" when
// the path is empty). False for every other form.
bool split_absolute_form(std::string_view target, std::string_view& authority,
                         std::string_view& origin_form) {
  std::size_t skip = 0;
  if (target.size() > 7 && iequals(target.substr(0, 7), "http://")) {
    skip = 7;
  } else if (target.size() > 8 && iequals(target.substr(0, 8), "https://")) {
    skip = 8;
  } else {
    return false;
  }
  std::string_view rest = target.substr(skip);
  std::size_t end = rest.find_first_of("/?");
  authority = rest.substr(0, end);
  origin_form = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  return true;
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
  // RFC 9112 §3.2.2: a proxy receiving an absolute-form target must ignore Host and send the
  // target's authority as Host. We send origin-form, which every server understands: a server
  // that read the Host we were sent while we routed by the target's authority (or the reverse)
  // would serve another site than the one the routes chose.
  std::string_view authority;
  std::string_view origin_form;
  bool absolute = split_absolute_form(request.target.in(base), authority, origin_form);
  out.append(request.method.in(base)).append(" ");
  if (!fwd.target.empty()) {
    out.append(fwd.target);  // a rewrite: always origin-form
  } else if (absolute) {
    if (origin_form.empty() || origin_form.front() == '?') out.push_back('/');
    out.append(origin_form);
  } else {
    out.append(request.target.in(base));
  }
  out.append(" HTTP/1.1\r\n");
  bool has_connection_list = !connection_value(base, request).empty();
  // Exactly one Host goes upstream: the route's (set or add), else the client's (the target's
  // authority for absolute-form), else the default.
  bool edits_host = false;
  if (fwd.edits) {
    for (const auto* list : {&fwd.edits->set, &fwd.edits->add}) {
      for (const config::Header& e : *list) edits_host = edits_host || iequals(e.name, "host");
    }
  }
  bool has_host = false;
  bool xff_done = false;
  for (const HeaderSpan& h : request.headers) {
    std::string_view name = h.name.in(base);
    std::string_view value = h.value.in(base);
    if (is_hop_by_hop(name)) continue;
    if (has_connection_list && named_by_connection(base, request, name)) continue;
    if (edits_drop(fwd.edits, name)) continue;
    if (iequals(name, "host")) {
      if (has_host || edits_host) continue;  // (a request with two Hosts never gets here)
      has_host = true;
      if (absolute) value = authority;
    }
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
  if (!has_host && !edits_host) {
    if (absolute) {
      append_header(out, "Host", authority);
    } else if (!fwd.default_host.empty()) {
      append_header(out, "Host", fwd.default_host);
    }
  }
  if (fwd.x_forwarded_for && !xff_done) append_header(out, "X-Forwarded-For", fwd.client_ip);
  if (fwd.x_forwarded_proto) append_header(out, "X-Forwarded-Proto", fwd.proto);
  append_edits(fwd.edits, out);
  out.append(fwd.extra_fields);
  if (!fwd.upgrade.empty()) {
    out.append("Connection: Upgrade\r\n");
    append_header(out, "Upgrade", fwd.upgrade);
  }
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
  if (!fwd.upgrade.empty()) {
    out.append("Connection: Upgrade\r\n");
    append_header(out, "Upgrade", fwd.upgrade);
  } else if (!fwd.keep_alive) {
    out.append("Connection: close\r\n");
  } else if (fwd.client_http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

}  // namespace switchyard::http
