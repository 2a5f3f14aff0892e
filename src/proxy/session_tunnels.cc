// Tunnels fixed by a request: CONNECT (routes with `connect`) and per-connection routes. Kept
// apart from session.cc, which calls in at three places: on_request_head (CONNECT, and whether
// the route is per-connection), start_upstream (a tunnel takes a fresh server connection) and
// on_upstream_connected (start the tunnel).
//
// In both cases the tunnel's peer is a server of the route's pool, chosen as for any request:
// the proxy is a load balancer, not a forward proxy, so a CONNECT's authority never picks where
// the bytes go (it can only be matched, and its port must be allowed).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "http/message_parser.h"
#include "proxy/session.h"
#include "splice/client_hello.h"

namespace switchyard::proxy {
namespace {

// The port of a CONNECT request-target (authority-form, RFC 9112 §3.2.3: host ":" port, the port
// required); 0 if the target is not that.
unsigned authority_port(std::string_view target) {
  std::size_t colon = target.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == target.size()) return 0;
  std::string_view host = target.substr(0, colon);
  std::string_view port = target.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return 0;  // an IPv6 literal is bracketed
  } else if (host.find_first_of(":/?#@[] ") != std::string_view::npos) {
    return 0;
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return 0;
  }
  return value;
}

// The pool of the first exact `sni:` name, else of the longest "*.suffix" the name ends in
// (with at least one label before it); empty if none.
std::string_view sni_pool(const std::vector<config::Listener::SniRoute>& routes,
                          std::string_view name) {
  std::string_view best;
  std::size_t best_len = 0;
  for (const auto& r : routes) {
    std::string_view pattern = r.name;
    if (!pattern.starts_with("*.")) {
      if (http::iequals(pattern, name)) return r.pool;
      continue;
    }
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (name.size() > suffix.size() && suffix.size() > best_len &&
        http::iequals(name.substr(name.size() - suffix.size()), suffix)) {
      best = r.pool;
      best_len = suffix.size();
    }
  }
  return best;
}

constexpr std::string_view kConnectEstablished = "HTTP/1.1 200 Connection Established\r\n\r\n";

}  // namespace

// A CONNECT request, routed like any other. Answers: 501 when its route does not take CONNECT
// (or there is none, or the listener is TLS: the tunnel needs the raw client socket), 400 for a
// target that is not host:port or a CONNECT with a body, 403 for a port the route does not allow.
void Session::on_connect_request() {
  const http::Head& h = req_.head();
  const config::Route* route = decision_.route;
  if (!route || route->connect_ports.empty() || tls_) {
    spdlog::debug("client {}: CONNECT without a connect route", client_);
    return fail(501);
  }
  if (!h.no_body) return fail(400);
  unsigned port = authority_port(h.target.in(in_.get()));
  if (port == 0) {
    spdlog::debug("client {}: CONNECT target is not host:port", client_);
    return fail(400);
  }
  const auto& ports = route->connect_ports;
  if (std::find(ports.begin(), ports.end(), port) == ports.end()) {
    spdlog::info("client {}: CONNECT to port {} refused (not in the route's connect ports)",
                 client_, port);
    return fail(403);
  }
  replayable_ = false;
  stale_retry_ = false;
  fallback_used_ = false;
  fixed_ = FixedTunnel::kConnect;
  use_pool(decision_.pool);
  start_upstream(/*allow_idle=*/false);
}

// Per-connection routes tunnel raw sockets: not from a TLS listener (the route then applies to
// each request as usual).
bool Session::per_connection_route() const {
  return decision_.route && decision_.route->per_connection && !tls_;
}

// The server is connected: CONNECT gets its 200 and the client's bytes after the CONNECT head go
// to the server; a per-connection route's request goes to the server as it would have (head
// rewritten, then everything the client sent after it, body and later requests alike). Then
// both ways are a tunnel until both sides end. Nothing of the response is parsed: the access
// log line comes when the tunnel ends, status 200 for CONNECT and 0 (unknown) for a
// per-connection route.
void Session::start_fixed_tunnel() {
  std::string to_upstream;
  std::string to_client;
  const char* in = in_.get();
  if (fixed_ == FixedTunnel::kConnect) {
    status_ = 200;
    to_client.assign(kConnectEstablished);
    to_upstream.assign(in + next_start_, in_len_ - next_start_);
    bytes_in_ = head_end_;  // the rest is counted by the tunnel as it sends it
  } else {
    status_ = 0;
    build_upstream_head();
    to_upstream.reserve(up_head_.size() + in_len_ - head_end_);
    to_upstream.append(up_head_);
    to_upstream.append(in + head_end_, in_len_ - head_end_);
    bytes_in_ = 0;  // the tunnel counts what it sends, head included
  }
  req_state_ = ReqState::kDone;
  response_started_ = true;
  start_tunnel(std::move(to_upstream), std::move(to_client));
}

// ---- `mode: tcp` listeners with `sni:`

void Session::start_sni_peek() {
  sni_peeking_ = true;
  ensure_buffers();
  // The ClientHello must come within the header timeout (a client that says nothing is closed).
  w_.client_header_timeouts.arm(client_timer_, w_.now());
  read_client();
}

// Client bytes while peeking: kept in in_ (they go to the server first, untouched) until the
// ClientHello is complete. No name, no TLS, or a ClientHello larger than the head buffer: the
// listener's `pool`.
void Session::on_sni_data(const char* data, std::size_t n, int bid) {
  // Each receive is at most one ring buffer; peeking stops while that much room is left.
  const std::size_t limit = head_cap_ - w_.buffers().buffer_size();
  if (!sni_peeking_ || n > head_cap_ - in_len_) {
    recycle(bid);
    return close();  // cannot happen: nothing is read once the pool is chosen
  }
  std::memcpy(in_.get() + in_len_, data, n);
  in_len_ += n;
  recycle(bid);
  std::string_view name;
  auto r = splice::parse_client_hello_sni(in_.get(), in_len_, name);
  if (r == splice::ClientHelloResult::kNeedMore && in_len_ < limit) return read_client();
  std::string_view pool;
  if (r == splice::ClientHelloResult::kFound) pool = sni_pool(listener_.sni, name);
  spdlog::debug("client {}: sni '{}' -> pool {}", client_, name,
                pool.empty() ? std::string_view(listener_.pool) : pool);
  if (pool.empty()) pool = listener_.pool;
  sni_peeking_ = false;
  client_timer_.disarm();
  start_tcp(pool);
}

// What was read while peeking, for the tunnel to send first (counted by the tunnel then).
std::string Session::take_peeked() {
  if (in_len_ == 0) return {};
  std::string out(in_.get(), in_len_);
  in_len_ = 0;
  bytes_in_ = 0;
  return out;
}

}  // namespace switchyard::proxy
