// Metrics registry: counters, gauges and histograms, rendered in Prometheus text format
// (exposition format 0.0.4), for servers' /metrics endpoints.
//
//   metrics::Registry& r = metrics::Registry::Default();
//   metrics::Counter* restarts = r.GetCounter("keel_worker_restarts_total", "Worker restarts",
//                                             {{"node", "3"}});
//   restarts->Increment();
//   std::string text = r.RenderPrometheus();
//
// A name with a label set identifies one metric: asking again returns the same object. Names
// and label names are chosen by code, so an invalid name, or reusing a name with another type,
// help text or bucket list, is a programmer error (KEEL_CHECK). Label *values* may come from
// anywhere; they are escaped when rendered.
// Ownership: the registry owns its metrics; pointers stay valid for the registry's lifetime.
// Thread-safety: everything is thread-safe; updates are lock-free atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "keel/common/mutex.h"

namespace keel::metrics {

// Label name -> value. Ordered, so a label set has one canonical form.
using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  // Adds `delta` (must be >= 0: counters only go up).
  void Increment(double delta = 1);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  // Sets the gauge to `value` if it is larger (for peak tracking).
  void SetMax(double value);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket (not cumulative), +Inf last
  std::atomic<double> sum_{0};
};

// Prometheus' default buckets: 5 ms to 10 s.
std::vector<double> DefaultBuckets();
// `count` buckets starting at `start`, each `factor` times the previous.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry.
  static Registry& Default();

  Counter* GetCounter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          const Labels& labels = {},
                          const std::vector<double>& bounds = DefaultBuckets());

  // Every metric, families sorted by name, series by label set.
  std::string RenderPrometheus() const;

 private:
  struct Family;
  Family* GetFamily(const std::string& name, const std::string& help, int type,
                    const std::vector<double>& bounds) KEEL_REQUIRES(mu_);

  mutable Mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_ KEEL_GUARDED_BY(mu_);
};

}  // namespace keel::metrics
