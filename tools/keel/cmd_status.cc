// `keel status`: the state of a running job, from its master, for people (or --json).
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include "keel/rpc/channel.h"
#include "keel/rpc/keel.grpc.pb.h"
#include "keel/rpc/status_convert.h"
#include "tools/keel/command.h"

namespace keel::cli {
namespace {

struct StatusFlags {
  std::string master;
  std::string token;
  rpc::TlsOptions tls;
  bool json = false;
};

std::string Human(const rpc::JobStatus& st) {
  const rpc::JobSnapshot& s = st.snapshot();
  static const char* kStates[] = {"unknown", "rendezvous", "running", "succeeded", "failed"};
  std::string out = fmt::format(
      "job {}: {}, round {}, {} worker(s), restarts {}/{}, global step {}, goodput {:.0f}%\n",
      s.job_name(), kStates[s.state() < 5 ? s.state() : 0], s.round(), s.world_size(),
      s.restart_count(), s.max_restarts(), st.global_step(), st.goodput() * 100);
  out += fmt::format("  {}\n", s.message());
  out += fmt::format("nodes ({}):\n", st.nodes_size());
  for (const rpc::NodeStatus& n : st.nodes()) {
    out += fmt::format("  {}  {}  {}  group rank {}  {} worker(s)  heartbeat {:.1f}s ago\n",
                       n.node_id(), n.address(), n.state(), n.group_rank(), n.nproc(),
                       n.seconds_since_heartbeat());
    for (const rpc::WorkerUsage& w : n.workers()) {
      out += fmt::format("    rank {}  pid {}  cpu {:.1f}s  rss {:.0f} MiB\n", w.rank(), w.pid(),
                         w.cpu_seconds(), w.rss_bytes() / 1048576.0);
    }
  }
  if (!st.last_failure().empty()) out += "last failure: " + st.last_failure() + "\n";
  out += "recent events:\n";
  int first = std::max(0, st.events_size() - 10);
  for (int i = first; i < st.events_size(); ++i) out += "  " + st.events(i).text() + "\n";
  return out;
}

Command MakeStatus(CLI::App* parent) {
  CLI::App* app =
      parent->add_subcommand("status", "Show a running job: keel status --master HOST:PORT");
  auto f = std::make_shared<StatusFlags>();  // shared with the run callback below
  app->add_option("--master", f->master, "The job master, HOST:PORT")->required();
  app->add_option("--token", f->token, "Job token")->envname("KEEL_TOKEN");
  app->add_option("--tls-cert", f->tls.cert_file, "TLS certificate (PEM)");
  app->add_option("--tls-key", f->tls.key_file, "TLS private key (PEM)");
  app->add_option("--tls-ca", f->tls.ca_file, "TLS CA to verify the master (PEM)");
  app->add_flag("--json", f->json, "Print the job as JSON");
  return {app, [f] {
            auto channel = rpc::Channel::Create({.target = f->master,
                                                 .token = f->token,
                                                 .tls = f->tls,
                                                 .default_timeout = std::chrono::seconds(5)});
            if (!channel.ok()) {
              fmt::print(stderr, "keel status: error: {}\n", channel.status().message());
              return kExitUsage;
            }
            auto stub = rpc::Master::NewStub((*channel)->grpc_channel());
            rpc::JobStatus st;
            auto ctx = (*channel)->NewContext();
            Status s = rpc::FromGrpc(stub->GetJob(ctx.get(), rpc::GetJobRequest(), &st));
            if (!s.ok()) {
              fmt::print(stderr, "keel status: {}: {}\n", f->master, s.ToString());
              return kExitFailure;
            }
            if (f->json) {
              std::string json;
              google::protobuf::util::JsonPrintOptions o;
              o.add_whitespace = true;
              o.preserve_proto_field_names = true;
              (void)google::protobuf::util::MessageToJsonString(st, &json, o);
              fmt::print("{}", json);
            } else {
              fmt::print("{}", Human(st));
            }
            return kExitOk;
          }};
}
KEEL_REGISTER_COMMAND(MakeStatus);

}  // namespace
}  // namespace keel::cli
