#include "proxy/admin/metrics.h"

#include <fmt/format.h>

#include <cmath>

#include "proxy/admin/server_state.h"
#include "proxy/control_plane.h"
#include "proxy/worker.h"
#include "upstream/health_checker.h"

namespace switchyard::proxy::admin {
namespace {

constexpr const char* kClassNames[kStatusClasses] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void MetricsWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void MetricsWriter::labels(std::initializer_list<Label> labels, std::string_view extra_name,
                           std::string_view extra_value) {
  if (labels.size() == 0 && extra_name.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", k, escape_label_value(v));
  }
  if (!extra_name.empty()) {
    if (!first) out_ += ',';
    fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", extra_name, extra_value);
  }
  out_ += '}';
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l, double value) {
  out_ += name;
  labels(l);
  out_ += ' ';
  out_ += format_double(value);
  out_ += '\n';
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l,
                           std::uint64_t value) {
  out_ += name;
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l,
                           std::int64_t value) {
  out_ += name;
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void MetricsWriter::histogram(std::string_view name, std::initializer_list<Label> l,
                              const core::HistogramTotals& h) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    std::string le =
        i < core::LatencyHistogram::kBounds
            ? format_double(static_cast<double>(core::LatencyHistogram::kBoundsUs[i]) / 1e6)
            : "+Inf";
    out_ += name;
    out_ += "_bucket";
    labels(l, "le", le);
    fmt::format_to(std::back_inserter(out_), " {}\n", cumulative);
  }
  out_ += name;
  out_ += "_sum";
  labels(l);
  out_ += ' ';
  out_ += format_double(static_cast<double>(h.sum_us) / 1e6);
  out_ += '\n';
  out_ += name;
  out_ += "_count";
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", cumulative);
}

std::string render_metrics(const ControlPlane& control) {
  MetricsWriter m;
  const Snapshot& snap = *control.snapshot();
  const config::Config& cfg = *snap.config;
  const StatsRegistry& reg = *snap.stats->registry;
  const std::vector<Worker*>& workers = control.workers();

  m.family("switchyard_build_info", "gauge", "Version of this build (always 1).");
  m.sample("switchyard_build_info", {{"version", "0.1.0"}}, std::uint64_t{1});
  m.family("switchyard_start_time_seconds", "gauge", "When the process started (unix time).");
  m.sample("switchyard_start_time_seconds", {},
           static_cast<double>(control.started_unix_ms()) / 1e3);
  m.family("switchyard_config_reloads_total", "counter",
           "Configuration reloads (SIGHUP or admin API), by result.");
  m.sample("switchyard_config_reloads_total", {{"result", "success"}}, control.reloads_ok());
  m.sample("switchyard_config_reloads_total", {{"result", "failure"}}, control.reloads_failed());
  m.family("switchyard_config_last_reload_success_timestamp_seconds", "gauge",
           "When the served configuration was last loaded (unix time).");
  m.sample("switchyard_config_last_reload_success_timestamp_seconds", {},
           static_cast<double>(control.loaded_unix_ms()) / 1e3);
  m.family("switchyard_admin_changes_total", "counter",
           "Runtime server changes applied through the admin API.");
  m.sample("switchyard_admin_changes_total", {}, control.changes());

  // Listeners.
  m.family("switchyard_requests_total", "counter",
           "Responses sent to clients, by listener and status class.");
  for (const config::Listener& l : cfg.listeners) {
    const ListenerStats* s = reg.listener(l.name);
    for (std::size_t c = 0; c < kStatusClasses; ++c) {
      std::uint64_t n =
          s ? s->sum([c](const ListenerCounters& x) { return x.requests[c].load(); }) : 0;
      m.sample("switchyard_requests_total", {{"listener", l.name}, {"code", kClassNames[c]}}, n);
    }
  }
  struct ListenerFamily {
    const char* name;
    const char* type;
    const char* help;
    std::int64_t (*get)(const ListenerCounters&);
  };
  const ListenerFamily listener_families[] = {
      {"switchyard_connections_total", "counter", "Client connections accepted, by listener.",
       [](const ListenerCounters& x) { return static_cast<std::int64_t>(x.accepted.load()); }},
      {"switchyard_connections_active", "gauge", "Client connections open now, by listener.",
       [](const ListenerCounters& x) { return x.active.load(); }},
      {"switchyard_received_bytes_total", "counter",
       "Request bytes received from clients (heads and bodies), by listener.",
       [](const ListenerCounters& x) { return static_cast<std::int64_t>(x.bytes_in.load()); }},
      {"switchyard_sent_bytes_total", "counter", "Response bytes sent to clients, by listener.",
       [](const ListenerCounters& x) { return static_cast<std::int64_t>(x.bytes_out.load()); }},
  };
  for (const ListenerFamily& f : listener_families) {
    m.family(f.name, f.type, f.help);
    for (const config::Listener& l : cfg.listeners) {
      const ListenerStats* s = reg.listener(l.name);
      std::int64_t total = 0;
      if (s) {
        for (unsigned w = 0; w < s->size(); ++w) total += f.get(s->at(w));
      }
      m.sample(f.name, {{"listener", l.name}}, total);
    }
  }

  // Routes.
  m.family("switchyard_route_requests_total", "counter",
           "Requests decided by each route (route = position in its table, from 0).");
  for (const auto& [table, rt] : cfg.routes) {
    for (std::size_t i = 0; i < rt.routes.size(); ++i) {
      const RouteStats* s = reg.route(table, i);
      std::uint64_t n = s ? s->sum([](const RouteCounters& x) { return x.hits.load(); }) : 0;
      std::string pos = std::to_string(i);
      m.sample("switchyard_route_requests_total", {{"table", table}, {"route", pos}}, n);
    }
  }

  // Pools.
  m.family("switchyard_pool_requests_total", "counter",
           "Requests routed to each pool, by the status class of their answer.");
  for (const auto& [name, pool] : cfg.pools) {
    const PoolStats* s = reg.pool(name);
    for (std::size_t c = 0; c < kStatusClasses; ++c) {
      std::uint64_t n = s ? s->sum([c](const PoolCounters& x) { return x.requests[c].load(); }) : 0;
      m.sample("switchyard_pool_requests_total", {{"pool", name}, {"code", kClassNames[c]}}, n);
    }
  }
  m.family("switchyard_pool_retries_total", "counter",
           "Requests tried again on another server of the pool.");
  for (const auto& [name, pool] : cfg.pools) {
    const PoolStats* s = reg.pool(name);
    m.sample("switchyard_pool_retries_total", {{"pool", name}},
             s ? s->sum([](const PoolCounters& x) { return x.retries.load(); }) : 0);
  }

  // Servers.
  auto each_server = [&](auto fn) {
    std::size_t pi = 0;
    for (const auto& [name, pool] : cfg.pools) {
      const upstream::PoolState* state =
          pi < snap.pool_states.size() ? snap.pool_states[pi].get() : nullptr;
      for (std::size_t i = 0; i < pool.servers.size(); ++i) {
        fn(name, pool.servers[i], reg.server(name, pool.servers[i].address.text), state, i);
      }
      ++pi;
    }
  };
  m.family("switchyard_server_responses_total", "counter",
           "Responses each server produced, by status class.");
  each_server([&](const std::string& pool, const config::Server& sv, const ServerStats* s,
                  const upstream::PoolState*, std::size_t) {
    for (std::size_t c = 0; c < kStatusClasses; ++c) {
      std::uint64_t n =
          s ? s->sum([c](const ServerCounters& x) { return x.responses[c].load(); }) : 0;
      m.sample("switchyard_server_responses_total",
               {{"pool", pool}, {"server", sv.address.text}, {"code", kClassNames[c]}}, n);
    }
  });
  m.family("switchyard_server_failures_total", "counter",
           "Failed attempts on each server: connect (refused, unreachable, timed out) or reset "
           "(lost before a complete response, or response timeout).");
  each_server([&](const std::string& pool, const config::Server& sv, const ServerStats* s,
                  const upstream::PoolState*, std::size_t) {
    std::uint64_t connect =
        s ? s->sum([](const ServerCounters& x) { return x.connect_failures.load(); }) : 0;
    std::uint64_t reset = s ? s->sum([](const ServerCounters& x) { return x.resets.load(); }) : 0;
    m.sample("switchyard_server_failures_total",
             {{"pool", pool}, {"server", sv.address.text}, {"kind", "connect"}}, connect);
    m.sample("switchyard_server_failures_total",
             {{"pool", pool}, {"server", sv.address.text}, {"kind", "reset"}}, reset);
  });
  m.family("switchyard_server_active_requests", "gauge",
           "Requests in flight to each server (all workers; refreshed every 50 ms).");
  each_server([&](const std::string& pool, const config::Server& sv, const ServerStats*,
                  const upstream::PoolState* st, std::size_t i) {
    std::uint64_t n = st && i < st->size() ? st->total_load(i) : 0;
    m.sample("switchyard_server_active_requests", {{"pool", pool}, {"server", sv.address.text}}, n);
  });
  m.family("switchyard_server_weight", "gauge", "Each server's weight as served now.");
  each_server([&](const std::string& pool, const config::Server& sv, const ServerStats*,
                  const upstream::PoolState*, std::size_t) {
    m.sample("switchyard_server_weight", {{"pool", pool}, {"server", sv.address.text}},
             std::uint64_t{sv.weight});
  });
  m.family("switchyard_server_state", "gauge",
           "1 for each server's current state (up, down, drain, maint), 0 for the others.");
  each_server([&](const std::string& pool, const config::Server& sv, const ServerStats*,
                  const upstream::PoolState* st, std::size_t i) {
    upstream::Health h = st && i < st->size() ? st->health(i).state.load(std::memory_order_acquire)
                                              : upstream::Health::kUnchecked;
    std::string_view state = server_state(sv, h);
    for (const char* name : kServerStates) {
      m.sample("switchyard_server_state",
               {{"pool", pool}, {"server", sv.address.text}, {"state", name}},
               std::uint64_t{state == name ? 1u : 0u});
    }
  });
  for (auto [family, help, connect] :
       {std::tuple{"switchyard_upstream_connect_duration_seconds",
                   "Time to connect to each server.", true},
        std::tuple{"switchyard_upstream_response_duration_seconds",
                   "Time from sending a request head to a server to its response head.", false}}) {
    m.family(family, "histogram", help);
    each_server([&](const std::string& pool, const config::Server& sv, const ServerStats* s,
                    const upstream::PoolState*, std::size_t) {
      core::HistogramTotals h;
      if (s) {
        for (unsigned w = 0; w < s->size(); ++w)
          h.add(connect ? s->at(w).connect : s->at(w).response);
      }
      m.histogram(family, {{"pool", pool}, {"server", sv.address.text}}, h);
    });
  }
  if (upstream::HealthChecker* hc = control.health_checker()) {
    m.family("switchyard_health_checks_total", "counter", "Active health checks completed.");
    m.sample("switchyard_health_checks_total", {}, hc->checks_completed());
  }

  // Workers.
  struct WorkerFamily {
    const char* name;
    const char* type;
    const char* help;
    std::int64_t (*get)(const WorkerCounters&);
  };
  const WorkerFamily worker_families[] = {
      {"switchyard_worker_connections", "gauge", "Client connections open, by worker.",
       [](const WorkerCounters& c) { return c.connections.load(); }},
      {"switchyard_worker_upstream_connections", "gauge",
       "Upstream connections open (idle and busy), by worker.",
       [](const WorkerCounters& c) { return c.upstreams.load(); }},
      {"switchyard_worker_free_buffers", "gauge", "Provided receive buffers not in use, by worker.",
       [](const WorkerCounters& c) { return c.free_buffers.load(); }},
      {"switchyard_worker_requests_total", "counter", "Request heads parsed, by worker.",
       [](const WorkerCounters& c) { return static_cast<std::int64_t>(c.requests.load()); }},
  };
  for (const WorkerFamily& f : worker_families) {
    m.family(f.name, f.type, f.help);
    for (Worker* w : workers) {
      std::string id = std::to_string(w->id());
      m.sample(f.name, {{"worker", id}}, f.get(w->counters()));
    }
  }
  struct TotalFamily {
    const char* name;
    const char* help;
    std::uint64_t (*get)(Worker&);
  };
  const TotalFamily totals[] = {
      {"switchyard_connections_rejected_total",
       "Client connections refused at once (max_connections reached or shutting down).",
       [](Worker& w) { return w.counters().rejected_over_limit.load(); }},
      {"switchyard_upstream_connects_total", "New connections opened to servers.",
       [](Worker& w) { return w.counters().upstream_connects.load(); }},
      {"switchyard_upstream_reuses_total", "Requests sent on a kept-alive server connection.",
       [](Worker& w) { return w.counters().upstream_reuses.load(); }},
      {"switchyard_retries_total", "Requests tried again on another server.",
       [](Worker& w) { return w.counters().retries.load(); }},
      {"switchyard_queued_total", "Requests that waited for a server below max_connections.",
       [](Worker& w) { return w.counters().queued.load(); }},
      {"switchyard_queue_timeouts_total", "Requests that waited too long in a pool's queue (503).",
       [](Worker& w) { return w.counters().queue_timeouts.load(); }},
      {"switchyard_tls_handshakes_total", "TLS handshakes completed on listeners.",
       [](Worker& w) { return w.counters().tls_handshakes.load(); }},
      {"switchyard_tls_resumptions_total", "TLS handshakes that resumed a session.",
       [](Worker& w) { return w.counters().tls_resumptions.load(); }},
      {"switchyard_tls_handshake_failures_total", "TLS handshakes that failed.",
       [](Worker& w) { return w.counters().tls_handshake_failures.load(); }},
      {"switchyard_handoffs_total",
       "Client connections handed to a real server's agent (TCP handoff; the server answers).",
       [](Worker& w) { return w.counters().handoffs.load(); }},
      {"switchyard_handoff_fallbacks_total",
       "Handoffs that did not happen (agent refused or unreachable, timeout): proxied instead.",
       [](Worker& w) { return w.counters().handoff_fallbacks.load(); }},
      {"switchyard_access_log_dropped_total",
       "Access log lines dropped because a worker's log ring was full.",
       [](Worker& w) { return w.access_log().dropped(); }},
  };
  for (const TotalFamily& f : totals) {
    m.family(f.name, "counter", f.help);
    std::uint64_t total = 0;
    for (Worker* w : workers) total += f.get(*w);
    m.sample(f.name, {}, total);
  }
  m.family("switchyard_forwarded_bytes_total", "counter",
           "Bytes moved between clients and servers, by how: copy (through userspace buffers) or "
           "splice (kernel only).");
  std::uint64_t copy = 0, splice = 0;
  for (Worker* w : workers) {
    copy += w->counters().copy_bytes.load();
    splice += w->counters().splice_bytes.load();
  }
  m.sample("switchyard_forwarded_bytes_total", {{"method", "copy"}}, copy);
  m.sample("switchyard_forwarded_bytes_total", {{"method", "splice"}}, splice);
  std::uint64_t sockmap = 0, tunnels = 0, tunnels_sockmap = 0, tunnels_splice = 0;
  std::int64_t tunnels_open = 0;
  for (Worker* w : workers) {
    sockmap += w->counters().sockmap_bytes.load();
    tunnels += w->counters().tunnels.load();
    tunnels_sockmap += w->counters().tunnels_sockmap.load();
    tunnels_splice += w->counters().tunnels_splice.load();
    tunnels_open += w->counters().tunnels_open.load();
  }
  m.sample("switchyard_forwarded_bytes_total", {{"method", "sockmap"}}, sockmap);
  m.family("switchyard_tunnels_total", "counter",
           "Tunnels started (tcp listeners, HTTP Upgrade), by engine: sockmap (kernel redirect), "
           "splice (socket -> pipe -> socket) or copy.");
  m.sample("switchyard_tunnels_total", {{"engine", "sockmap"}}, tunnels_sockmap);
  m.sample("switchyard_tunnels_total", {{"engine", "splice"}}, tunnels_splice);
  // Read one after the other: a tunnel counted by a later field may be missing from `tunnels`.
  std::uint64_t engines = tunnels_sockmap + tunnels_splice;
  m.sample("switchyard_tunnels_total", {{"engine", "copy"}},
           tunnels > engines ? tunnels - engines : 0);
  m.family("switchyard_tunnels_open", "gauge", "Tunnels open now.");
  m.sample("switchyard_tunnels_open", {},
           static_cast<std::uint64_t>(tunnels_open < 0 ? 0 : tunnels_open));
  return m.take();
}

}  // namespace switchyard::proxy::admin
