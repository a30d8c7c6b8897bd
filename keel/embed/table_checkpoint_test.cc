// Table::Save / Table::Load: full and incremental round trips restore every row with its
// optimizer state (training continues identically), deletions carry over, a corrupt or
// mismatched checkpoint is rejected without touching the table, and a process killed in the
// middle of saving leaves the previous save loadable.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "keel/embed/table.h"

namespace keel::embed {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/keel-ckpt-" + name + "-" + std::to_string(::getpid());
  fs::remove_all(dir);
  return dir;
}

TableOptions Options(const std::string& ssd, int64_t ttl = 0) {
  return {.dim = 4,
          .dram_budget_bytes = ssd.empty() ? 0 : 8 * 8 * 200,  // ~8 rows per shard
          .ssd_path = ssd,
          .optimizer = {.kind = OptimizerKind::kAdam, .lr = 0.1f},
          .ttl_steps = ttl,
          .init = "normal(0,1)",
          .seed = 5,
          .shards = 8};
}

// Deterministic training: round r looks up and updates 32 ids drawn from [0, 300).
void Train(Table& t, int from_round, int to_round) {
  for (int r = from_round; r < to_round; ++r) {
    std::mt19937 rng(r);
    std::vector<int64_t> ids(32);
    for (auto& id : ids) id = rng() % 300;
    std::vector<float> out(32 * 4), g(32 * 4);
    for (auto& v : g) v = static_cast<float>(rng() % 100) / 50.0f - 1.0f;
    ASSERT_TRUE(t.Lookup(ids, out.data()).ok());
    ASSERT_TRUE(t.ApplyGradients(ids, g.data()).ok());
  }
}

std::vector<float> All(Table& t) {
  std::vector<int64_t> ids(300);
  for (int i = 0; i < 300; ++i) ids[i] = i;
  std::vector<float> out(300 * 4);
  EXPECT_TRUE(t.Lookup(ids, out.data(), /*train=*/false).ok());
  return out;
}

TEST(TableCheckpoint, FullSaveRestoresRowsAndOptimizerState) {
  const std::string ckpt = TempDir("full");
  auto a = *Table::Create(Options(TempDir("full-ssd-a")));
  Train(*a, 0, 50);
  ASSERT_TRUE(a->Save(ckpt, /*incremental=*/false).ok());
  auto b = *Table::Create(Options(TempDir("full-ssd-b")));
  ASSERT_TRUE(b->Load(ckpt).ok());
  EXPECT_EQ(b->stats().step, 50);
  EXPECT_EQ(b->stats().dram_rows + b->stats().ssd_rows, a->stats().dram_rows + a->stats().ssd_rows);
  EXPECT_EQ(All(*a), All(*b));
  Train(*a, 50, 60);  // Adam's moments came back too: the next steps match bit for bit
  Train(*b, 50, 60);
  EXPECT_EQ(All(*a), All(*b));
}

TEST(TableCheckpoint, IncrementalSavesWriteChangesAndDeletions) {
  const std::string ckpt = TempDir("delta");
  auto a = *Table::Create(Options("", /*ttl=*/15));
  Train(*a, 0, 40);
  ASSERT_TRUE(a->Save(ckpt, false).ok());
  const auto full_size = fs::file_size(ckpt + "/full-000001.rows");
  // Only ids below 20 from now on: the rest expire after 15 steps (deletions).
  for (int r = 0; r < 20; ++r) {
    std::vector<int64_t> ids = {r % 20, (r + 7) % 20};
    std::vector<float> out(8), g(8, 0.5f);
    ASSERT_TRUE(a->Lookup(ids, out.data()).ok());
    ASSERT_TRUE(a->ApplyGradients(ids, g.data()).ok());
  }
  EXPECT_GT(a->stats().expired, 100);
  ASSERT_TRUE(a->Save(ckpt, true).ok());
  Train(*a, 100, 103);
  ASSERT_TRUE(a->Save(ckpt, true).ok());
  ASSERT_TRUE(fs::exists(ckpt + "/delta-000002.rows"));
  ASSERT_TRUE(fs::exists(ckpt + "/delta-000003.rows"));
  EXPECT_LT(fs::file_size(ckpt + "/delta-000003.rows"), full_size / 2);
  auto b = *Table::Create(Options("", 15));
  ASSERT_TRUE(b->Load(ckpt).ok());
  EXPECT_EQ(All(*a), All(*b));
  EXPECT_EQ(a->stats().dram_rows, b->stats().dram_rows);
  EXPECT_EQ(b->stats().step, a->stats().step);
  // An incremental save after a load continues the loaded chain.
  Train(*b, 200, 201);
  ASSERT_TRUE(b->Save(ckpt, true).ok());
  EXPECT_TRUE(fs::exists(ckpt + "/delta-000004.rows"));
  auto c = *Table::Create(Options("", 15));
  ASSERT_TRUE(c->Load(ckpt).ok());
  EXPECT_EQ(All(*b), All(*c));
  // A full save starts a new chain and removes the old files.
  ASSERT_TRUE(c->Save(ckpt, false).ok());
  EXPECT_FALSE(fs::exists(ckpt + "/full-000001.rows"));
  EXPECT_FALSE(fs::exists(ckpt + "/delta-000004.rows"));
}

TEST(TableCheckpoint, CorruptOrMismatchedCheckpointsLeaveTheTableAsItWas) {
  const std::string ckpt = TempDir("corrupt");
  auto a = *Table::Create(Options(""));
  Train(*a, 0, 10);
  ASSERT_TRUE(a->Save(ckpt, false).ok());
  auto b = *Table::Create(Options(""));
  Train(*b, 500, 505);
  const std::vector<float> before = All(*b);
  {
    std::fstream f(ckpt + "/full-000001.rows", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  Status st = b->Load(ckpt);
  EXPECT_NE(st.message().find("CRC mismatch"), std::string::npos) << st;
  EXPECT_EQ(All(*b), before);
  TableOptions other = Options("");
  other.dim = 8;
  auto c = *Table::Create(other);
  ASSERT_TRUE(a->Save(ckpt, false).ok());
  st = c->Load(ckpt);
  EXPECT_NE(st.message().find("dim 4"), std::string::npos) << st;
  EXPECT_NE(b->Load(TempDir("missing")).message().find("MANIFEST"), std::string::npos);
}

// A child process saves a 50,000-row table again and again (full and incremental); it is
// killed at a random moment. Whatever was committed last must load and be exactly one of the
// states the child saved (replayed here).
void Populate(Table& t) {
  std::vector<int64_t> ids(50'000);
  for (int i = 0; i < 50'000; ++i) ids[i] = 1'000'000 + i;
  std::vector<float> out(ids.size() * 4);
  ASSERT_TRUE(t.Lookup(ids, out.data()).ok());
}

void Round(Table& t, int round) {
  Train(t, round, round + 1);
  for (int k = 0; k < 20; ++k) Train(t, 1000 + round * 20 + k, 1000 + round * 20 + k + 1);
}

TEST(TableCheckpoint, KilledMidSaveThePreviousSaveStaysLoadable) {
  const std::string ckpt = TempDir("kill");
  int interrupted = 0;
  for (int trial = 0; trial < 6; ++trial) {
    fs::remove_all(ckpt);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      auto t = *Table::Create(Options(""));
      Populate(*t);
      for (int round = 0;; ++round) {
        Round(*t, round);
        if (!t->Save(ckpt, round % 3 != 0).ok()) ::_exit(3);
        if (::write(fds[1], &round, sizeof(round)) != sizeof(round)) ::_exit(4);
      }
    }
    ::close(fds[1]);
    int last = -1, got;
    while (last < 1 && ::read(fds[0], &got, sizeof(got)) == sizeof(got)) last = got;
    std::this_thread::sleep_for(std::chrono::microseconds(2000 * trial + 500));
    ::kill(child, SIGKILL);
    while (::read(fds[0], &got, sizeof(got)) == sizeof(got)) last = got;
    ::close(fds[0]);
    int status;
    ::waitpid(child, &status, 0);
    ASSERT_GE(last, 1);
    for (const auto& e : fs::directory_iterator(ckpt)) {
      if (e.path().extension() == ".tmp") ++interrupted;  // a save was cut short
    }
    auto loaded = *Table::Create(Options(""));
    ASSERT_TRUE(loaded->Load(ckpt).ok()) << "trial " << trial;
    // The state after round `last`, or after round last + 1 if the kill fell between the
    // commit and the report.
    const int64_t step = loaded->stats().step;
    ASSERT_EQ(step % 21, 0);
    const int64_t rounds = step / 21;
    ASSERT_TRUE(rounds == last + 1 || rounds == last + 2) << step << " " << last;
    auto replay = *Table::Create(Options(""));
    Populate(*replay);
    for (int round = 0; round < rounds; ++round) Round(*replay, round);
    EXPECT_EQ(All(*loaded), All(*replay)) << "trial " << trial;
    EXPECT_EQ(loaded->stats().dram_rows, replay->stats().dram_rows);
  }
  std::printf("saves cut short by the kill: %d of 6\n", interrupted);
}

}  // namespace
}  // namespace keel::embed
