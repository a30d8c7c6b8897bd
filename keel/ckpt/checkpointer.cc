// Checkpointer: memory slots through the agent, or synchronous files; restore memory-first.
#include "keel/ckpt/checkpointer.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "keel/ckpt/commit.h"
#include "keel/common/logging.h"

namespace keel::ckpt {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return *end == '\0' && n >= 0 && n < (1 << 30) ? static_cast<int>(n) : fallback;
}

std::string EnvString(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// An autobound abstract datagram socket (the agent answers to its address).
StatusOr<int> OpenClientSocket() {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError(errno, "creating the agent client socket");
  sockaddr_un self{};
  self.sun_family = AF_UNIX;
  if (bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof(sa_family_t)) != 0) {
    int err = errno;
    close(fd);
    return ErrnoError(err, "binding the agent client socket");
  }
  return fd;
}

}  // namespace

Checkpointer::Checkpointer(CheckpointerOptions options) : options_(std::move(options)) {}

Checkpointer::~Checkpointer() {
  if (agent_fd_ >= 0) close(agent_fd_);
}

StatusOr<std::unique_ptr<Checkpointer>> Checkpointer::Create(const CheckpointerOptions& options) {
  if (options.dir.empty()) return InvalidArgumentError("the checkpoint dir must not be empty");
  if (options.keep_last < -1) {
    return InvalidArgumentError("keep_last must be >= 0, got " + std::to_string(options.keep_last));
  }
  std::error_code ec;
  CheckpointerOptions o = options;
  if (o.keep_last == -1) o.keep_last = EnvInt("KEEL_CKPT_KEEP_LAST", 3);  // keel run --keep-last
  o.dir = std::filesystem::absolute(options.dir, ec).lexically_normal().string();
  if (ec) return InvalidArgumentError("bad checkpoint dir '" + options.dir + "': " + ec.message());
  if (!o.dir.empty() && o.dir.size() > 1 && o.dir.back() == '/') o.dir.pop_back();
  std::filesystem::create_directories(o.dir, ec);
  if (ec) return InternalError("creating the checkpoint dir '" + o.dir + "': " + ec.message());
  if (o.copy_threads <= 0) {
    o.copy_threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 8);
  }
  std::unique_ptr<Checkpointer> c(new Checkpointer(std::move(o)));
  c->rank_ = EnvInt("RANK", 0);
  c->world_size_ = std::max(1, EnvInt("WORLD_SIZE", 1));
  c->local_rank_ = EnvInt("LOCAL_RANK", 0);
  c->shm_dir_ = EnvString("KEEL_SHM_DIR");
  const std::string sock = EnvString("KEEL_AGENT_SOCKET");
  c->under_agent_ = !sock.empty();
  if (!c->shm_dir_.empty() && sock.size() > 1 && sock[0] == '@') {
    c->agent_address_ = sock.substr(1);
    StatusOr<int> fd = OpenClientSocket();
    if (fd.ok()) {
      c->agent_fd_ = *fd;
      c->writer_ =
          std::make_unique<SlotWriter>(c->shm_dir_, c->local_rank_, c->options_.copy_threads);
    }
  }
  return c;
}

StatusOr<std::string> Checkpointer::AskAgent(const std::string& request, int timeout_ms) {
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  if (agent_address_.size() + 1 > sizeof(to.sun_path)) {
    return InvalidArgumentError("agent socket name too long");
  }
  std::memcpy(to.sun_path + 1, agent_address_.data(), agent_address_.size());
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + agent_address_.size());
  char drain[512];
  while (recv(agent_fd_, drain, sizeof(drain), MSG_DONTWAIT) > 0) {
  }  // a late reply to an earlier request that timed out
  if (sendto(agent_fd_, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&to), len) <
      0) {
    return ErrnoError(errno, "sending to the keel agent");
  }
  pollfd p{agent_fd_, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    return DeadlineExceededError("the keel agent did not answer '" + request + "' within " +
                                 std::to_string(timeout_ms) + " ms");
  }
  char buf[4096];
  ssize_t n = recv(agent_fd_, buf, sizeof(buf) - 1, 0);
  if (n < 0) return ErrnoError(errno, "receiving from the keel agent");
  std::string reply(buf, static_cast<size_t>(n));
  if (reply.rfind("ok", 0) != 0) {
    return FailedPreconditionError("the keel agent refused '" + request + "': " + reply);
  }
  return reply.size() > 3 ? reply.substr(3) : "";
}

void Checkpointer::AddKeelMetadata(int64_t step,
                                   std::map<std::string, std::string>* metadata) const {
  (*metadata)["keel.step"] = std::to_string(step);
  (*metadata)["keel.rank"] = std::to_string(rank_);
  (*metadata)["keel.world_size"] = std::to_string(world_size_);
}

void Checkpointer::LeaveAgent(const Status& why) {
  KEEL_LOG(Warn, "keel.ckpt: the agent's memory tier is unavailable ({}); saving to disk",
           why.ToString());
  close(agent_fd_);
  agent_fd_ = -1;
  writer_.reset();
  pending_slot_ = -1;
}

StatusOr<std::vector<TensorView>> Checkpointer::BeginSave(
    int64_t step, const std::vector<NamedTensor>& layout,
    std::map<std::string, std::string> metadata, bool pin_for_cuda) {
  if (step < 0) return InvalidArgumentError("step must be >= 0, got " + std::to_string(step));
  if (!in_agent_memory()) {
    return FailedPreconditionError("no agent memory tier here (not under keel run): use Save");
  }
  AddKeelMetadata(step, &metadata);
  StatusOr<std::string> slot = AskAgent("ckpt-begin " + std::to_string(local_rank_), 10000);
  if (!slot.ok()) {
    LeaveAgent(slot.status());
    return FailedPreconditionError("the agent did not hand out a memory slot: " +
                                   slot.status().ToString());
  }
  const int s = std::atoi(slot->c_str());
  if (pin_for_cuda) writer_->PinForCuda();
  KEEL_ASSIGN_OR_RETURN(std::vector<TensorView> dst, writer_->Prepare(s, layout, metadata));
  pending_slot_ = s;
  pending_step_ = step;
  return dst;
}

Status Checkpointer::FinishSave(bool persist) {
  if (pending_slot_ < 0 || !in_agent_memory()) {
    return FailedPreconditionError("FinishSave without a successful BeginSave");
  }
  std::ostringstream msg;
  msg << "ckpt-saved " << local_rank_ << ' ' << pending_slot_ << ' ' << pending_step_ << ' '
      << rank_ << ' ' << world_size_ << ' ' << (persist ? 1 : 0) << ' ' << options_.keep_last << ' '
      << options_.dir;
  pending_slot_ = -1;
  return AskAgent(msg.str(), 10000).status();
}

StatusOr<std::string> Checkpointer::Save(int64_t step, const std::vector<NamedTensor>& tensors,
                                         std::map<std::string, std::string> metadata,
                                         bool persist) {
  if (step < 0) return InvalidArgumentError("step must be >= 0, got " + std::to_string(step));
  if (in_agent_memory()) {
    StatusOr<std::vector<TensorView>> dst = BeginSave(step, tensors, metadata);
    if (dst.ok()) {
      if (!dst->empty()) CopyTensorData(tensors, dst->front().data, options_.copy_threads);
      KEEL_RETURN_IF_ERROR(FinishSave(persist));
      return std::string("memory");
    }
    if (in_agent_memory()) return dst.status();  // e.g. no room: the agent still answers
  }
  AddKeelMetadata(step, &metadata);
  if (!persist) return std::string("skipped");
  const std::string step_dir = options_.dir + "/step-" + std::to_string(step);
  std::error_code ec;
  std::filesystem::create_directories(step_dir, ec);
  if (ec) return InternalError("creating '" + step_dir + "': " + ec.message());
  KEEL_RETURN_IF_ERROR(
      WriteSafetensors(step_dir + "/rank-" + std::to_string(rank_) + ".safetensors", tensors,
                       metadata, {.checksum = true, .durable = true, .threads = 1}));
  if (world_size_ == 1) KEEL_RETURN_IF_ERROR(CommitStep(options_.dir, step, 1, options_.keep_last));
  return std::string("disk");
}

StatusOr<std::optional<Checkpoint>> Checkpointer::LoadFromMemory() {
  if (!in_agent_memory()) return std::optional<Checkpoint>();
  KEEL_ASSIGN_OR_RETURN(std::string reply,
                        AskAgent("ckpt-restore " + std::to_string(local_rank_), 60000));
  int slot = -1;
  long long step = -1;
  std::istringstream(reply) >> slot >> step;
  if (slot < 0 || slot > 1 || step < 0) return std::optional<Checkpoint>();
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                        SafetensorsFile::Open(SlotPath(shm_dir_, local_rank_, slot),
                                              SafetensorsFile::Mapping::kCopyOnWrite));
  auto it = file->metadata().find("keel.step");
  if (it == file->metadata().end() || it->second != std::to_string(step)) {
    return DataLossError("memory slot " + std::to_string(slot) + " does not hold step " +
                         std::to_string(step));
  }
  writer_->Detach(slot);  // the tensors now point into this file: never write it in place
  return std::optional<Checkpoint>(Checkpoint{step, "memory", std::move(file)});
}

StatusOr<Checkpoint> Checkpointer::LoadFromDisk(int64_t step) {
  const std::string path = options_.dir + "/step-" + std::to_string(step) + "/rank-" +
                           std::to_string(rank_) + ".safetensors";
  KEEL_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                        SafetensorsFile::Open(path, SafetensorsFile::Mapping::kCopyOnWrite));
  KEEL_RETURN_IF_ERROR(file->VerifyChecksum());
  return Checkpoint{step, "disk", std::move(file)};
}

std::vector<int64_t> Checkpointer::CommittedSteps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.size() == 5 ||
        name.find_first_not_of("0123456789", 5) != std::string::npos) {
      continue;
    }
    if (std::filesystem::exists(e.path() / "COMMITTED", ec)) {
      steps.push_back(std::stoll(name.substr(5)));
    }
  }
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

StatusOr<std::optional<Checkpoint>> Checkpointer::Load() {
  StatusOr<std::optional<Checkpoint>> memory = LoadFromMemory();
  if (memory.ok() && memory->has_value()) return memory;
  if (!memory.ok()) {
    KEEL_LOG(Warn, "keel.ckpt: restoring from memory failed ({}); trying disk",
             memory.status().ToString());
  }
  for (int64_t step : CommittedSteps()) {
    StatusOr<Checkpoint> c = LoadFromDisk(step);
    if (c.ok()) return std::optional<Checkpoint>(std::move(c).value());
    KEEL_LOG(Warn, "keel.ckpt: step {} is unusable ({}); trying an older one", step,
             c.status().ToString());
  }
  return std::optional<Checkpoint>();
}

}  // namespace keel::ckpt
