#include "proxy/admin/api.h"

#include <fmt/format.h>
#include <liburing.h>

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string_view>

#include "config/config_loader.h"
#include "proxy/admin/metrics.h"
#include "proxy/admin/server_state.h"
#include "proxy/admin/web_assets.h"
#include "proxy/control_plane.h"
#include "proxy/worker.h"

namespace switchyard::proxy::admin {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kClassNames[kStatusClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

HttpResponse json_response(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  r.body += '\n';
  return r;
}

HttpResponse error_response(int status, std::string_view message) {
  return json_response(status, Json{{"error", message}});
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    std::size_t slash = path.find('/');
    out.push_back(percent_decode(path.substr(0, slash)));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  return out;
}

std::string query_param(const std::string& query, std::string_view name) {
  std::string_view q = query;
  while (!q.empty()) {
    std::size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    std::size_t eq = part.find('=');
    if (part.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1));
    }
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
  }
  return {};
}

std::string iso_time(std::int64_t unix_ms) {
  if (unix_ms <= 0) return {};
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
}

template <typename T, typename F>
Json by_class(const T* stats, F get) {
  Json j = Json::object();
  for (std::size_t c = 0; c < kStatusClasses; ++c) {
    j[kClassNames[c]] = stats ? stats->sum([&](const auto& x) { return get(x, c); }) : 0;
  }
  return j;
}

std::uint64_t class_total(const Json& classes) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : classes.items()) n += v.get<std::uint64_t>();
  return n;
}

Json percentiles(const core::HistogramTotals& h) {
  if (h.count() == 0) return nullptr;
  auto ms = [&](double q) { return std::round(h.quantile_us(q) / 10.0) / 100.0; };
  return Json{{"p50", ms(0.5)}, {"p90", ms(0.9)}, {"p99", ms(0.99)}, {"count", h.count()}};
}

std::string action_text(const config::Route& r) {
  if (r.pool) return "pool " + *r.pool;
  if (r.split) {
    std::string s = "split";
    for (const config::WeightedPool& p : r.split->pools) {
      s += fmt::format(" {}({})", p.pool, p.weight);
    }
    return s;
  }
  if (r.redirect) return fmt::format("redirect {}", r.redirect->status);
  if (r.respond) return fmt::format("respond {}", r.respond->status);
  if (r.go_to) return "goto " + *r.go_to;
  return "?";
}

bool is_write(const std::string& method) {
  return method != "GET" && method != "HEAD";
}

// A JSON object body with only known keys of the expected types.
std::optional<Json> parse_body(const std::string& body, std::string& error) {
  if (body.empty()) return Json::object();
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "the request body must be a JSON object";
    return std::nullopt;
  }
  return j;
}

bool read_patch(const Json& j, ServerPatch& p, std::string& error) {
  for (const auto& [key, value] : j.items()) {
    if (key == "weight") {
      if (!value.is_number_unsigned()) {
        error = "weight must be an integer 0..256";
        return false;
      }
      p.weight = value.get<std::uint32_t>();
    } else if (key == "drain" || key == "maintenance") {
      if (!value.is_boolean()) {
        error = key + " must be true or false";
        return false;
      }
      (key == "drain" ? p.drain : p.maintenance) = value.get<bool>();
    } else {
      error = "unknown key '" + key + "'; expected weight, drain or maintenance";
      return false;
    }
  }
  return true;
}

}  // namespace

Api::Api(ControlPlane& control, TokenStore& tokens) : control_(control), tokens_(tokens) {}

std::string Api::who(const Token& t) const {
  return fmt::format("admin token '{}'", t.name);
}

std::optional<HttpResponse> Api::authenticate(const HttpRequest& r, bool write, const Token*& who) {
  auto now = FailureLimiter::Clock::now();
  unsigned retry_after = 0;
  if (!limiter_.allowed(r.client, now, retry_after)) {
    HttpResponse resp = error_response(429, "too many failed attempts; try again later");
    resp.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return resp;
  }
  std::string_view auth = r.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  bool bearer = auth.size() > kBearer.size();
  for (std::size_t i = 0; bearer && i < kBearer.size() - 1; ++i) {
    bearer = std::tolower(static_cast<unsigned char>(auth[i])) ==
             std::tolower(static_cast<unsigned char>(kBearer[i]));
  }
  bearer = bearer && auth[kBearer.size() - 1] == ' ';
  if (!bearer) {
    HttpResponse resp = error_response(401, "authentication required: Authorization: Bearer TOKEN");
    resp.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"switchyard\"");
    return resp;
  }
  std::string_view presented = auth.substr(kBearer.size());
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  who = tokens_.verify(presented);
  if (!who) {
    limiter_.failed(r.client, now);
    HttpResponse resp = error_response(401, "invalid token");
    resp.headers.emplace_back("WWW-Authenticate",
                              "Bearer realm=\"switchyard\", error=\"invalid_token\"");
    return resp;
  }
  if (write && who->read_only) {
    return error_response(403, fmt::format("token '{}' is read-only", who->name));
  }
  return std::nullopt;
}

bool Api::is_event_stream(const HttpRequest& r) const {
  std::string_view t = r.target;
  return t.substr(0, t.find('?')) == "/api/v1/events";
}

std::optional<HttpResponse> Api::authorize_stream(const HttpRequest& r) {
  if (r.method != "GET") return error_response(405, "use GET");
  const Token* who = nullptr;
  return authenticate(r, false, who);
}

HttpResponse Api::handle_metrics_only(const HttpRequest& r) {
  std::string_view t = r.target;
  if (t.substr(0, t.find('?')) != "/metrics") return error_response(404, "only /metrics here");
  if (r.method != "GET" && r.method != "HEAD") return error_response(405, "use GET");
  HttpResponse resp;
  resp.content_type = kMetricsContentType;
  resp.body = render_metrics(control_);
  return resp;
}

HttpResponse Api::handle(const HttpRequest& r) {
  std::string_view target = r.target;
  std::size_t qm = target.find('?');
  std::string path(target.substr(0, qm));
  std::string query(qm == std::string_view::npos ? std::string_view() : target.substr(qm + 1));

  bool api = path == "/api" || path.starts_with("/api/");
  if (!api && path != "/metrics") {
    // The dashboard: static files, no authentication (they hold no data).
    if (r.method != "GET" && r.method != "HEAD") return error_response(405, "use GET");
    if (const WebAsset* a = find_web_asset(path == "/" ? "/index.html" : path)) {
      HttpResponse resp;
      resp.content_type = std::string(a->content_type);
      resp.body = std::string(a->body);
      resp.headers.emplace_back("Cache-Control", "no-cache");
      return resp;
    }
    return error_response(404, "not found");
  }
  const Token* who = nullptr;
  if (auto denied = authenticate(r, is_write(r.method), who)) return *denied;
  if (path == "/metrics") {
    if (r.method != "GET" && r.method != "HEAD") return error_response(405, "use GET");
    HttpResponse resp;
    resp.content_type = kMetricsContentType;
    resp.body = render_metrics(control_);
    return resp;
  }
  std::vector<std::string> parts = split_path(path);
  if (parts.size() < 2 || parts[1] != "v1") {
    return error_response(404, "unknown API version; this server speaks /api/v1/");
  }
  try {
    return route(r, {parts.begin() + 2, parts.end()}, query, *who);
  } catch (const std::exception& e) {
    return error_response(500, fmt::format("internal error: {}", e.what()));
  }
}

namespace {

struct Ctx {
  const ControlPlane& control;
  const Snapshot& snap;
  const StatsRegistry& reg;
  const std::map<std::string, std::deque<core::HistogramTotals>>& latency;
};

Json server_json(const Ctx& c, const std::string& pool, const config::Server& sv,
                 const upstream::PoolState* st, std::size_t i) {
  const ServerStats* s = c.reg.server(pool, sv.address.text);
  upstream::Health h = upstream::Health::kUnchecked;
  Json last_check = nullptr;
  std::uint64_t active = 0;
  if (st && i < st->size()) {
    const upstream::ServerHealth& sh = st->health(i);
    h = sh.state.load(std::memory_order_acquire);
    active = st->total_load(i);
    std::int64_t when = sh.last_check_ms.load(std::memory_order_relaxed);
    if (when > 0) {
      bool ok = sh.last_passed.load(std::memory_order_relaxed);
      last_check = Json{{"time", iso_time(when)}, {"unix_ms", when}, {"ok", ok}};
      if (!ok) last_check["reason"] = sh.last_reason;
    }
  }
  Json responses =
      by_class(s, [](const ServerCounters& x, std::size_t k) { return x.responses[k].load(); });
  std::uint64_t connect =
      s ? s->sum([](const ServerCounters& x) { return x.connect_failures.load(); }) : 0;
  std::uint64_t reset = s ? s->sum([](const ServerCounters& x) { return x.resets.load(); }) : 0;
  core::HistogramTotals response_all, connect_all;
  if (s) {
    for (unsigned w = 0; w < s->size(); ++w) {
      response_all.add(s->at(w).response);
      connect_all.add(s->at(w).connect);
    }
  }
  // Latency over the last minute when the window has samples, else since start.
  core::HistogramTotals window = response_all;
  if (auto it = c.latency.find(pool + "/" + sv.address.text);
      it != c.latency.end() && it->second.size() >= 2) {
    const core::HistogramTotals& old = it->second.front();
    for (std::size_t b = 0; b < window.buckets.size(); ++b) {
      window.buckets[b] =
          response_all.buckets[b] - std::min(response_all.buckets[b], old.buckets[b]);
    }
    window.sum_us = response_all.sum_us - std::min(response_all.sum_us, old.sum_us);
  }
  Json j;
  j["address"] = sv.address.text;
  j["state"] = server_state(sv, h);
  j["health"] = upstream::health_name(h);
  j["weight"] = sv.weight;
  j["drain"] = sv.drain;
  j["maintenance"] = sv.maintenance;
  j["backup"] = sv.backup;
  j["max_connections"] = sv.max_connections;
  j["active"] = active;
  j["requests"] = class_total(responses);
  j["responses"] = std::move(responses);
  j["errors"] = Json{
      {"connect", connect}, {"reset", reset}, {"5xx", j["responses"]["5xx"].get<std::uint64_t>()}};
  j["errors_total"] = connect + reset + j["responses"]["5xx"].get<std::uint64_t>();
  j["latency_ms"] = percentiles(window);
  j["connect_ms"] = percentiles(connect_all);
  j["last_check"] = std::move(last_check);
  // What the admin API changed (null: as in the configuration file).
  Json change = nullptr;
  auto po = c.control.overrides().pools().find(pool);
  if (po != c.control.overrides().pools().end()) {
    if (auto p = po->second.patches.find(sv.address.text); p != po->second.patches.end()) {
      change = Json::object();
      if (p->second.weight) change["weight"] = *p->second.weight;
      if (p->second.drain) change["drain"] = *p->second.drain;
      if (p->second.maintenance) change["maintenance"] = *p->second.maintenance;
    }
    for (const config::Server& a : po->second.added) {
      if (a.address.text == sv.address.text) change = Json{{"added", true}};
    }
  }
  j["runtime_change"] = std::move(change);
  return j;
}

Json pool_json(const Ctx& c, const std::string& name, const config::Pool& pool,
               const upstream::PoolState* st) {
  const PoolStats* s = c.reg.pool(name);
  Json j;
  j["name"] = name;
  j["scheduler"] = pool.scheduler;
  j["health_check"] = pool.health ? (pool.health->kind == config::HealthCheck::Kind::kHttp
                                         ? Json("http " + pool.health->path)
                                         : Json("tcp"))
                                  : Json(nullptr);
  Json requests =
      by_class(s, [](const PoolCounters& x, std::size_t k) { return x.requests[k].load(); });
  j["requests"] = class_total(requests);
  j["responses"] = std::move(requests);
  j["retries"] = s ? s->sum([](const PoolCounters& x) { return x.retries.load(); }) : 0;
  Json servers = Json::array();
  std::uint64_t active = 0;
  std::size_t up = 0;
  for (std::size_t i = 0; i < pool.servers.size(); ++i) {
    Json sj = server_json(c, name, pool.servers[i], st, i);
    active += sj["active"].get<std::uint64_t>();
    if (sj["state"] == "up" && pool.servers[i].weight > 0) ++up;
    servers.push_back(std::move(sj));
  }
  j["active"] = active;
  j["servers_available"] = up;
  j["servers"] = std::move(servers);
  return j;
}

Json pools_json(const Ctx& c) {
  Json pools = Json::array();
  std::size_t pi = 0;
  for (const auto& [name, pool] : c.snap.config->pools) {
    const upstream::PoolState* st =
        pi < c.snap.pool_states.size() ? c.snap.pool_states[pi].get() : nullptr;
    pools.push_back(pool_json(c, name, pool, st));
    ++pi;
  }
  return pools;
}

Json listeners_json(const Ctx& c) {
  Json out = Json::array();
  for (const config::Listener& l : c.snap.config->listeners) {
    const ListenerStats* s = c.reg.listener(l.name);
    Json requests =
        by_class(s, [](const ListenerCounters& x, std::size_t k) { return x.requests[k].load(); });
    std::int64_t active = 0;
    if (s) {
      for (unsigned w = 0; w < s->size(); ++w) active += s->at(w).active.load();
    }
    Json j;
    j["name"] = l.name;
    j["bind"] = l.bind.text;
    j["routes"] = l.routes;
    j["tls"] = l.tls.has_value();
    j["active_connections"] = active;
    j["connections"] = s ? s->sum([](const ListenerCounters& x) { return x.accepted.load(); }) : 0;
    j["requests"] = class_total(requests);
    j["responses"] = std::move(requests);
    j["bytes_in"] = s ? s->sum([](const ListenerCounters& x) { return x.bytes_in.load(); }) : 0;
    j["bytes_out"] = s ? s->sum([](const ListenerCounters& x) { return x.bytes_out.load(); }) : 0;
    out.push_back(std::move(j));
  }
  return out;
}

Json routes_json(const Ctx& c) {
  Json out = Json::array();
  for (const auto& [table, rt] : c.snap.config->routes) {
    for (std::size_t i = 0; i < rt.routes.size(); ++i) {
      const RouteStats* s = c.reg.route(table, i);
      Json j;
      j["table"] = table;
      j["position"] = i;
      j["line"] = rt.routes[i].mark.line;
      j["action"] = action_text(rt.routes[i]);
      j["hits"] = s ? s->sum([](const RouteCounters& x) { return x.hits.load(); }) : 0;
      out.push_back(std::move(j));
    }
  }
  return out;
}

Json workers_json(const Ctx& c) {
  Json out = Json::array();
  for (Worker* w : c.control.workers()) {
    WorkerCounters& k = w->counters();
    // Set up by the worker before it reported start-up; never changed afterwards.
    const io_uring* ring = w->ring().raw();
    Json flags = Json::array();
    if (ring->flags & IORING_SETUP_SINGLE_ISSUER) flags.push_back("SINGLE_ISSUER");
    if (ring->flags & IORING_SETUP_DEFER_TASKRUN) flags.push_back("DEFER_TASKRUN");
    if (ring->flags & IORING_SETUP_COOP_TASKRUN) flags.push_back("COOP_TASKRUN");
    if (ring->flags & IORING_SETUP_SUBMIT_ALL) flags.push_back("SUBMIT_ALL");
    Json j;
    j["id"] = w->id();
    j["connections"] = k.connections.load();
    j["upstream_connections"] = k.upstreams.load();
    j["accepted"] = k.accepted.load();
    j["rejected_over_limit"] = k.rejected_over_limit.load();
    j["requests"] = k.requests.load();
    j["upstream_connects"] = k.upstream_connects.load();
    j["upstream_reuses"] = k.upstream_reuses.load();
    j["retries"] = k.retries.load();
    j["queued"] = k.queued.load();
    j["queue_timeouts"] = k.queue_timeouts.load();
    j["tls_handshakes"] = k.tls_handshakes.load();
    j["access_log_dropped"] = w->access_log().dropped();
    j["ring"] = Json{{"sq_entries", ring->sq.ring_entries},
                     {"cq_entries", ring->cq.ring_entries},
                     {"flags", std::move(flags)},
                     {"free_buffers", k.free_buffers.load()}};
    out.push_back(std::move(j));
  }
  return out;
}

Json note_json(const OverrideNote& n) {
  return Json{{"pool", n.pool},       {"server", n.server}, {"setting", n.setting},
              {"runtime", n.runtime}, {"file", n.file},     {"outcome", n.outcome}};
}

Json overrides_json(const ControlPlane& control) {
  Json pools = Json::array();
  for (const auto& [pool, o] : control.overrides().pools()) {
    Json servers = Json::array();
    for (const auto& [address, p] : o.patches) {
      Json j{{"address", address}};
      if (p.weight) j["weight"] = *p.weight;
      if (p.drain) j["drain"] = *p.drain;
      if (p.maintenance) j["maintenance"] = *p.maintenance;
      servers.push_back(std::move(j));
    }
    Json added = Json::array();
    for (const config::Server& s : o.added) {
      added.push_back(Json{{"address", s.address.text},
                           {"weight", s.weight},
                           {"max_connections", s.max_connections},
                           {"backup", s.backup},
                           {"drain", s.drain},
                           {"maintenance", s.maintenance}});
    }
    pools.push_back(Json{{"pool", pool},
                         {"changed", std::move(servers)},
                         {"added", std::move(added)},
                         {"removed", o.removed}});
  }
  Json notes = Json::array();
  for (const OverrideNote& n : control.last_reload_notes()) notes.push_back(note_json(n));
  return Json{{"overrides", std::move(pools)}, {"last_reload", std::move(notes)}};
}

Json status_json(const ControlPlane& control) {
  const config::Config& cfg = control.config();
  std::int64_t now = unix_now_ms();
  return Json{
      {"version", "0.1.0"},
      {"config_file", control.config_path()},
      {"started", iso_time(control.started_unix_ms())},
      {"uptime_s", (now - control.started_unix_ms()) / 1000},
      {"config_loaded", iso_time(control.loaded_unix_ms())},
      {"reloads", Json{{"success", control.reloads_ok()}, {"failure", control.reloads_failed()}}},
      {"runtime_changes", control.changes()},
      {"overrides_active", !control.overrides().empty()},
      {"workers", control.workers().size()},
      {"listeners", cfg.listeners.size()},
      {"pools", cfg.pools.size()},
      {"l4", false}};
}

Json config_json(const ControlPlane& control) {
  const config::Config& cfg = control.config();
  Json listeners = Json::array();
  for (const config::Listener& l : cfg.listeners) {
    listeners.push_back(Json{
        {"name", l.name}, {"bind", l.bind.text}, {"routes", l.routes}, {"tls", l.tls.has_value()}});
  }
  Json tables = Json::object();
  for (const auto& [name, t] : cfg.routes) tables[name] = t.routes.size();
  Json pools = Json::object();
  for (const auto& [name, p] : cfg.pools) {
    pools[name] = Json{{"scheduler", p.scheduler},
                       {"servers", p.servers.size()},
                       {"health_check", p.health.has_value()},
                       {"retries", p.retries}};
  }
  Json admin = nullptr;
  if (cfg.admin) {
    admin = Json{{"bind", cfg.admin->bind.text},
                 {"tls", cfg.admin->tls.has_value()},
                 {"read_only_tokens", !cfg.admin->read_only_token_file.empty()},
                 {"metrics_bind",
                  cfg.admin->metrics_bind ? Json(cfg.admin->metrics_bind->text) : Json(nullptr)}};
  }
  return Json{{"version", "0.1.0"},
              {"file", control.config_path()},
              {"workers", cfg.workers},
              {"access_log",
               Json{{"enabled", cfg.access_log.enabled},
                    {"format",
                     cfg.access_log.format == config::AccessLog::Format::kJson ? "json" : "common"},
                    {"path", cfg.access_log.path}}},
              {"listeners", std::move(listeners)},
              {"route_tables", std::move(tables)},
              {"pools", std::move(pools)},
              {"admin", std::move(admin)},
              {"overrides_active", !control.overrides().empty()}};
}

Json events_json(const ControlPlane& control, std::uint64_t since) {
  Json out = Json::array();
  for (const Event& e : control.events()) {
    if (e.seq <= since) continue;
    out.push_back(Json{{"seq", e.seq},
                       {"time", iso_time(e.unix_ms)},
                       {"unix_ms", e.unix_ms},
                       {"kind", e.kind},
                       {"text", e.text}});
  }
  return out;
}

}  // namespace

HttpResponse Api::route(const HttpRequest& r, const std::vector<std::string>& p,
                        const std::string& query, const Token& token) {
  const Snapshot& snap = *control_.snapshot();
  Ctx c{control_, snap, *snap.stats->registry, latency_};
  const std::string& m = r.method;
  auto only = [&](std::initializer_list<const char*> methods) -> std::optional<HttpResponse> {
    for (const char* allowed : methods) {
      if (m == allowed || (m == "HEAD" && std::string_view(allowed) == "GET")) return std::nullopt;
    }
    HttpResponse resp = error_response(405, fmt::format("method {} not allowed here", m));
    std::string allow;
    for (const char* a : methods) allow += (allow.empty() ? "" : ", ") + std::string(a);
    resp.headers.emplace_back("Allow", allow);
    return resp;
  };
  std::size_t n = p.size();
  std::string key = n ? p[0] : "";

  if (n == 1 && key == "status") {
    if (auto e = only({"GET"})) return *e;
    Json j = status_json(control_);
    j["token"] = Json{{"name", token.name}, {"read_only", token.read_only}};
    return json_response(200, j);
  }
  if (n == 1 && key == "whoami") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, Json{{"name", token.name}, {"read_only", token.read_only}});
  }
  if (n == 1 && key == "config") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, config_json(control_));
  }
  if (n == 1 && key == "listeners") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, listeners_json(c));
  }
  if (n == 1 && key == "routes") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, routes_json(c));
  }
  if (n == 1 && key == "workers") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, workers_json(c));
  }
  if (n == 1 && key == "l4") {
    if (auto e = only({"GET"})) return *e;
    // No L4 services in this build; the shape the dashboard expects when there are.
    return json_response(200, Json{{"available", false}, {"services", Json::array()}});
  }
  if (n == 1 && key == "overrides") {
    if (auto e = only({"GET"})) return *e;
    return json_response(200, overrides_json(control_));
  }
  if (n == 1 && key == "history") {
    if (auto e = only({"GET"})) return *e;
    std::string since = query_param(query, "since");
    std::uint64_t from = 0;
    if (!since.empty()) {
      auto [ptr, ec] = std::from_chars(since.data(), since.data() + since.size(), from);
      if (ec != std::errc() || ptr != since.data() + since.size()) {
        return error_response(400, "since must be an event number");
      }
    }
    return json_response(200, events_json(control_, from));
  }
  if (n == 1 && key == "series") {
    if (auto e = only({"GET"})) return *e;
    Json samples = Json::array();
    for (const Sample& s : series_) {
      Json pools = Json::object();
      for (const auto& [name, v] : s.pools) pools[name] = Json::array({v.first, v.second});
      samples.push_back(Json{{"unix_ms", s.unix_ms}, {"pools", std::move(pools)}});
    }
    return json_response(200, Json{{"interval_s", 1}, {"samples", std::move(samples)}});
  }
  if (n == 1 && key == "reload") {
    if (auto e = only({"POST"})) return *e;
    ReloadResult rr = control_.reload(who(token));
    Json notes = Json::array();
    for (const OverrideNote& note : rr.overrides) notes.push_back(note_json(note));
    if (!rr.ok) {
      return json_response(422, Json{{"ok", false}, {"errors", rr.errors}});
    }
    return json_response(200, Json{{"ok", true}, {"overrides", std::move(notes)}});
  }
  if (key == "pools") {
    if (n == 1) {
      if (auto e = only({"GET"})) return *e;
      return json_response(200, pools_json(c));
    }
    const std::string& pool = p[1];
    auto it = snap.config->pools.find(pool);
    if (it == snap.config->pools.end()) return error_response(404, "no pool " + pool);
    std::size_t pi = static_cast<std::size_t>(std::distance(snap.config->pools.begin(), it));
    const upstream::PoolState* st =
        pi < snap.pool_states.size() ? snap.pool_states[pi].get() : nullptr;
    if (n == 2) {
      if (auto e = only({"GET"})) return *e;
      return json_response(200, pool_json(c, pool, it->second, st));
    }
    if (p[2] != "servers" || n > 5) return error_response(404, "not found");
    if (n == 3) {
      if (auto e = only({"GET", "POST"})) return *e;
      if (m != "POST") return json_response(200, pool_json(c, pool, it->second, st)["servers"]);
      std::string err;
      auto body = parse_body(r.body, err);
      if (!body) return error_response(400, err);
      config::Server server;
      for (const auto& [k, v] : body->items()) {
        if (k == "address") {
          if (!v.is_string()) return error_response(400, "address must be a string");
          if (std::string e = config::parse_socket_address(v.get<std::string>(), server.address);
              !e.empty()) {
            return error_response(400, "address: " + e);
          }
        } else if (k == "weight" || k == "max_connections") {
          if (!v.is_number_unsigned()) return error_response(400, k + " must be an integer");
          std::uint64_t x = v.get<std::uint64_t>();
          if (k == "weight" && x > kMaxWeight) return error_response(400, "weight must be 0..256");
          if (k == "max_connections" && x > 1000000) {
            return error_response(400, "max_connections must be 0..1000000");
          }
          (k == "weight" ? server.weight : server.max_connections) = static_cast<std::uint32_t>(x);
        } else if (k == "backup" || k == "drain" || k == "maintenance") {
          if (!v.is_boolean()) return error_response(400, k + " must be true or false");
          bool b = v.get<bool>();
          if (k == "backup") server.backup = b;
          if (k == "drain") server.drain = b;
          if (k == "maintenance") server.maintenance = b;
        } else {
          return error_response(400, "unknown key '" + k +
                                         "'; expected address, weight, max_connections, backup, "
                                         "drain or maintenance");
        }
      }
      if (server.address.text.empty()) return error_response(400, "address is required");
      if (server.address.text.ends_with(":0")) return error_response(400, "port 0 is not allowed");
      ChangeResult cr = control_.add_server(pool, server, who(token));
      if (!cr.error.empty()) return error_response(cr.status, cr.error);
      const Snapshot& now = *control_.snapshot();
      Ctx c2{control_, now, *now.stats->registry, latency_};
      const config::Pool& np = now.config->pools.at(pool);
      for (std::size_t i = 0; i < np.servers.size(); ++i) {
        if (np.servers[i].address.text == server.address.text) {
          return json_response(201, server_json(c2, pool, np.servers[i], nullptr, i));
        }
      }
      return json_response(201, Json::object());
    }
    const std::string& address = p[3];
    if (n == 5) {
      if (p[4] != "override") return error_response(404, "not found");
      if (auto e = only({"DELETE"})) return *e;
      ChangeResult cr = control_.reset_server(pool, address, who(token));
      if (!cr.error.empty()) return error_response(cr.status, cr.error);
      return json_response(200, Json{{"ok", true}});
    }
    if (auto e = only({"GET", "PATCH", "DELETE"})) return *e;
    if (m == "DELETE") {
      ChangeResult cr = control_.remove_server(pool, address, who(token));
      if (!cr.error.empty()) return error_response(cr.status, cr.error);
      return json_response(200, Json{{"ok", true}});
    }
    if (m == "PATCH") {
      std::string err;
      auto body = parse_body(r.body, err);
      if (!body) return error_response(400, err);
      ServerPatch patch;
      if (!read_patch(*body, patch, err)) return error_response(400, err);
      ChangeResult cr = control_.patch_server(pool, address, patch, who(token));
      if (!cr.error.empty()) return error_response(cr.status, cr.error);
    }
    const Snapshot& now = *control_.snapshot();
    Ctx c2{control_, now, *now.stats->registry, latency_};
    auto pit = now.config->pools.find(pool);
    std::size_t pj = static_cast<std::size_t>(std::distance(now.config->pools.begin(), pit));
    const upstream::PoolState* st2 =
        pj < now.pool_states.size() ? now.pool_states[pj].get() : nullptr;
    for (std::size_t i = 0; i < pit->second.servers.size(); ++i) {
      if (pit->second.servers[i].address.text == address) {
        return json_response(200, server_json(c2, pool, pit->second.servers[i], st2, i));
      }
    }
    return error_response(404, fmt::format("no server {} in pool {}", address, pool));
  }
  return error_response(404, "not found");
}

std::string Api::stream_message() {
  const Snapshot& snap = *control_.snapshot();
  Ctx c{control_, snap, *snap.stats->registry, latency_};
  Json j;
  j["status"] = status_json(control_);
  j["pools"] = pools_json(c);
  if (!series_.empty()) {
    const Sample& s = series_.back();
    Json pools = Json::object();
    for (const auto& [name, v] : s.pools) pools[name] = Json::array({v.first, v.second});
    j["sample"] = Json{{"unix_ms", s.unix_ms}, {"pools", std::move(pools)}};
  }
  std::uint64_t since = 0;
  const auto& events = control_.events();
  if (events.size() > 20) since = events[events.size() - 21].seq;
  j["events"] = events_json(control_, since);
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void Api::tick() {
  control_.poll_health();
  const Snapshot& snap = *control_.snapshot();
  const StatsRegistry& reg = *snap.stats->registry;
  Sample sample;
  sample.unix_ms = unix_now_ms();
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> totals;
  std::map<std::string, std::deque<core::HistogramTotals>> latency;
  for (const auto& [name, pool] : snap.config->pools) {
    std::uint64_t requests = 0, errors = 0;
    if (const PoolStats* s = reg.pool(name)) {
      for (std::size_t k = 0; k < kStatusClasses; ++k) {
        requests += s->sum([k](const PoolCounters& x) { return x.requests[k].load(); });
      }
      errors = s->sum([](const PoolCounters& x) { return x.requests[4].load(); });
    }
    totals[name] = {requests, errors};
    auto prev = last_totals_.find(name);
    std::pair<std::uint64_t, std::uint64_t> delta{0, 0};
    if (prev != last_totals_.end()) {
      delta = {requests - std::min(requests, prev->second.first),
               errors - std::min(errors, prev->second.second)};
    }
    sample.pools[name] = delta;
    for (const config::Server& sv : pool.servers) {
      std::string key = name + "/" + sv.address.text;
      core::HistogramTotals h;
      if (const ServerStats* s = reg.server(name, sv.address.text)) {
        for (unsigned w = 0; w < s->size(); ++w) h.add(s->at(w).response);
      }
      auto& ring = latency[key];
      if (auto it = latency_.find(key); it != latency_.end()) ring = std::move(it->second);
      ring.push_back(h);
      while (ring.size() > kLatencyWindow + 1) ring.pop_front();
    }
  }
  last_totals_ = std::move(totals);
  latency_ = std::move(latency);
  series_.push_back(std::move(sample));
  while (series_.size() > kSeriesLength) series_.pop_front();
}

}  // namespace switchyard::proxy::admin
