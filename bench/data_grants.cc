// Shard service at scale: N concurrent clients (real gRPC clients, each on its own connection,
// driven by gRPC's callback API in this process) take shards from a real `keel master`
// process and report each one consumed, as fast as they can — either with a ReportShard call
// after each grant, or with the report carried by the next GetShard. Measures
//   - grants per second and the grant latency (p50, p99),
//   - the master's memory (VmRSS, VmHWM) after serving a 10^6- and a 10^10-record dataset,
//   - the CPU the master used (clients and master share this machine's cores),
//   - the same clients' rate on GetJob, a small sync-handler RPC, for reference.
// Each phase runs against a fresh master; phases are interleaved over --runs, medians printed.
//
//   build/bench/keel_data_grants --clients 1000 --seconds 5 --runs 3 --keel build/tools/keel/keel
//
// Goals (issue #5): >= 20,000 grants/s with 1,000 clients on this 2-core machine; memory
// independent of the dataset's size.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "keel/common/subprocess.h"
#include "keel/rpc/keel.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Master {
  std::unique_ptr<keel::Subprocess> proc;
  int port = 0;
};

Master StartMaster(const std::string& keel_bin) {
  const std::string log = "/tmp/keel_data_grants_master.log";
  std::remove(log.c_str());
  keel::SpawnOptions so;
  so.argv = {keel_bin,   "master", "--port",         "0",  "--token", "bench",
             "--nnodes", "1",      "--rdzv-timeout", "600"};
  so.stdout_path = log;
  auto proc = keel::Subprocess::Spawn(so);
  if (!proc.ok()) {
    fmt::print(stderr, "{}\n", proc.status().ToString());
    std::exit(1);
  }
  Master m{std::move(proc).value()};
  for (int i = 0; i < 500 && m.port == 0; ++i) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::smatch match;
    if (std::regex_search(text, match, std::regex("listening on port (\\d+)"))) {
      m.port = std::stoi(match[1]);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (m.port == 0) {
    fmt::print(stderr, "master did not start (see {})\n", log);
    std::exit(1);
  }
  return m;
}

// VmRSS and VmHWM of a process, in KiB.
std::pair<long, long> Memory(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  long rss = 0, hwm = 0;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::stol(line.substr(6));
  }
  return {rss, hwm};
}

// CPU seconds (user + system) a process has used.
double CpuSeconds(int pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stol(f);
    if (i == 15) {
      stime = std::stol(f);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer bench");
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return ctx;
}

// One simulated worker: GetShard -> ReportShard(consumed = whole shard) -> GetShard ...,
// or GetJob in a loop for the bound.
enum class Mode { kSeparateReport, kReportInRequest, kBound };

class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, int id, Mode mode)
      : stub_(keel::rpc::Master::NewStub(std::move(channel))), mode_(mode) {
    get_.set_dataset("bench");
    get_.set_worker(fmt::format("rank {}", id));
    report_.set_dataset("bench");
  }
  void Start() { Get(); }
  void Stop() { stop_ = true; }
  void WaitStopped() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return idle_; });
  }
  // Latencies (µs) of the calls that completed inside [from, to).
  void Collect(Clock::time_point from, Clock::time_point to, std::vector<double>* out,
               long* errors) const {
    for (const auto& [t, us] : samples_) {
      if (t >= from && t < to) out->push_back(us);
    }
    *errors += errors_;
  }

 private:
  void Get() {
    if (stop_) return SetIdle();
    ctx_ = Context();
    sent_ = Clock::now();
    if (mode_ == Mode::kBound) {
      stub_->async()->GetJob(ctx_.get(), &job_req_, &job_, [this](const grpc::Status& s) {
        Done(s);
        Get();
      });
      return;
    }
    stub_->async()->GetShard(ctx_.get(), &get_, &grant_, [this](const grpc::Status& s) {
      Done(s);
      get_.clear_reports();
      if (!s.ok() || !grant_.granted()) return Get();
      if (mode_ == Mode::kReportInRequest) {  // the next request carries this report
        keel::rpc::ShardProgress* r = get_.add_reports();
        r->set_grant_id(grant_.id());
        r->set_consumed(grant_.end() - grant_.begin());
        return Get();
      }
      report_.set_grant_id(grant_.id());
      report_.set_consumed(grant_.end() - grant_.begin());
      ctx_ = Context();
      stub_->async()->ReportShard(ctx_.get(), &report_, &ack_, [this](const grpc::Status& r) {
        if (!r.ok()) ++errors_;
        Get();
      });
    });
  }
  void Done(const grpc::Status& s) {
    const Clock::time_point now = Clock::now();
    if (!s.ok()) {
      ++errors_;
      return;
    }
    samples_.emplace_back(now, std::chrono::duration<double, std::micro>(now - sent_).count());
  }
  void SetIdle() {
    std::lock_guard lock(mu_);
    idle_ = true;
    cv_.notify_all();
  }

  std::unique_ptr<keel::rpc::Master::Stub> stub_;
  const Mode mode_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<grpc::ClientContext> ctx_;
  keel::rpc::ShardRequest get_;
  keel::rpc::ShardGrant grant_;
  keel::rpc::ShardProgress report_;
  keel::rpc::Ack ack_;
  keel::rpc::GetJobRequest job_req_;
  keel::rpc::JobStatus job_;
  Clock::time_point sent_;
  std::vector<std::pair<Clock::time_point, double>> samples_;
  long errors_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool idle_ = false;
};

struct Result {
  double per_second = 0, p50_us = 0, p99_us = 0;
  double master_cores = 0;  // CPU the master used while measured, in cores
  long rss_kib = 0, hwm_kib = 0, errors = 0;
};

Result RunPhase(const std::string& keel_bin, int clients, int connections, double seconds,
                uint64_t dataset_size, Mode mode) {
  Master master = StartMaster(keel_bin);
  const std::string target = fmt::format("127.0.0.1:{}", master.port);
  {
    auto stub =
        keel::rpc::Master::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    keel::rpc::DatasetSpec spec;
    spec.set_name("bench");
    spec.set_size(dataset_size);
    spec.set_shard_size(100);
    spec.set_epochs(0);  // unbounded: the clients never run out
    spec.set_shuffle(true);
    keel::rpc::Ack ack;
    auto ctx = Context();
    grpc::Status s = stub->RegisterDataset(ctx.get(), spec, &ack);
    if (!s.ok()) {
      fmt::print(stderr, "register: {}\n", s.error_message());
      std::exit(1);
    }
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < connections; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("keel.bench.connection", i);  // distinct arguments: a connection of its own
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  std::vector<std::unique_ptr<Client>> all;
  all.reserve(static_cast<size_t>(clients));
  for (int i = 0; i < clients; ++i) {
    all.push_back(
        std::make_unique<Client>(channels[static_cast<size_t>(i % connections)], i, mode));
  }
  for (auto& c : all) c->Start();
  const auto warmup = std::chrono::duration<double>(std::min(2.0, seconds / 2));
  std::this_thread::sleep_for(warmup);
  const Clock::time_point from = Clock::now();
  const double cpu_from = CpuSeconds(master.proc->pid());
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const Clock::time_point to = Clock::now();
  const double cpu_to = CpuSeconds(master.proc->pid());
  for (auto& c : all) c->Stop();
  for (auto& c : all) c->WaitStopped();
  Result r;
  std::tie(r.rss_kib, r.hwm_kib) = Memory(master.proc->pid());
  std::vector<double> lat;
  for (auto& c : all) c->Collect(from, to, &lat, &r.errors);
  std::sort(lat.begin(), lat.end());
  const double wall = std::chrono::duration<double>(to - from).count();
  r.per_second = static_cast<double>(lat.size()) / wall;
  r.master_cores = (cpu_to - cpu_from) / wall;
  if (!lat.empty()) {
    r.p50_us = lat[lat.size() / 2];
    r.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  }
  (void)master.proc->Signal(SIGKILL);  // SIGTERM would have it fail the job and log at length
  (void)master.proc->Wait();
  return r;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel shard service benchmark"};
  int clients = 1000, runs = 3, connections = 0;
  double seconds = 5;
  std::string keel_bin = "build/tools/keel/keel";
  app.add_option("--clients", clients, "Concurrent clients")->capture_default_str();
  app.add_option("--connections", connections,
                 "TCP connections the clients share (default: one per client)");
  app.add_option("--seconds", seconds, "Measured time per phase")->capture_default_str();
  app.add_option("--runs", runs, "Rounds of all phases (medians are reported)")
      ->capture_default_str();
  app.add_option("--keel", keel_bin, "The keel binary")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (connections == 0) connections = clients;
  if (clients < 1 || runs < 1 || seconds <= 0 || connections < 1 || connections > clients) {
    fmt::print(stderr,
               "--clients, --runs and --seconds must be positive, --connections 1..clients\n");
    return 2;
  }

  struct Phase {
    std::string name;
    uint64_t size;
    Mode mode;
  };
  const uint64_t kSmall = 1'000'000, kHuge = 10'000'000'000ULL;
  const std::vector<Phase> phases = {
      {"10^6 records, report in request", kSmall, Mode::kReportInRequest},
      {"10^10 records, report in request", kHuge, Mode::kReportInRequest},
      {"10^10 records, separate report", kHuge, Mode::kSeparateReport},
      {"GetJob (sync RPC, reference)", kSmall, Mode::kBound}};
  std::map<std::string, std::vector<Result>> results;
  for (int run = 0; run < runs; ++run) {
    for (const Phase& p : phases) {
      Result r = RunPhase(keel_bin, clients, connections, seconds, p.size, p.mode);
      fmt::print(
          "run {} {:<34} {:>9.0f}/s  p50 {:>7.0f} us  p99 {:>7.0f} us  master {:.2f} "
          "cores, RSS {:>6} KiB (peak {:>6})  errors {}\n",
          run + 1, p.name, r.per_second, r.p50_us, r.p99_us, r.master_cores, r.rss_kib, r.hwm_kib,
          r.errors);
      results[p.name].push_back(r);
    }
  }
  fmt::print("\nmedians over {} runs, {} clients on {} connections, {} s each:\n", runs, clients,
             connections, seconds);
  auto med = [&](const std::string& name, auto field) {
    std::vector<double> v;
    for (const Result& r : results[name]) v.push_back(static_cast<double>(field(r)));
    return Median(v);
  };
  for (const Phase& p : phases) {
    fmt::print(
        "  {:<34} {:>9.0f}/s  p50 {:>7.0f} us  p99 {:>7.0f} us  master {:.2f} cores, "
        "{:>6.0f} per master CPU-second, RSS {:>6.0f} KiB\n",
        p.name, med(p.name, [](const Result& r) { return r.per_second; }),
        med(p.name, [](const Result& r) { return r.p50_us; }),
        med(p.name, [](const Result& r) { return r.p99_us; }),
        med(p.name, [](const Result& r) { return r.master_cores; }),
        med(p.name, [](const Result& r) { return r.per_second / r.master_cores; }),
        med(p.name, [](const Result& r) { return r.rss_kib; }));
  }
  auto rate = [&](size_t i) {
    return med(phases[i].name, [](const Result& r) { return r.per_second; });
  };
  fmt::print(
      "grants/s at 10^10 records: {:.0f} with the report in the request, {:.0f} with a "
      "separate report (goal >= 20000); vs GetJob calls/s (a sync handler): {:.2f}x\n",
      rate(1), rate(2), rate(1) / rate(3));
  fmt::print("master RSS 10^10 / 10^6 records: {:.2f}x\n",
             med(phases[1].name, [](const Result& r) { return r.rss_kib; }) /
                 med(phases[0].name, [](const Result& r) { return r.rss_kib; }));
  return 0;
}
