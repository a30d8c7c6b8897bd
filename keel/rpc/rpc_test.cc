// Real RPCs over loopback: token checks, deadlines, unreachable servers and TLS.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "keel/common/subprocess.h"
#include "keel/rpc/auth.h"
#include "keel/rpc/channel.h"
#include "keel/rpc/diagnostics_service.h"
#include "keel/rpc/server.h"
#include "keel/rpc/status_convert.h"

namespace keel::rpc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

StatusOr<PingResponse> Ping(const Channel& channel, const std::string& payload,
                            std::optional<Duration> timeout = {}) {
  auto stub = Diagnostics::NewStub(channel.grpc_channel());
  PingRequest request;
  request.set_payload(payload);
  PingResponse response;
  auto context = channel.NewContext(timeout);
  KEEL_RETURN_IF_ERROR(FromGrpc(stub->Ping(context.get(), request, &response)));
  return response;
}

std::unique_ptr<Channel> Connect(int port, const std::string& token, TlsOptions tls = {},
                                 const std::string& host = "127.0.0.1") {
  ChannelOptions o;
  o.target = host + ":" + std::to_string(port);
  o.token = token;
  o.tls = std::move(tls);
  o.default_timeout = seconds(5);
  auto c = Channel::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

TEST(RpcTest, GeneratedTokensAreLongRandomHex) {
  std::string a = GenerateToken(), b = GenerateToken();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(RpcTest, PingOverLoopbackWithTheRightToken) {
  std::string token = GenerateToken();
  DiagnosticsService service{TokenAuth(token)};
  auto server = Server::Start({.listen = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  auto channel = Connect((*server)->port(), token);
  StatusOr<PingResponse> r = Ping(*channel, "hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload(), "hello");
  EXPECT_EQ(r->server_version(), "0.1.0");
  EXPECT_GT(r->server_time_unix_nanos(), 0);
}

TEST(RpcTest, MissingOrWrongTokenIsRefused) {
  DiagnosticsService service{TokenAuth("right-token")};
  auto server = Server::Start({.listen = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(server.ok());
  Status wrong = Ping(*Connect((*server)->port(), "wrong-token"), "x").status();
  EXPECT_EQ(wrong.code(), StatusCode::kPermissionDenied) << wrong;
  EXPECT_NE(wrong.message().find("wrong job token"), std::string::npos);
  Status missing = Ping(*Connect((*server)->port(), ""), "x").status();
  EXPECT_EQ(missing.code(), StatusCode::kUnauthenticated) << missing;
  // A token that is a prefix of the right one is still wrong.
  EXPECT_EQ(Ping(*Connect((*server)->port(), "right-toke"), "x").status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(Ping(*Connect((*server)->port(), "right-token"), "x").ok());
}

// A Diagnostics server that answers too late, to exercise client deadlines.
class SlowService final : public Diagnostics::Service {
  grpc::Status Ping(grpc::ServerContext* context, const PingRequest*, PingResponse*) override {
    while (!context->IsCancelled()) std::this_thread::sleep_for(milliseconds(5));
    return grpc::Status::CANCELLED;
  }
};

TEST(RpcTest, DeadlinesBoundEveryCall) {
  SlowService service;
  auto server = Server::Start({.listen = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(server.ok());
  auto channel = Connect((*server)->port(), "t");
  auto start = std::chrono::steady_clock::now();
  Status s = Ping(*channel, "x", milliseconds(100)).status();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
}

TEST(RpcTest, UnreachableServerIsUnavailableWithinTheTimeout) {
  // Bind a port, then free it: nothing listens there.
  int port;
  {
    DiagnosticsService service{TokenAuth("t")};
    auto server = Server::Start({.listen = "127.0.0.1:0"}, {&service});
    ASSERT_TRUE(server.ok());
    port = (*server)->port();
  }
  auto channel = Connect(port, "t");
  Status s = channel->WaitForConnected(milliseconds(200));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos);
  Status call = Ping(*channel, "x", milliseconds(300)).status();
  EXPECT_TRUE(call.code() == StatusCode::kUnavailable ||
              call.code() == StatusCode::kDeadlineExceeded)
      << call;
}

TEST(RpcTest, BadOptionsAreClearErrors) {
  EXPECT_EQ(Channel::Create({}).status().code(), StatusCode::kInvalidArgument);
  ChannelOptions o{.target = "localhost:1", .tls = {.cert_file = "/x.pem"}};
  Status s = Channel::Create(o).status();
  EXPECT_NE(s.message().find("--tls-cert and --tls-key"), std::string::npos) << s;
  o.tls = {.ca_file = "/no/such/ca.pem"};
  s = Channel::Create(o).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("--tls-ca '/no/such/ca.pem'"), std::string::npos) << s;
  DiagnosticsService service{TokenAuth("t")};
  s = Server::Start({.listen = "256.1.1.1:99999"}, {&service}).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("256.1.1.1:99999"), std::string::npos);
}

TEST(RpcTest, ListeningTwiceOnOnePortFails) {
  DiagnosticsService service{TokenAuth("t")};
  auto first = Server::Start({.listen = "127.0.0.1:0"}, {&service});
  ASSERT_TRUE(first.ok());
  DiagnosticsService other{TokenAuth("t")};
  auto second =
      Server::Start({.listen = "127.0.0.1:" + std::to_string((*first)->port())}, {&other});
  EXPECT_FALSE(second.ok());
}

// Makes a CA and a server certificate for localhost/127.0.0.1 with the openssl CLI.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/keel_tls_" + std::to_string(getpid());
    std::string script =
        "set -e; mkdir -p " + dir_ + "; cd " + dir_ +
        "; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1"
        " -subj /CN=keel-test-ca 2>/dev/null"
        "; openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr"
        " -subj /CN=localhost 2>/dev/null"
        "; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext"
        "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out server.pem -days 1 -extfile san.ext 2>/dev/null";
    SpawnOptions o;
    o.argv = {"sh", "-c", script};
    auto p = Subprocess::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE((*p)->Wait().success()) << "openssl failed";
  }
  void TearDown() override {
    SpawnOptions o;
    o.argv = {"rm", "-rf", dir_};
    auto p = Subprocess::Spawn(o);
    if (p.ok()) (*p)->Wait();
  }
  std::string dir_;
};

TEST_F(TlsTest, TlsServerAcceptsVerifiedClientsOnly) {
  DiagnosticsService service{TokenAuth("tok")};
  ServerOptions so{.listen = "127.0.0.1:0",
                   .tls = {.cert_file = dir_ + "/server.pem", .key_file = dir_ + "/server.key"}};
  auto server = Server::Start(so, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  int port = (*server)->port();

  auto tls_channel = Connect(port, "tok", {.ca_file = dir_ + "/ca.pem"}, "localhost");
  StatusOr<PingResponse> r = Ping(*tls_channel, "secure");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload(), "secure");
  // Token checks still apply over TLS.
  EXPECT_EQ(
      Ping(*Connect(port, "bad", {.ca_file = dir_ + "/ca.pem"}, "localhost"), "x").status().code(),
      StatusCode::kPermissionDenied);
  // A plaintext client cannot talk to a TLS server.
  EXPECT_FALSE(Ping(*Connect(port, "tok"), "x", milliseconds(500)).ok());
  // A client that trusts another CA (here: the server cert itself is no CA) is refused.
  EXPECT_FALSE(Ping(*Connect(port, "tok", {.ca_file = dir_ + "/ca.key"}, "localhost"), "x").ok());
}

}  // namespace
}  // namespace keel::rpc
