// JobController on a ManualClock: every rendezvous, failure and end-of-job transition.
#include "keel/master/job_controller.h"

#include <gtest/gtest.h>

namespace keel::master {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

JoinInfo Node(const std::string& id, int nproc = 2) {
  return {.node_id = id,
          .hostname = "host-" + id,
          .address = "10.0.0." + id.substr(1),
          .nproc = nproc,
          .free_port = 20000 + static_cast<int>(id.back())};
}

class JobControllerTest : public ::testing::Test {
 protected:
  void Make(JobOptions o) { job_ = std::make_unique<JobController>(std::move(o), &clock_); }
  void Join(const std::string& id, int nproc = 2) {
    StatusOr<int64_t> r = job_->Join(Node(id, nproc));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  std::vector<std::string> WorldIds() const {
    std::vector<std::string> ids;
    for (const Member& m : job_->snapshot().world) ids.push_back(m.node_id);
    return ids;
  }
  JobState state() const { return job_->snapshot().state; }
  FailureInfo Failure(int rank, int code) {
    return {.rank = rank,
            .exit_code = code,
            .reason = "exited with code " + std::to_string(code),
            .stderr_tail = "boom"};
  }

  ManualClock clock_;
  std::unique_ptr<JobController> job_;
};

TEST_F(JobControllerTest, SingleNodeRoundFormsAtOnceWithRanksAndMasterAddress) {
  Make({.min_nodes = 1, .max_nodes = 1});
  EXPECT_EQ(state(), JobState::kRendezvous);
  Join("n1", 2);
  const Snapshot& s = job_->snapshot();
  EXPECT_EQ(s.state, JobState::kRunning);
  EXPECT_EQ(s.round, 1);
  EXPECT_EQ(s.world_size, 2);
  EXPECT_EQ(s.master_addr, "10.0.0.1");
  EXPECT_EQ(s.master_port, 20000 + '1');
  ASSERT_EQ(s.world.size(), 1u);
  EXPECT_EQ(s.world[0].group_rank, 0);
  EXPECT_EQ(s.world[0].first_rank, 0);
}

TEST_F(JobControllerTest, RoundWithMinNodesWaitsForLastCall) {
  Make({.min_nodes = 2, .max_nodes = 4, .last_call = seconds(3)});
  Join("n1");
  clock_.Advance(seconds(1));
  Join("n2");
  clock_.Advance(milliseconds(2999));
  job_->Tick();
  EXPECT_EQ(state(), JobState::kRendezvous);  // 2 >= min, but n2 joined < 3 s ago
  clock_.Advance(milliseconds(1));
  job_->Tick();
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(WorldIds(), (std::vector<std::string>{"n1", "n2"}));
}

TEST_F(JobControllerTest, RoundFormsAtOnceWhenMaxNodesJoined) {
  Make({.min_nodes = 1, .max_nodes = 2, .last_call = seconds(60)});
  Join("n1");
  EXPECT_EQ(state(), JobState::kRendezvous);
  Join("n2");
  EXPECT_EQ(state(), JobState::kRunning);
}

TEST_F(JobControllerTest, GlobalRanksArePrefixSumsOfProcessCounts) {
  Make({.min_nodes = 3, .max_nodes = 3});
  Join("n1", 2);
  Join("n2", 3);
  Join("n3", 1);
  const Snapshot& s = job_->snapshot();
  ASSERT_EQ(s.world.size(), 3u);
  EXPECT_EQ(s.world[1].first_rank, 2);
  EXPECT_EQ(s.world[2].first_rank, 5);
  EXPECT_EQ(s.world_size, 6);
}

TEST_F(JobControllerTest, FailureReformsAtOnceWhenEveryMemberRejoinsAndKeepsRanks) {
  Make({.min_nodes = 1,
        .max_nodes = 3,
        .last_call = seconds(30),
        .heartbeat_timeout = seconds(120),
        .max_restarts = 3});
  Join("n1");
  Join("n2");
  clock_.Advance(seconds(30));
  job_->Tick();
  ASSERT_EQ(state(), JobState::kRunning);
  const int64_t v = job_->snapshot().version;
  ASSERT_TRUE(job_->ReportFailure("n2", 1, Failure(3, 1)).ok());
  EXPECT_EQ(state(), JobState::kRendezvous);
  EXPECT_EQ(job_->snapshot().round, 2);
  EXPECT_EQ(job_->snapshot().restart_count, 1);
  EXPECT_GT(job_->snapshot().version, v);
  Join("n2");  // the failed node is back first ...
  EXPECT_EQ(state(), JobState::kRendezvous);
  Join("n1");  // ... and once every member is back, no last-call wait
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(WorldIds(), (std::vector<std::string>{"n1", "n2"}));  // ranks unchanged
}

TEST_F(JobControllerTest, TooManyFailuresFailTheJobNamingRankNodeAndReason) {
  Make({.min_nodes = 1, .max_nodes = 1, .max_restarts = 1});
  Join("n1");
  ASSERT_TRUE(job_->ReportFailure("n1", 1, Failure(1, 3)).ok());
  Join("n1");
  ASSERT_EQ(state(), JobState::kRunning);
  ASSERT_TRUE(job_->ReportFailure("n1", 2, Failure(0, 7)).ok());
  EXPECT_EQ(state(), JobState::kFailed);
  const std::string& msg = job_->snapshot().message;
  EXPECT_NE(msg.find("more than --max-restarts 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exited with code 7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("boom"), std::string::npos) << msg;
  EXPECT_EQ(job_->Join(Node("n9")).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(JobControllerTest, StaleFailureReportsAreIgnored) {
  Make({.min_nodes = 1, .max_nodes = 1});
  Join("n1");
  ASSERT_TRUE(job_->ReportFailure("n1", 1, Failure(0, 1)).ok());
  Join("n1");
  ASSERT_TRUE(job_->ReportFailure("n1", 1, Failure(1, 1)).ok());  // round 1 is over
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(job_->snapshot().restart_count, 1);
  EXPECT_EQ(job_->ReportFailure("nobody", 2, Failure(0, 1)).code(), StatusCode::kNotFound);
}

TEST_F(JobControllerTest, LostMemberShrinksTheWorldWithoutCountingARestart) {
  Make({.min_nodes = 1, .max_nodes = 2, .last_call = seconds(3)});
  Join("n1");
  Join("n2");
  ASSERT_EQ(state(), JobState::kRunning);
  job_->Leave("n2", "watch stream closed");
  EXPECT_EQ(state(), JobState::kRendezvous);
  Join("n1");
  EXPECT_EQ(state(), JobState::kRendezvous);  // n2 is not coming back: last call applies
  clock_.Advance(seconds(3));
  job_->Tick();
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(WorldIds(), (std::vector<std::string>{"n1"}));
  EXPECT_EQ(job_->snapshot().world_size, 2);
  EXPECT_EQ(job_->snapshot().restart_count, 0);
}

TEST_F(JobControllerTest, SilentNodesAreDroppedAfterTheHeartbeatTimeout) {
  Make({.min_nodes = 1, .max_nodes = 2, .last_call = seconds(1), .heartbeat_timeout = seconds(10)});
  Join("n1");
  Join("n2");
  clock_.Advance(seconds(6));
  EXPECT_TRUE(job_->Heartbeat("n1", {{.rank = 0, .pid = 42, .rss_bytes = 1 << 20}}));
  clock_.Advance(seconds(4));
  job_->Tick();  // n2 silent for 10 s: dropped; n1 heard from 4 s ago
  EXPECT_TRUE(job_->known("n1"));
  EXPECT_FALSE(job_->known("n2"));
  EXPECT_FALSE(job_->Heartbeat("n2", {}));  // it must re-join
  EXPECT_EQ(state(), JobState::kRendezvous);
  ASSERT_EQ(job_->Nodes().size(), 1u);
  EXPECT_EQ(job_->Nodes()[0].workers.at(0).pid, 42);
}

TEST_F(JobControllerTest, NewcomerGrowsTheWorldAtTheNextRound) {
  Make({.min_nodes = 1, .max_nodes = 2, .last_call = seconds(3)});
  Join("n1");
  clock_.Advance(seconds(3));
  job_->Tick();
  ASSERT_EQ(WorldIds(), (std::vector<std::string>{"n1"}));
  Join("n2");
  EXPECT_EQ(state(), JobState::kRendezvous);
  EXPECT_EQ(job_->snapshot().round, 2);
  Join("n1");  // n2 already waits: max reached
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(WorldIds(), (std::vector<std::string>{"n1", "n2"}));
  EXPECT_EQ(job_->snapshot().restart_count, 0);
}

TEST_F(JobControllerTest, NewcomerBeyondMaxWaitsWithoutDisturbingTheRound) {
  Make({.min_nodes = 1, .max_nodes = 1});
  Join("n1");
  const int64_t round = job_->snapshot().round;
  Join("n2");
  EXPECT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(job_->snapshot().round, round);
}

TEST_F(JobControllerTest, NodesAreAdmittedInMultiplesOfTheNodeUnit) {
  Make({.min_nodes = 2, .max_nodes = 4, .node_unit = 2, .last_call = seconds(1)});
  Join("n1");
  Join("n2");
  Join("n3");
  clock_.Advance(seconds(1));
  job_->Tick();
  ASSERT_EQ(state(), JobState::kRunning);
  EXPECT_EQ(WorldIds(), (std::vector<std::string>{"n1", "n2"}));
  int waiting = 0;
  for (const NodeView& v : job_->Nodes()) waiting += v.state == "waiting";
  EXPECT_EQ(waiting, 1);
}

TEST_F(JobControllerTest, RendezvousTimesOutClearlyBelowMinNodes) {
  Make({.min_nodes = 2,
        .max_nodes = 2,
        .rdzv_timeout = seconds(60),
        .heartbeat_timeout = seconds(120)});
  Join("n1");
  clock_.Advance(seconds(59));
  job_->Tick();
  EXPECT_EQ(state(), JobState::kRendezvous);
  clock_.Advance(seconds(1));
  job_->Tick();
  EXPECT_EQ(state(), JobState::kFailed);
  EXPECT_NE(job_->snapshot().message.find("1 node(s) joined, fewer than the minimum 2"),
            std::string::npos)
      << job_->snapshot().message;
}

TEST_F(JobControllerTest, JobSucceedsWhenEveryMemberReportsSuccess) {
  Make({.min_nodes = 2, .max_nodes = 2});
  Join("n1");
  Join("n2");
  ASSERT_TRUE(job_->ReportSuccess("n1", 1).ok());
  EXPECT_EQ(state(), JobState::kRunning);
  ASSERT_TRUE(job_->ReportSuccess("n2", 1).ok());
  EXPECT_EQ(state(), JobState::kSucceeded);
  EXPECT_NE(job_->snapshot().message.find("all 4 workers"), std::string::npos);
  job_->Leave("n1", "agent exited");  // leaving after the end changes nothing
  EXPECT_EQ(state(), JobState::kSucceeded);
}

TEST_F(JobControllerTest, MalformedJoinsAreRejectedAndChangeNothing) {
  Make({.min_nodes = 1, .max_nodes = 1});
  JoinInfo bad = Node("n1");
  bad.nproc = 0;
  EXPECT_EQ(job_->Join(bad).status().code(), StatusCode::kInvalidArgument);
  bad = Node("n1");
  bad.free_port = 70000;
  EXPECT_EQ(job_->Join(bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(job_->Join(JoinInfo{}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(job_->Nodes().empty());
  EXPECT_EQ(state(), JobState::kRendezvous);
}

TEST_F(JobControllerTest, GoodputCountsOnlyTheRoundWhoseWorkIsKept) {
  Make({.min_nodes = 1, .max_nodes = 1, .heartbeat_timeout = seconds(100)});
  clock_.Advance(seconds(2));  // rendezvous: lost
  Join("n1");
  clock_.Advance(seconds(4));  // round 1 runs, then fails: lost
  ASSERT_TRUE(job_->ReportFailure("n1", 1, Failure(0, 1)).ok());
  Join("n1");
  clock_.Advance(seconds(6));  // round 2 runs: kept
  EXPECT_DOUBLE_EQ(job_->Goodput(), 6.0 / 12.0);
  ASSERT_TRUE(job_->ReportSuccess("n1", 2).ok());
  clock_.Advance(seconds(100));  // after the end nothing changes
  EXPECT_DOUBLE_EQ(job_->Goodput(), 0.5);
}

TEST_F(JobControllerTest, AbortFailsARunningJobOnceAndNamesTheReason) {
  Make({.min_nodes = 1, .max_nodes = 1});
  Join("n1");
  job_->Abort("master stopped by SIGTERM");
  EXPECT_EQ(state(), JobState::kFailed);
  EXPECT_EQ(job_->snapshot().message, "job failed: master stopped by SIGTERM");
  const int64_t v = job_->snapshot().version;
  job_->Abort("again");
  EXPECT_EQ(job_->snapshot().version, v);
}

TEST(JobOptionsTest, ValidationNamesTheFlag) {
  JobOptions inverted{.min_nodes = 3, .max_nodes = 2};
  EXPECT_NE(inverted.Validate().message().find("--nnodes"), std::string::npos);
  JobOptions odd{.min_nodes = 1, .max_nodes = 3, .node_unit = 2};
  EXPECT_NE(odd.Validate().message().find("--node-unit"), std::string::npos);
  JobOptions negative{.max_restarts = -1};
  EXPECT_FALSE(negative.Validate().ok());
  EXPECT_TRUE(JobOptions{}.Validate().ok());
}

}  // namespace
}  // namespace keel::master
