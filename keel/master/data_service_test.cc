// The shard service over real gRPC: 8 worker threads, each with its own channel to a real
// MasterService, drain 1,000,000 records over 3 epochs in lockstep steps; every few steps
// they save the data position through the checkpoint barrier (all must get the same one),
// and now and then the job "crashes": the model's history goes back to the last checkpoint
// and every worker restores it. Every record of every epoch must appear exactly once in the
// surviving history. Also: bad input gets clear errors and the master keeps serving.
#include <gtest/gtest.h>

#include <barrier>
#include <random>
#include <thread>

#include "keel/data/shard_client.h"
#include "keel/master/master_service.h"
#include "keel/rpc/server.h"

namespace keel::master {
namespace {

class DataServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service_ = std::make_unique<MasterService>(JobOptions{.job_name = "data"}, "tok");
    auto server = rpc::Server::Start({.listen = "127.0.0.1:0"}, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }
  std::unique_ptr<rpc::Channel> Connect() {
    auto c = rpc::Channel::Create(
        {.target = "127.0.0.1:" + std::to_string(server_->port()), .token = "tok"});
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(c).value();
  }
  std::unique_ptr<MasterService> service_;
  std::unique_ptr<rpc::Server> server_;
};

TEST_F(DataServiceTest, BadInputGetsClearErrorsAndTheMasterKeepsServing) {
  auto channel = Connect();
  data::ShardClient c(channel.get());
  const data::DatasetSpec spec{.name = "d", .size = 100, .shard_size = 10, .epochs = 1};
  ASSERT_TRUE(c.Register(spec).ok());
  data::DatasetSpec zero = spec;
  zero.shard_size = 0;
  Status s = c.Register(zero);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("shard size must be > 0"), std::string::npos) << s;
  data::DatasetSpec bigger = spec;
  bigger.size = 200;
  EXPECT_EQ(c.Register(bigger).code(), StatusCode::kFailedPrecondition);
  bool finished = false;
  EXPECT_EQ(c.Next("nope", "w", &finished).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.Report("d", 12345, 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(c.RestorePosition("d", 1, {.epoch = 5}).code(), StatusCode::kInvalidArgument);
  // A bad report carried by a request fails the call, and grants nothing.
  auto bad = c.Next("d", "w", &finished, {{999, 1}});
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound) << bad.status();
  auto g = c.Next("d", "w", &finished);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  EXPECT_EQ((*g)->end - (*g)->begin, 10u);
  EXPECT_EQ((*g)->shard.index, 0u);  // the failed call took no shard
}

TEST_F(DataServiceTest, ExactlyOnceOverGrpcWithCheckpointsAndCrashes) {
  constexpr int kWorkers = 8;
  const data::DatasetSpec spec{.name = "train",
                               .size = 1'000'000,
                               .shard_size = 1000,
                               .epochs = 3,
                               .shuffle = true,
                               .seed = 9};
  std::mutex mu;
  std::vector<std::pair<int64_t, uint64_t>> history;  // what the model consumed
  struct Saved {
    data::Position position;
    size_t history_size = 0;
  };
  std::optional<Saved> checkpoint;
  std::vector<std::optional<data::Position>> got(kWorkers);
  std::atomic<bool> done{false};
  std::atomic<int> crashes{0}, saves{0}, finished_workers{0};
  std::mt19937_64 dice_rng(7);
  int64_t step = 0, round = 1;
  enum class Next { kTrain, kSave, kCrash };
  Next next = Next::kTrain;
  // After each step, one thread decides what all do next (train, save, crash).
  std::barrier sync(kWorkers, [&]() noexcept {
    ++step;
    if (finished_workers.load() == kWorkers) done = true;
    const uint64_t d = dice_rng() % 100;
    next = done ? Next::kTrain : d < 10 ? Next::kSave : d < 14 ? Next::kCrash : Next::kTrain;
  });
  std::vector<std::string> errors(kWorkers);
  auto worker = [&](int rank) {
    auto channel = Connect();
    data::ShardClient c(channel.get());
    if (Status s = c.Register(spec); !s.ok()) errors[rank] = s.ToString();
    std::mt19937_64 rng(rank);
    std::optional<data::Grant> grant;
    uint64_t pos = 0;
    bool finished = false;
    while (!done.load()) {
      if (!finished && !grant) {
        auto g = c.Next(spec.name, "rank " + std::to_string(rank), &finished);
        if (!g.ok()) errors[rank] = g.status().ToString();
        if (g.ok() && g->has_value()) {
          grant = **g;
          pos = grant->shard.offset;
        }
      }
      if (grant) {
        const uint64_t len = grant->end - grant->begin;
        const uint64_t upto = std::min(len, pos + 1 + rng() % 700);
        {
          std::lock_guard<std::mutex> lock(mu);
          for (uint64_t i = pos; i < upto; ++i) {
            history.emplace_back(grant->shard.epoch, grant->begin + i);
          }
        }
        pos = upto;
        if (Status s = c.Report(spec.name, grant->id, pos); !s.ok()) errors[rank] = s.ToString();
        if (pos == len) grant.reset();
      }
      finished_workers += finished && !grant ? 1 : 0;
      sync.arrive_and_wait();  // the step ends; `next` is decided
      finished_workers -= finished && !grant ? 1 : 0;
      if (next == Next::kSave) {
        std::map<uint64_t, uint64_t> consumed;
        if (grant) consumed[grant->id] = pos;
        auto p =
            c.SavePosition(spec.name, step, rank, kWorkers, consumed, std::chrono::seconds(30));
        if (!p.ok()) errors[rank] = p.status().ToString();
        if (p.ok()) got[rank] = *p;
        sync.arrive_and_wait();
        if (rank == 0) {
          for (const auto& g : got) {
            if (g != got[0]) errors[rank] = "ranks got different positions";
          }
          std::lock_guard<std::mutex> lock(mu);
          checkpoint = Saved{*got[0], history.size()};
          ++saves;
        }
        sync.arrive_and_wait();
      } else if (next == Next::kCrash) {
        if (rank == 0) {
          std::lock_guard<std::mutex> lock(mu);
          history.resize(checkpoint ? checkpoint->history_size : 0);
          ++crashes;
        }
        sync.arrive_and_wait();
        const int64_t r = round + 1;
        Status s =
            c.RestorePosition(spec.name, r, checkpoint ? checkpoint->position : data::Position{});
        if (!s.ok()) errors[rank] = s.ToString();
        grant.reset();
        finished = false;
        sync.arrive_and_wait();
        if (rank == 0) ++round;
        sync.arrive_and_wait();
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(kWorkers);
  for (int r = 0; r < kWorkers; ++r) threads.emplace_back(worker, r);
  for (auto& t : threads) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  EXPECT_GT(saves.load(), 10);
  EXPECT_GT(crashes.load(), 5);
  std::vector<std::vector<uint8_t>> seen(3, std::vector<uint8_t>(spec.size));
  for (const auto& [epoch, record] : history) {
    ASSERT_EQ(seen[epoch][record]++, 0) << "record " << record << " twice in epoch " << epoch;
  }
  for (int e = 0; e < 3; ++e) {
    for (uint64_t r = 0; r < spec.size; ++r) ASSERT_EQ(seen[e][r], 1) << e << " " << r;
  }
}

}  // namespace
}  // namespace keel::master

namespace keel::master {
namespace {

// A producer appends ranges to a stream over gRPC while 4 consumers, each with its own
// channel, read it: every appended record reaches exactly one consumer, and the stream ends
// for all of them once the producer closes it and everything is consumed.
TEST_F(DataServiceTest, ProducerAppendsToAStreamWhileConsumersRead) {
  constexpr uint64_t kPerPartition = 100'000;
  auto setup = Connect();
  data::ShardClient admin(setup.get());
  ASSERT_TRUE(
      admin.Register({.name = "clicks", .shard_size = 700, .epochs = 1, .stream = true}).ok());
  EXPECT_EQ(admin.Append("nope", "p", 0, 1).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(admin.Register({.name = "fixed", .size = 10, .shard_size = 5}).ok());
  Status fixed = admin.Append("fixed", "p", 0, 1).status();
  EXPECT_EQ(fixed.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(fixed.message().find("only streams take appended records"), std::string::npos);

  std::thread producer([this] {
    auto channel = Connect();
    data::ShardClient c(channel.get());
    std::mt19937_64 rng(5);
    std::map<std::string, uint64_t> at;
    uint64_t total = 0;
    while (total < 3 * kPerPartition) {
      const std::string p = "part-" + std::to_string(rng() % 3);
      const uint64_t n = std::min(kPerPartition - at[p], 1 + rng() % 5000);
      if (n == 0) continue;
      auto added = c.Append("clicks", p, at[p], at[p] + n);
      ASSERT_TRUE(added.ok()) << added.status();
      ASSERT_EQ(*added, n);
      at[p] += n;
      total += n;
      if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(c.Append("clicks", "part-0", at["part-0"], at["part-0"], true).ok());
  });
  std::vector<std::vector<std::pair<std::string, uint64_t>>> seen(4);
  std::vector<std::thread> consumers;
  consumers.reserve(4);
  for (int w = 0; w < 4; ++w) {
    consumers.emplace_back([this, w, &seen] {
      auto channel = Connect();
      data::ShardClient c(channel.get());
      const std::string me = "rank " + std::to_string(w);
      std::map<uint64_t, uint64_t> done;  // reported with the next request
      for (;;) {
        bool finished = false;
        auto g = c.Next("clicks", me, &finished, done);
        done.clear();
        ASSERT_TRUE(g.ok()) << g.status();
        if (finished) return;
        if (!g->has_value()) {  // the producer has not appended more yet
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        const data::Grant& grant = **g;
        for (uint64_t r = grant.begin + grant.shard.offset; r < grant.end; ++r) {
          seen[w].emplace_back(grant.shard.partition, r);
        }
        if (w % 2) {  // half the consumers report in a call of its own
          ASSERT_TRUE(c.Report("clicks", grant.id, grant.end - grant.begin).ok());
        } else {
          done[grant.id] = grant.end - grant.begin;
        }
      }
    });
  }
  producer.join();
  for (std::thread& t : consumers) t.join();
  std::map<std::string, std::vector<uint8_t>> count;
  for (int p = 0; p < 3; ++p) count["part-" + std::to_string(p)].assign(kPerPartition, 0);
  size_t nonempty = 0;
  for (const auto& s : seen) {
    nonempty += s.empty() ? 0 : 1;
    for (const auto& [p, r] : s) {
      ASSERT_TRUE(count.contains(p)) << p;
      ASSERT_LT(r, kPerPartition);
      ASSERT_EQ(count[p][r]++, 0) << p << " record " << r << " twice";
    }
  }
  for (const auto& [p, v] : count) {
    for (uint64_t r = 0; r < kPerPartition; ++r) ASSERT_EQ(v[r], 1) << p << " " << r;
  }
  EXPECT_EQ(nonempty, 4u);  // every consumer got a share
}

}  // namespace
}  // namespace keel::master
