// `keel mem record -o OUT.trace.gz [--min-bytes N] -- PROGRAM ARGS...` (docs/mem.md,
// "Recording"): runs the program with the LD_PRELOAD recorder (keel/mem/recorder) and, for
// Python programs, a sitecustomize hook that turns on PyTorch's CUDA memory history when torch
// is imported on a machine with a GPU; afterwards it turns what they wrote into keel traces.
//
// Note [Which process is recorded]: the recorder writes one file per process that loads it
// (PREFIX.PID). The trace kept is the direct child's when it recorded anything, else the
// largest one (a shell or launcher in front of the program); the choice is printed.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "keel/common/subprocess.h"
#include "keel/mem/trace.h"
#include "tools/keel/command.h"
#include "tools/keel/mem_cli.h"

namespace keel::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRecorderName = "libkeel_mem_record.so";

// Written as sitecustomize.py into a directory put first on the child's PYTHONPATH.
constexpr const char* kSiteCustomize =
    R"PY(# Written by `keel mem record` (docs/mem.md, "Recording").
# When the program imports torch and CUDA is available, record PyTorch's CUDA memory history
# and dump torch.cuda.memory._snapshot() at exit to $KEEL_MEM_SNAPSHOT_OUT.<pid>.pickle.
# Then run the sitecustomize this one shadows, if any.
import atexit, importlib.abc, importlib.machinery, importlib.util, os, sys

_OUT = os.environ.get("KEEL_MEM_SNAPSHOT_OUT")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _keel_start(torch):
    try:
        if not torch.cuda.is_available():
            return
        mem = torch.cuda.memory
        try:
            mem._record_memory_history(enabled="all", max_entries=2000000)
        except TypeError:  # torch < 2.1
            mem._record_memory_history(True, trace_alloc_max_entries=2000000)
    except Exception as e:  # recording must never break the program
        sys.stderr.write(f"keel mem record: CUDA memory history not started: {e}\n")
        return

    def dump():
        import pickle
        try:
            with open(f"{_OUT}.{os.getpid()}.pickle", "wb") as f:
                pickle.dump(mem._snapshot(), f)
        except Exception as e:
            sys.stderr.write(f"keel mem record: CUDA snapshot not written: {e}\n")

    atexit.register(dump)


class _KeelTorchHook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def run(module):
            exec_module(module)
            _keel_start(module)

        spec.loader.exec_module = run
        return spec


if _OUT:
    sys.meta_path.insert(0, _KeelTorchHook())

_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _HERE])
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
)PY";

fs::path ExeDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : exe.parent_path();
}

// The first existing file among `candidates`, or NotFound listing them.
StatusOr<fs::path> FirstExisting(const std::vector<fs::path>& candidates, const char* what,
                                 const char* hint) {
  std::string tried;
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::absolute(p).lexically_normal();
    tried += "\n  " + p.lexically_normal().string();
  }
  return NotFoundError(fmt::format("{} not found; looked at:{}\n{}", what, tried, hint));
}

StatusOr<fs::path> FindRecorder(const RecordFlags& f) {
  if (!f.recorder.empty()) return FirstExisting({f.recorder}, "--recorder library", "");
  std::vector<fs::path> c;
  if (const char* env = getenv("KEEL_MEM_RECORDER")) c.emplace_back(env);
  const fs::path dir = ExeDir();
  c.push_back(dir / "../../keel/mem" / kRecorderName);  // build tree: build/tools/keel/keel
  c.push_back(dir / "../lib" / kRecorderName);          // installed: PREFIX/bin/keel
  c.push_back(dir / kRecorderName);
  return FirstExisting(c, kRecorderName,
                       "build it (cmake --build build --target keel_mem_record) or pass "
                       "--recorder PATH");
}

StatusOr<fs::path> FindConverter() {
  std::vector<fs::path> c;
  if (const char* env = getenv("KEEL_MEM_SNAPSHOT_CONVERTER")) c.emplace_back(env);
  c.push_back(fs::path(KEEL_SOURCE_DIR) / "python/keel/mem/snapshot_to_trace.py");
  c.push_back(ExeDir() / "../share/keel/snapshot_to_trace.py");
  return FirstExisting(c, "snapshot_to_trace.py", "set KEEL_MEM_SNAPSHOT_CONVERTER");
}

void PrependPath(std::vector<std::string>* env, const char* key, const std::string& value,
                 char sep) {
  const std::optional<std::string> old = GetEnv(*env, key);
  SetEnv(env, key, old && !old->empty() ? value + sep + *old : value);
}

Status WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return InternalError(fmt::format("cannot write '{}'", path.string()));
  return OkStatus();
}

// Note [Which process is recorded].
std::optional<fs::path> PickTrace(const fs::path& dir, const std::string& prefix, pid_t child,
                                  const std::string& suffix) {
  std::optional<fs::path> best;
  uintmax_t best_size = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix + ".") || !name.ends_with(suffix)) continue;
    if (name == fmt::format("{}.{}{}", prefix, child, suffix) && entry.file_size() > 100) {
      return entry.path();
    }
    if (!best || entry.file_size() > best_size) {
      best = entry.path();
      best_size = entry.file_size();
    }
  }
  return best;
}

// "a.trace.gz" -> "a.cpu.trace.gz"; "a.gz" -> "a.cpu.gz"; "a" -> "a.cpu".
std::string CpuName(const std::string& out) {
  for (const char* ext : {".trace.gz", ".trace", ".gz"}) {
    if (out.ends_with(ext)) return out.substr(0, out.size() - strlen(ext)) + ".cpu" + ext;
  }
  return out + ".cpu";
}

std::string Join(const std::vector<std::string>& words) {
  std::string s;
  for (const std::string& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

std::string UtcNow(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

Status Record(const RecordFlags& f, uint64_t min_bytes, int* child_code) {
  KEEL_ASSIGN_OR_RETURN(fs::path recorder, FindRecorder(f));
  std::string tmpl = (fs::temp_directory_path() / "keel-mem-record-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return ErrnoError(errno, "creating a temporary directory");
  TempDir tmp{tmpl};
  SpawnOptions opts;
  opts.argv = f.command;
  opts.env = CurrentEnvironment();
  opts.new_process_group = false;  // Ctrl-C reaches the program; keel waits and writes the trace
  PrependPath(&*opts.env, "LD_PRELOAD", recorder.string(), ':');
  SetEnv(&*opts.env, "KEEL_MEM_RECORD_OUT", (tmp.path / "cpu").string());
  SetEnv(&*opts.env, "KEEL_MEM_RECORD_MIN_BYTES", std::to_string(min_bytes));
  if (f.cuda_snapshot) {
    fs::create_directory(tmp.path / "py");
    KEEL_RETURN_IF_ERROR(WriteFile(tmp.path / "py" / "sitecustomize.py", kSiteCustomize));
    PrependPath(&*opts.env, "PYTHONPATH", (tmp.path / "py").string(), ':');
    SetEnv(&*opts.env, "KEEL_MEM_SNAPSHOT_OUT", (tmp.path / "cuda").string());
  }
  const auto start = std::chrono::system_clock::now();
  KEEL_ASSIGN_OR_RETURN(auto child, Subprocess::Spawn(opts));
  struct sigaction ignore {
  }, old_int{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, &old_int);
  const ExitStatus st = child->Wait();
  sigaction(SIGINT, &old_int, nullptr);
  *child_code = st.success() ? 0 : st.ShellCode();
  if (!st.success()) fmt::print(stderr, "keel mem record: the program {}\n", st.ToString());

  const std::vector<std::string> made = {
      fmt::format("command: {}", Join(f.command)),
      fmt::format("made: keel mem record --min-bytes {} at {}; program {}", min_bytes,
                  UtcNow(start), st.ToString())};
  std::string cpu_out = f.out;
  const std::optional<fs::path> snapshot = PickTrace(tmp.path, "cuda", child->pid(), ".pickle");
  if (snapshot) {
    KEEL_ASSIGN_OR_RETURN(fs::path converter, FindConverter());
    cpu_out = CpuName(f.out);
    SpawnOptions conv;
    conv.argv = {
        "python3", converter.string(), snapshot->string(), f.out, "--comment", made[0], "--comment",
        made[1]};
    KEEL_ASSIGN_OR_RETURN(auto c, Subprocess::Spawn(conv));
    const ExitStatus cs = c->Wait();
    if (!cs.success()) {
      return InternalError(fmt::format("converting the CUDA snapshot failed ({})", cs.ToString()));
    }
    fmt::print("CUDA trace (PyTorch memory history) -> {}\n", f.out);
  }
  const std::optional<fs::path> raw = PickTrace(tmp.path, "cpu", child->pid(), "");
  if (!raw) {
    return FailedPreconditionError(fmt::format(
        "the recorder wrote nothing: is '{}' a dynamically linked program? (LD_PRELOAD does "
        "not reach static binaries)",
        f.command[0]));
  }
  KEEL_ASSIGN_OR_RETURN(mem::Trace trace, mem::ReadTrace(raw->string()));
  trace.comments.insert(trace.comments.end(), made.begin(), made.end());
  KEEL_RETURN_IF_ERROR(mem::WriteTrace(trace, cpu_out));
  const mem::TraceSummary s = mem::Summarize(trace);
  fmt::print("{}: {} allocations >= {} bytes, {} frees, peak live {:.1f} MiB (process {})\n",
             cpu_out, s.allocs, min_bytes, s.frees, s.peak_live_bytes / 1048576.0,
             raw->extension().string().substr(1));
  return OkStatus();
}

}  // namespace

int RunRecord(const RecordFlags& f) {
  StatusOr<uint64_t> min_bytes = ParseBytes("--min-bytes", f.min_bytes);
  if (!min_bytes.ok()) {
    std::cerr << "keel mem record: " << min_bytes.status().message() << "\n";
    return kExitUsage;
  }
  std::error_code ec;
  const fs::path parent = fs::absolute(f.out).parent_path();
  if (!fs::is_directory(parent, ec)) {
    std::cerr << "keel mem record: the directory of -o '" << f.out << "' does not exist\n";
    return kExitUsage;
  }
  int child_code = 0;
  const Status s = Record(f, *min_bytes, &child_code);
  if (!s.ok()) {
    std::cerr << "keel mem record: " << s.message() << "\n";
    return kExitFailure;
  }
  return child_code == 0 ? kExitOk : kExitFailure;
}

}  // namespace keel::cli
