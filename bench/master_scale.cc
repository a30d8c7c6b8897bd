// Master at scale: N simulated agents (real gRPC clients, one thread each, in this process)
// join one round of a real `keel master` process and watch it. Measures
//   - the time from the last Join returning to every agent having received the formed round
//     (all N members) over its Watch stream, and
//   - heartbeats per second the master sustains from many concurrent clients.
//
//   build/bench/keel_master_scale --agents 1000 --keel build/tools/keel/keel
//
// Goal (issue #3): a 1,000-node round forms, and is known to everyone, in under 1 s after
// the last join.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <thread>
#include <vector>

#include "keel/common/subprocess.h"
#include "keel/rpc/channel.h"
#include "keel/rpc/keel.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keel master scale benchmark"};
  int agents = 1000;
  int channels = 8;
  int hb_threads = 16;
  double hb_seconds = 5;
  std::string keel_bin = "build/tools/keel/keel";
  app.add_option("--agents", agents, "Simulated agents")->capture_default_str();
  app.add_option("--channels", channels, "gRPC channels the agents share")->capture_default_str();
  app.add_option("--heartbeat-threads", hb_threads, "Concurrent heartbeat senders")
      ->capture_default_str();
  app.add_option("--heartbeat-seconds", hb_seconds, "Heartbeat phase length")
      ->capture_default_str();
  app.add_option("--keel", keel_bin, "The keel binary")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string log = "/tmp/keel_master_scale.log";
  keel::SpawnOptions so;
  so.argv = {keel_bin,
             "master",
             "--port",
             "0",
             "--token",
             "bench",
             "--nnodes",
             fmt::format("{}", agents),
             "--heartbeat-timeout",
             "600",
             "--rdzv-timeout",
             "600"};
  so.stdout_path = log;
  std::remove(log.c_str());
  auto master = keel::Subprocess::Spawn(so);
  if (!master.ok()) {
    fmt::print(stderr, "{}\n", master.status().ToString());
    return 1;
  }
  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::smatch m;
    if (std::regex_search(text, m, std::regex("listening on port (\\d+)")))
      port = std::stoi(m[1]);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (port == 0) {
    fmt::print(stderr, "master did not start\n");
    return 1;
  }
  std::vector<std::unique_ptr<keel::rpc::Channel>> chans;
  for (int c = 0; c < channels; ++c) {
    auto ch = keel::rpc::Channel::Create({.target = fmt::format("127.0.0.1:{}", port),
                                          .token = "bench",
                                          .default_timeout = std::chrono::seconds(60)});
    chans.push_back(std::move(ch).value());
  }

  std::vector<Clock::time_point> joined(agents), knew(agents);
  std::atomic<int> failures{0};
  std::atomic<int> knowing{0};
  std::vector<std::thread> threads;
  threads.reserve(agents);
  std::vector<std::unique_ptr<grpc::ClientContext>> watch_contexts(agents);
  for (int i = 0; i < agents; ++i) {
    watch_contexts[i] = chans[i % channels]->NewContext(std::chrono::hours(1));
  }
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < agents; ++i) {
    threads.emplace_back([&, i] {
      auto& ch = *chans[i % channels];
      auto stub = keel::rpc::Master::NewStub(ch.grpc_channel());
      keel::rpc::JoinRequest req;
      req.set_node_id(fmt::format("sim-{}", i));
      req.set_address("127.0.0.1");
      req.set_nproc(1);
      req.set_free_port(20000 + i % 40000);
      req.set_hostname("bench");
      keel::rpc::JoinResponse resp;
      auto ctx = ch.NewContext();
      if (!stub->Join(ctx.get(), req, &resp).ok()) {
        ++failures;
        return;
      }
      joined[i] = Clock::now();
      keel::rpc::WatchRequest wreq;
      wreq.set_node_id(req.node_id());
      auto reader = stub->Watch(watch_contexts[i].get(), wreq);
      keel::rpc::JobSnapshot snap;
      while (reader->Read(&snap)) {
        if (snap.state() == keel::rpc::JOB_STATE_RUNNING && snap.members_size() == agents) {
          knew[i] = Clock::now();
          break;
        }
      }
      // Hang up only once everyone knows: a closed stream drops its node and opens a new
      // round, which would hide the formed one from agents that have not read it yet.
      ++knowing;
      while (knowing < agents && Clock::now() - start < std::chrono::seconds(120)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      watch_contexts[i]->TryCancel();
      (void)reader->Finish();
    });
  }
  for (auto& t : threads) t.join();
  if (failures > 0) {
    fmt::print(stderr, "{} joins failed\n", failures.load());
    return 1;
  }
  const auto last_join = *std::max_element(joined.begin(), joined.end());
  const auto last_knew = *std::max_element(knew.begin(), knew.end());
  fmt::print("agents: {}\n", agents);
  fmt::print("all joins done after:            {:8.1f} ms\n", Ms(last_join - start));
  fmt::print("last join -> every agent knows:  {:8.1f} ms  (goal < 1000 ms)\n",
             Ms(last_knew - last_join));

  // Heartbeats: hb_threads clients in a tight loop for hb_seconds.
  std::atomic<int64_t> beats{0}, bad{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> hb;
  hb.reserve(hb_threads);
  for (int t = 0; t < hb_threads; ++t) {
    hb.emplace_back([&, t] {
      auto& ch = *chans[t % channels];
      auto stub = keel::rpc::Master::NewStub(ch.grpc_channel());
      for (int i = t; !stop; i = (i + hb_threads) % agents) {
        keel::rpc::HeartbeatRequest req;
        req.set_node_id(fmt::format("sim-{}", i));
        keel::rpc::HeartbeatResponse resp;
        auto ctx = ch.NewContext();
        if (stub->Heartbeat(ctx.get(), req, &resp).ok())
          ++beats;
        else
          ++bad;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(hb_seconds));
  stop = true;
  for (auto& t : hb) t.join();
  fmt::print("heartbeats/s sustained:          {:8.0f}      ({} clients, {} errors)\n",
             beats / hb_seconds, hb_threads, bad.load());
  (*master)->Terminate(std::chrono::seconds(2));
  return 0;
}
