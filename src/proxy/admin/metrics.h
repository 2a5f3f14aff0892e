// /metrics in the Prometheus text exposition format (version 0.0.4).
//
// MetricsWriter is pure formatting (unit-tested); render_metrics() sums every worker's counters
// (proxy/stats.h, WorkerCounters) and reads the shared pool state on the control-plane thread.
// Labels come only from the configuration (listener, route table and position, pool, server
// address, status class, worker index), so their cardinality is bounded by it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "core/counter.h"

namespace switchyard::proxy {
class ControlPlane;
}

namespace switchyard::proxy::admin {

using Label = std::pair<std::string_view, std::string_view>;

// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);

class MetricsWriter {
 public:
  // Starts a metric family: # HELP and # TYPE lines. Samples of a family must follow it.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::initializer_list<Label> labels, std::uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, std::int64_t value);
  // The _bucket (cumulative, le in seconds), _sum (seconds) and _count samples of a histogram.
  void histogram(std::string_view name, std::initializer_list<Label> labels,
                 const core::HistogramTotals& h);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void labels(std::initializer_list<Label> labels, std::string_view extra_name = {},
              std::string_view extra_value = {});
  std::string out_;
};

// Everything the proxy exports.
std::string render_metrics(const ControlPlane& control);

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace switchyard::proxy::admin
