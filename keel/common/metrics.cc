// Metrics registry and the Prometheus text renderer.
#include "keel/common/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <variant>

#include "keel/common/logging.h"

namespace keel::metrics {
namespace {

enum Type { kCounter, kGauge, kHistogram };
constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};

bool ValidName(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Prometheus number syntax: shortest round-trip decimal, +Inf, -Inf, NaN.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (histograms' le); "" when there are none.
std::string RenderLabels(const Labels& labels, const std::string& extra_name = "",
                         const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(k + "=\"" + EscapeLabelValue(v) + "\"");
  if (!extra_name.empty()) parts.push_back(extra_name + "=\"" + extra_value + "\"");
  if (parts.empty()) return "";
  return "{" + fmt::format("{}", fmt::join(parts, ",")) + "}";
}

}  // namespace

void Counter::Increment(double delta) {
  KEEL_CHECK(delta >= 0, "counter increment must be >= 0, got {}", delta);
  value_.fetch_add(delta, std::memory_order_relaxed);
}

void Gauge::SetMax(double value) {
  double current = value_.load(std::memory_order_relaxed);
  while (value > current && !value_.compare_exchange_weak(current, value)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    KEEL_CHECK(std::isfinite(bounds_[i]), "histogram bound {} is not finite", bounds_[i]);
    KEEL_CHECK(i == 0 || bounds_[i] > bounds_[i - 1], "histogram bounds must increase");
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  // Bucket i counts values <= bounds_[i] (Prometheus' "le"); the last bucket is +Inf.
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;  // consistent with the buckets by construction
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DefaultBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  KEEL_CHECK(start > 0 && factor > 1 && count >= 1, "bad exponential buckets");
  std::vector<double> out;
  for (int i = 0; i < count; ++i, start *= factor) out.push_back(start);
  return out;
}

struct Registry::Family {
  int type;
  std::string help;
  std::vector<double> bounds;
  std::map<Labels, std::variant<std::unique_ptr<Counter>, std::unique_ptr<Gauge>,
                                std::unique_ptr<Histogram>>>
      series;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry& Registry::Default() {
  static Registry* registry = new Registry();  // never destroyed: metrics outlive statics
  return *registry;
}

Registry::Family* Registry::GetFamily(const std::string& name, const std::string& help, int type,
                                      const std::vector<double>& bounds) {
  KEEL_CHECK(ValidName(name, /*allow_colon=*/true), "invalid metric name '{}'", name);
  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<Family>();
    family->type = type;
    family->help = help;
    family->bounds = bounds;
    it = families_.emplace(name, std::move(family)).first;
  }
  Family* f = it->second.get();
  KEEL_CHECK(f->type == type, "metric '{}' is a {}, not a {}", name, kTypeNames[f->type],
             kTypeNames[type]);
  KEEL_CHECK(f->help == help, "metric '{}' registered again with other help text", name);
  KEEL_CHECK(f->bounds == bounds, "histogram '{}' registered again with other buckets", name);
  return f;
}

namespace {
void CheckLabels(const std::string& name, const Labels& labels, bool histogram) {
  for (const auto& [k, v] : labels) {
    KEEL_CHECK(ValidName(k, /*allow_colon=*/false) && k.rfind("__", 0) != 0,
               "metric '{}': invalid label name '{}'", name, k);
    KEEL_CHECK(!(histogram && k == "le"), "histogram '{}' may not use the label 'le'", name);
  }
}
}  // namespace

Counter* Registry::GetCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  CheckLabels(name, labels, false);
  MutexLock lock(&mu_);
  Family* f = GetFamily(name, help, kCounter, {});
  auto [it, inserted] = f->series.try_emplace(labels, std::make_unique<Counter>());
  return std::get<0>(it->second).get();
}

Gauge* Registry::GetGauge(const std::string& name, const std::string& help, const Labels& labels) {
  CheckLabels(name, labels, false);
  MutexLock lock(&mu_);
  Family* f = GetFamily(name, help, kGauge, {});
  auto [it, inserted] = f->series.try_emplace(labels, std::make_unique<Gauge>());
  return std::get<1>(it->second).get();
}

Histogram* Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const Labels& labels, const std::vector<double>& bounds) {
  CheckLabels(name, labels, true);
  MutexLock lock(&mu_);
  Family* f = GetFamily(name, help, kHistogram, bounds);
  auto [it, inserted] = f->series.try_emplace(labels, std::make_unique<Histogram>(bounds));
  return std::get<2>(it->second).get();
}

std::string Registry::RenderPrometheus() const {
  MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, EscapeHelp(f->help), name,
                       kTypeNames[f->type]);
    for (const auto& [labels, metric] : f->series) {
      if (f->type == kCounter) {
        out += name + RenderLabels(labels) + " " + FormatValue(std::get<0>(metric)->Value()) + "\n";
      } else if (f->type == kGauge) {
        out += name + RenderLabels(labels) + " " + FormatValue(std::get<1>(metric)->Value()) + "\n";
      } else {
        Histogram::Snapshot s = std::get<2>(metric)->Take();
        for (size_t i = 0; i <= s.bounds.size(); ++i) {
          std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
          out += name + "_bucket" + RenderLabels(labels, "le", le) + " " +
                 std::to_string(s.cumulative[i]) + "\n";
        }
        out += name + "_sum" + RenderLabels(labels) + " " + FormatValue(s.sum) + "\n";
        out += name + "_count" + RenderLabels(labels) + " " + std::to_string(s.count) + "\n";
      }
    }
  }
  return out;
}

}  // namespace keel::metrics
