#include "keel/common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace keel::metrics {
namespace {

TEST(MetricsTest, RendersCountersAndGaugesInPrometheusTextFormat) {
  Registry r;
  r.GetCounter("keel_restarts_total", "Worker restarts.", {{"node", "1"}})->Increment(2);
  r.GetCounter("keel_restarts_total", "Worker restarts.", {{"node", "0"}})->Increment();
  Gauge* g = r.GetGauge("keel_nodes", "Nodes in the round.");
  g->Set(4);
  g->Add(-1.5);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP keel_nodes Nodes in the round.\n"
            "# TYPE keel_nodes gauge\n"
            "keel_nodes 2.5\n"
            "# HELP keel_restarts_total Worker restarts.\n"
            "# TYPE keel_restarts_total counter\n"
            "keel_restarts_total{node=\"0\"} 1\n"
            "keel_restarts_total{node=\"1\"} 2\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  Histogram* h = r.GetHistogram("keel_rpc_seconds", "RPC latency.", {{"method", "Join"}}, {0.1, 1});
  for (double v : {0.05, 0.1, 0.5, 3.0}) h->Observe(v);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP keel_rpc_seconds RPC latency.\n"
            "# TYPE keel_rpc_seconds histogram\n"
            "keel_rpc_seconds_bucket{method=\"Join\",le=\"0.1\"} 2\n"
            "keel_rpc_seconds_bucket{method=\"Join\",le=\"1\"} 3\n"
            "keel_rpc_seconds_bucket{method=\"Join\",le=\"+Inf\"} 4\n"
            "keel_rpc_seconds_sum{method=\"Join\"} 3.65\n"
            "keel_rpc_seconds_count{method=\"Join\"} 4\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry r;
  r.GetGauge("g", "line1\nback\\slash", {{"path", "a\"b\\c\nd"}})->Set(1);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP g line1\\nback\\\\slash\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, SameNameAndLabelsReturnTheSameMetric) {
  Registry r;
  Counter* a = r.GetCounter("c_total", "h", {{"x", "1"}});
  EXPECT_EQ(a, r.GetCounter("c_total", "h", {{"x", "1"}}));
  EXPECT_NE(a, r.GetCounter("c_total", "h", {{"x", "2"}}));
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter* c = r.GetCounter("hits_total", "h");
  Histogram* h = r.GetHistogram("lat", "h", {}, {1});
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c->Increment();
        h->Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->Value(), 40000);
  EXPECT_EQ(h->Take().count, 40000u);
  EXPECT_EQ(h->Take().sum, 20000);
}

TEST(MetricsTest, GaugeSetMaxKeepsThePeak) {
  Gauge g;
  g.SetMax(3);
  g.SetMax(1);
  EXPECT_EQ(g.Value(), 3);
  g.SetMax(7);
  EXPECT_EQ(g.Value(), 7);
}

TEST(MetricsTest, SpecialValuesUsePrometheusSpelling) {
  Registry r;
  r.GetGauge("inf", "h")->Set(INFINITY);
  r.GetGauge("nan", "h")->Set(NAN);
  std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("inf +Inf\n"), std::string::npos);
  EXPECT_NE(text.find("nan NaN\n"), std::string::npos);
}

TEST(MetricsDeathTest, MisuseIsAProgrammerError) {
  Registry r;
  r.GetCounter("x_total", "h");
  EXPECT_DEATH(r.GetGauge("x_total", "h"), "is a counter, not a gauge");
  EXPECT_DEATH(r.GetCounter("bad name", "h"), "invalid metric name");
  EXPECT_DEATH(r.GetCounter("ok_total", "h", {{"__x", "1"}}), "invalid label name");
  EXPECT_DEATH(r.GetCounter("x_total", "h")->Increment(-1), "must be >= 0");
}

}  // namespace
}  // namespace keel::metrics
