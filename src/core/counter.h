// Per-worker statistics that another thread may read without locks.
//
// Each Counter, Gauge and LatencyHistogram has exactly ONE writer (the worker that owns it) and
// any number of readers (the control plane summing them for /metrics and the admin API). The
// writer updates with a relaxed load and a relaxed store: no read-modify-write instruction, no
// lock prefix, so on x86 an increment compiles to the same load/add/store as a plain integer. The
// atomic type only makes the concurrent read well-defined (no torn or stale-forever values); a
// reader sees each value at most a few moments old, which is all a scrape needs.
//
// Never call the writing members from two threads: increments would be lost. Keep the objects on
// cache lines of their own owner (see proxy/stats.h) so readers and other workers never contend.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace switchyard::core {

class Counter {
 public:
  void add(std::uint64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  Counter& operator++() {
    add(1);
    return *this;
  }
  Counter& operator+=(std::uint64_t n) {
    add(n);
    return *this;
  }
  // Any thread.
  std::uint64_t load() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// A value that goes up and down (connections open, buffers free). Same single-writer rule.
class Gauge {
 public:
  void set(std::int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  Gauge& operator++() {
    add(1);
    return *this;
  }
  Gauge& operator--() {
    add(-1);
    return *this;
  }
  std::int64_t load() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// Latency histogram with fixed log-scale buckets (1-2.5-5 steps from 100 µs to 10 s, plus +Inf),
// the same for every histogram so that per-worker copies can be summed bucket by bucket and
// exported as a Prometheus histogram. Buckets are NOT cumulative here (the exporter sums them).
class LatencyHistogram {
 public:
  static constexpr std::size_t kBounds = 16;
  // Upper bounds in microseconds; bucket kBounds is +Inf.
  static constexpr std::array<std::uint64_t, kBounds> kBoundsUs = {
      100,   250,    500,    1000,   2500,    5000,    10000,   25000,
      50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

  static std::size_t bucket_for(std::uint64_t us) {
    std::size_t i = 0;
    while (i < kBounds && us > kBoundsUs[i]) ++i;
    return i;
  }

  template <typename Rep, typename Period>
  void observe(std::chrono::duration<Rep, Period> d) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    observe_us(us < 0 ? 0 : static_cast<std::uint64_t>(us));
  }
  void observe_us(std::uint64_t us) {
    ++buckets_[bucket_for(us)];
    sum_us_ += us;
  }

  // Readers.
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(); }
  std::uint64_t sum_us() const { return sum_us_.load(); }

 private:
  std::array<Counter, kBounds + 1> buckets_;
  Counter sum_us_;
};

// A plain (non-atomic) sum of histograms, for the reader side.
struct HistogramTotals {
  std::array<std::uint64_t, LatencyHistogram::kBounds + 1> buckets{};
  std::uint64_t sum_us = 0;

  void add(const LatencyHistogram& h) {
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.bucket(i);
    sum_us += h.sum_us();
  }
  std::uint64_t count() const {
    std::uint64_t n = 0;
    for (std::uint64_t b : buckets) n += b;
    return n;
  }
  // Estimated q-quantile (0..1) in microseconds by linear interpolation inside the bucket, as
  // Prometheus' histogram_quantile does; observations in +Inf count as the last finite bound.
  // 0 when empty.
  double quantile_us(double q) const {
    std::uint64_t total = count();
    if (total == 0) return 0;
    double rank = q * static_cast<double>(total);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      if (buckets[i] == 0) continue;
      if (static_cast<double>(seen + buckets[i]) >= rank) {
        if (i == LatencyHistogram::kBounds) {
          return static_cast<double>(LatencyHistogram::kBoundsUs[LatencyHistogram::kBounds - 1]);
        }
        double lo = i == 0 ? 0 : static_cast<double>(LatencyHistogram::kBoundsUs[i - 1]);
        double hi = static_cast<double>(LatencyHistogram::kBoundsUs[i]);
        double frac = (rank - static_cast<double>(seen)) / static_cast<double>(buckets[i]);
        return lo + (hi - lo) * frac;
      }
      seen += buckets[i];
    }
    return 0;
  }
};

}  // namespace switchyard::core
