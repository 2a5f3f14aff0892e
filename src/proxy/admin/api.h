// The admin API's endpoints (documented in docs/admin-api.md), independent of the HTTP server that
// carries them (admin_server.cc, Boost.Beast): request in, response out, so the rules stay out of
// the one slow-to-compile translation unit and can be tested through the real server.
//
// Control-plane thread only: it reads and changes the ControlPlane directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/counter.h"
#include "proxy/admin/auth.h"

namespace switchyard::proxy {
class ControlPlane;
}

namespace switchyard::proxy::admin {

struct HttpRequest {
  std::string method;         // "GET"
  std::string target;         // "/api/v1/pools?x=1"
  std::string authorization;  // the Authorization header, empty when absent
  std::string body;
  std::string client;  // peer address (no port), for the failed-attempt limit
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra header fields
};

class Api {
 public:
  Api(ControlPlane& control, TokenStore& tokens);

  // Everything on the admin port except the event stream: the dashboard's files (no
  // authentication), /metrics and /api/v1/... (bearer token).
  HttpResponse handle(const HttpRequest& r);

  // The event stream (GET /api/v1/events): an error response to send instead, or nothing when
  // the request may have the stream.
  bool is_event_stream(const HttpRequest& r) const;
  std::optional<HttpResponse> authorize_stream(const HttpRequest& r);
  // One message of the stream: the live state as JSON (see docs/admin-api.md).
  std::string stream_message();

  // The metrics-only port (admin.metrics_bind): /metrics without authentication, nothing else.
  HttpResponse handle_metrics_only(const HttpRequest& r);

  // Every second: health transitions, the request-rate series, the latency window.
  void tick();

  static constexpr std::size_t kSeriesLength = 600;  // seconds of rate history kept
  static constexpr std::size_t kLatencyWindow = 60;  // seconds the latency percentiles cover

 private:
  struct Sample {
    std::int64_t unix_ms = 0;
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> pools;  // requests, errors
  };

  // Authentication: the token, or an error response (401, 403, 429).
  std::optional<HttpResponse> authenticate(const HttpRequest& r, bool write, const Token*& who);
  HttpResponse route(const HttpRequest& r, const std::vector<std::string>& path,
                     const std::string& query, const Token& who);

  std::string who(const Token& t) const;

  ControlPlane& control_;
  TokenStore& tokens_;
  FailureLimiter limiter_;
  std::deque<Sample> series_;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> last_totals_;
  std::map<std::string, std::deque<core::HistogramTotals>> latency_;  // "pool/address"
};

}  // namespace switchyard::proxy::admin
