// CheckpointHost with a real keel::ckpt::Checkpointer talking to it over an abstract Unix
// socket (as a worker does): slot assignment, newest-wins persisting, commit through the
// "master" callbacks, restore from memory without a copy, and bad requests.
#include "keel/agent/ckpt_host.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "keel/ckpt/checkpointer.h"

namespace keel::agent {
namespace {

namespace fs = std::filesystem;

// Serves `host` on @name until stopped, like the agent's socket loop.
class Server {
 public:
  Server(CheckpointHost* host, const std::string& name) : host_(host) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
              0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }

 private:
  void Loop() {
    char buf[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      sockaddr_un from{};
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(fd_, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) continue;
      const std::string reply = host_->HandleRequest(std::string(buf, static_cast<size_t>(n)));
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  CheckpointHost* host_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class CheckpointHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/keel_host_" + std::to_string(getpid());
    fs::create_directories(root_ + "/shm");
    setenv("KEEL_SHM_ROOT", (root_ + "/shm").c_str(), 1);
    id_ = "testhost-" + std::to_string(getpid()) + "-abcd";
  }
  void TearDown() override {
    for (const char* k : {"KEEL_SHM_ROOT", "KEEL_SHM_DIR", "KEEL_AGENT_SOCKET", "RANK",
                          "LOCAL_RANK", "WORLD_SIZE"}) {
      unsetenv(k);
    }
    fs::remove_all(root_);
  }
  // A worker's Checkpointer for local rank 0 of a one-rank job, served by `host`.
  std::unique_ptr<ckpt::Checkpointer> Worker(CheckpointHost* host, const std::string& sock) {
    setenv("KEEL_SHM_DIR", host->shm_dir().c_str(), 1);
    setenv("KEEL_AGENT_SOCKET", ("@" + sock).c_str(), 1);
    setenv("RANK", "0", 1);
    setenv("LOCAL_RANK", "0", 1);
    setenv("WORLD_SIZE", "1", 1);
    auto c = ckpt::Checkpointer::Create({.dir = root_ + "/ckpt", .keep_last = 2});
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE((*c)->in_agent_memory());
    return std::move(c).value();
  }
  static TensorView View(std::vector<float>* v) {
    return TensorView::Contiguous(v->data(), DType::kFloat32, {static_cast<int64_t>(v->size())});
  }

  std::string root_, id_;
};

TEST_F(CheckpointHostTest, HandsOutTheSlotThatIsNeitherNewestNorPersisting) {
  auto host = CheckpointHost::Create(id_, 2, {});
  ASSERT_TRUE(host.ok()) << host.status();
  CheckpointHost& h = **host;
  EXPECT_EQ(h.shm_dir(), root_ + "/shm/keel-" + id_);
  const std::string dir = root_ + "/ckpt";
  EXPECT_EQ(h.HandleRequest("ckpt-begin 0"), "ok 0");
  EXPECT_EQ(h.HandleRequest("ckpt-saved 0 0 5 0 2 0 3 " + dir), "ok");
  EXPECT_EQ(h.HandleRequest("ckpt-begin 0"), "ok 1");  // not the newest (step 5)
  EXPECT_EQ(h.HandleRequest("ckpt-saved 0 1 6 0 2 0 3 " + dir), "ok");
  EXPECT_EQ(h.HandleRequest("ckpt-begin 0"), "ok 0");  // the older one
  // Local rank 1 has its own slots.
  EXPECT_EQ(h.HandleRequest("ckpt-begin 1"), "ok 0");
  EXPECT_EQ(h.counters().saves, 2);
}

TEST_F(CheckpointHostTest, RejectsBadRequestsAndKeepsServing) {
  auto host = CheckpointHost::Create(id_, 1, {});
  ASSERT_TRUE(host.ok()) << host.status();
  CheckpointHost& h = **host;
  const std::string dir = root_ + "/ckpt";
  for (const std::string& bad : std::vector<std::string>{
           "ckpt-begin 1", "ckpt-begin -1", "ckpt-begin x", "ckpt-nope 0", "ckpt-saved 0 0 5",
           "ckpt-saved 0 2 5 0 1 1 3 " + dir, "ckpt-saved 0 0 -5 0 1 1 3 " + dir,
           "ckpt-saved 0 0 5 1 1 1 3 " + dir, "ckpt-saved 0 0 5 0 1 2 3 " + dir,
           "ckpt-saved 0 0 5 0 1 1 3 relative/dir", ""}) {
    EXPECT_EQ(h.HandleRequest(bad).rfind("error ", 0), 0u) << bad;
  }
  // "saved" for a slot that was never handed out.
  const std::string r = h.HandleRequest("ckpt-saved 0 1 5 0 1 1 3 " + dir);
  EXPECT_NE(r.find("ckpt-begin first"), std::string::npos) << r;
  EXPECT_EQ(h.HandleRequest("ckpt-begin 0"), "ok 0");
}

TEST_F(CheckpointHostTest, SavesPersistCommitAndRestoreFromMemoryWithoutACopy) {
  std::atomic<int> reports{0};
  int64_t master_step = -1;
  CheckpointHost::Master master;
  master.report = [&](const rpc::CheckpointReport& r) -> StatusOr<bool> {
    ++reports;
    return r.has_persisted();  // a one-rank job: every persisted file completes its step
  };
  master.restore_step = [&]() -> StatusOr<int64_t> { return master_step; };
  auto host = CheckpointHost::Create(id_, 1, master);
  ASSERT_TRUE(host.ok()) << host.status();
  const std::string sock = "keel-test-" + id_;
  Server server(host->get(), sock);
  auto worker = Worker(host->get(), sock);

  std::vector<float> w(100000);
  std::iota(w.begin(), w.end(), 1.f);
  for (int64_t step : {10, 20, 30}) {
    w[0] = static_cast<float>(step);
    auto where = worker->Save(step, {{"model/w", View(&w)}}, {{"note", "hi"}});
    ASSERT_TRUE(where.ok()) << where.status();
    EXPECT_EQ(*where, "memory");
  }
  (*host)->Flush(std::chrono::seconds(30));
  const std::string dir = root_ + "/ckpt";
  // Newest wins: step 30 is persisted and committed (earlier ones may have been dropped).
  EXPECT_TRUE(fs::exists(dir + "/step-30/COMMITTED"));
  std::ifstream latest(dir + "/latest");
  std::string text;
  latest >> text;
  EXPECT_EQ(text, "30");
  const auto c = (*host)->counters();
  EXPECT_EQ(c.saves, 3);
  EXPECT_EQ(c.persisted_files + c.dropped_steps, 3);
  EXPECT_GT(reports.load(), 0);

  // A restarted worker restores the master's step from memory, pointing into the slot. (The
  // newest step is always in memory; which older one is depends on what was dropped.)
  master_step = 30;
  auto again = Worker(host->get(), sock);
  auto got = again->Load();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->step, 30);
  EXPECT_EQ((*got)->source, "memory");
  auto view = (*got)->file->Get("model/w");
  ASSERT_TRUE(view.ok());
  const float* data = static_cast<const float*>(view->data);
  EXPECT_EQ(data[0], 30.f);
  EXPECT_EQ(data[99999], 100000.f);
  EXPECT_EQ((*got)->file->metadata().at("note"), "hi");
  // The next two saves go to the other slot, then replace (not change) the restored file.
  w[0] = 40.f;
  ASSERT_TRUE(again->Save(40, {{"model/w", View(&w)}}, {}).ok());
  w[0] = 50.f;
  ASSERT_TRUE(again->Save(50, {{"model/w", View(&w)}}, {}).ok());
  EXPECT_EQ(data[0], 30.f);

  // Nothing in memory for this round: the newest committed step on disk.
  master_step = -1;
  (*host)->Flush(std::chrono::seconds(30));
  auto disk = again->Load();
  ASSERT_TRUE(disk.ok()) << disk.status();
  ASSERT_TRUE(disk->has_value());
  EXPECT_EQ((*disk)->source, "disk");
  EXPECT_EQ((*disk)->step, 50);
  const std::vector<int64_t> kept = again->CommittedSteps();
  ASSERT_EQ(kept.size(), 2u);  // keep_last 2
  EXPECT_EQ(kept[0], 50);
}

TEST_F(CheckpointHostTest, WithoutAnAgentSavesAreSynchronousAndCorruptionFallsBack) {
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "1", 1);
  auto c = ckpt::Checkpointer::Create({.dir = root_ + "/plain", .keep_last = 0});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE((*c)->in_agent_memory());
  std::vector<float> w(64, 1.f);
  ASSERT_EQ(*(*c)->Save(1, {{"w", View(&w)}}, {}), "disk");
  w[5] = 2.f;
  ASSERT_EQ(*(*c)->Save(2, {{"w", View(&w)}}, {}), "disk");
  EXPECT_EQ(*(*c)->Save(3, {{"w", View(&w)}}, {}, /*persist=*/false), "skipped");
  // Corrupt one byte of step 2's data: step 1 is used.
  const std::string file = root_ + "/plain/step-2/rank-0.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) - 3));
    f.put('\x7f');
  }
  auto got = (*c)->Load();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->step, 1);
  EXPECT_EQ((*got)->source, "disk");
  EXPECT_EQ((*c)->Save(-1, {}, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ckpt::Checkpointer::Create({.dir = ""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ckpt::Checkpointer::Create({.dir = root_, .keep_last = -2}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keel::agent
