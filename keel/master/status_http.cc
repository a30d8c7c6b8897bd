// StatusHttpServer over cpp-httplib, and the job's Prometheus metrics.
#include "keel/master/status_http.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <thread>

#include "keel/common/logging.h"
#include "keel/common/metrics.h"

namespace keel::master {
namespace {

const char* StateLabel(rpc::JobState s) {
  switch (s) {
    case rpc::JOB_STATE_RENDEZVOUS:
      return "rendezvous";
    case rpc::JOB_STATE_RUNNING:
      return "running";
    case rpc::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case rpc::JOB_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

std::string JsonError(const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return "{\"error\": \"" + escaped + "\"}\n";
}

}  // namespace

std::string RenderJobMetrics(const rpc::JobStatus& status) {
  metrics::Registry r;  // built per scrape from one consistent JobStatus
  const rpc::JobSnapshot& s = status.snapshot();
  const metrics::Labels job{{"job", s.job_name()}};
  for (rpc::JobState st : {rpc::JOB_STATE_RENDEZVOUS, rpc::JOB_STATE_RUNNING,
                           rpc::JOB_STATE_SUCCEEDED, rpc::JOB_STATE_FAILED}) {
    metrics::Labels l = job;
    l["state"] = StateLabel(st);
    r.GetGauge("keel_job_state", "1 for the job's current state.", l)->Set(s.state() == st);
  }
  r.GetGauge("keel_job_round", "Current rendezvous round.", job)->Set(s.round());
  r.GetCounter("keel_job_restarts_total", "Worker failures that restarted the job.", job)
      ->Increment(s.restart_count());
  r.GetGauge("keel_job_world_size", "Workers in the current round.", job)->Set(s.world_size());
  r.GetGauge("keel_job_global_step", "Highest training step reported.", job)
      ->Set(static_cast<double>(status.global_step()));
  r.GetGauge("keel_job_goodput", "Fraction of wall time in rounds whose work is kept.", job)
      ->Set(status.goodput());
  const rpc::CheckpointStatus& ck = status.checkpoint();
  r.GetCounter("keel_ckpt_saves_total", "keel.ckpt saves into memory slots.", job)
      ->Increment(static_cast<double>(ck.saves()));
  r.GetCounter("keel_ckpt_dropped_steps_total",
               "Saved steps never persisted because a newer one replaced them first.", job)
      ->Increment(static_cast<double>(ck.dropped_steps()));
  r.GetCounter("keel_ckpt_persisted_files_total", "Rank files persisted to the checkpoint dir.",
               job)
      ->Increment(static_cast<double>(ck.persisted_files()));
  r.GetCounter("keel_ckpt_persisted_bytes_total", "Bytes persisted to the checkpoint dir.", job)
      ->Increment(static_cast<double>(ck.persisted_bytes()));
  r.GetGauge("keel_ckpt_committed_step", "Newest committed checkpoint step (-1: none).", job)
      ->Set(static_cast<double>(ck.committed_step()));
  for (const char* st : {"waiting", "running", "succeeded", "idle"}) {
    metrics::Labels l = job;
    l["state"] = st;
    int n = 0;
    for (const rpc::NodeStatus& node : status.nodes()) n += node.state() == st;
    r.GetGauge("keel_job_nodes", "Nodes by state.", l)->Set(n);
  }
  for (const rpc::NodeStatus& node : status.nodes()) {
    for (const rpc::WorkerUsage& w : node.workers()) {
      metrics::Labels l = job;
      l["node"] = node.node_id();
      l["rank"] = std::to_string(w.rank());
      r.GetGauge("keel_worker_rss_bytes", "Resident memory of a worker.", l)
          ->Set(static_cast<double>(w.rss_bytes()));
      r.GetCounter("keel_worker_cpu_seconds_total", "CPU time used by a worker.", l)
          ->Increment(w.cpu_seconds());
    }
  }
  return r.RenderPrometheus();
}

struct StatusHttpServer::Rep {
  httplib::Server server;
  std::thread thread;
  int port = 0;
};

StatusHttpServer::StatusHttpServer(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}

StatusOr<std::unique_ptr<StatusHttpServer>> StatusHttpServer::Start(const std::string& host,
                                                                    int port,
                                                                    MasterService* service) {
  auto rep = std::make_unique<Rep>();
  httplib::Server& srv = rep->server;
  srv.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  srv.Get("/metrics", [service](const httplib::Request&, httplib::Response& res) {
    res.set_content(RenderJobMetrics(service->JobStatusNow()), "text/plain; version=0.0.4");
  });
  srv.Get("/api/job", [service](const httplib::Request&, httplib::Response& res) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.always_print_primitive_fields = true;
    options.preserve_proto_field_names = true;
    auto status =
        google::protobuf::util::MessageToJsonString(service->JobStatusNow(), &json, options);
    if (!status.ok()) {
      res.status = 500;
      res.set_content(JsonError(status.ToString()), "application/json");
      return;
    }
    res.set_content(json, "application/json");
  });
  auto not_allowed = [](const httplib::Request& req, httplib::Response& res) {
    res.status = 405;
    res.set_content(JsonError("method " + req.method + " not allowed: the endpoints are GET only"),
                    "application/json");
  };
  srv.Post(".*", not_allowed);
  srv.Put(".*", not_allowed);
  srv.Delete(".*", not_allowed);
  srv.Patch(".*", not_allowed);
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content(
          JsonError("no such endpoint '" + req.path + "' (try /healthz, /metrics, /api/job)"),
          "application/json");
    }
  });
  rep->port = port == 0 ? srv.bind_to_any_port(host) : (srv.bind_to_port(host, port) ? port : -1);
  if (rep->port <= 0) {
    return UnavailableError("cannot listen for HTTP on " + host + ":" + std::to_string(port) +
                            " (port in use?)");
  }
  Rep* raw = rep.get();
  rep->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  KEEL_LOG(Debug, "status HTTP on {}:{}", host, rep->port);
  return std::unique_ptr<StatusHttpServer>(new StatusHttpServer(std::move(rep)));
}

StatusHttpServer::~StatusHttpServer() {
  rep_->server.stop();
  if (rep_->thread.joinable()) rep_->thread.join();
}

int StatusHttpServer::port() const { return rep_->port; }

}  // namespace keel::master
