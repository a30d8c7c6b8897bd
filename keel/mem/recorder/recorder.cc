// libkeel_mem_record.so: an LD_PRELOAD interposer that records a process's large heap
// allocations as a keel allocation trace (docs/formats/alloc-trace.md, docs/mem.md
// "Recording"). `keel mem record` sets it up; by hand:
//
//   KEEL_MEM_RECORD_OUT=/tmp/run KEEL_MEM_RECORD_MIN_BYTES=1048576
//     LD_PRELOAD=build/keel/mem/libkeel_mem_record.so python3 train.py    (one command line)
//
// Environment: KEEL_MEM_RECORD_OUT, a path prefix (required; without it the library only
// passes calls through): each process that loads the library writes "PREFIX.PID", so a
// program that execs others (a shell, a launcher) leaves one trace per process; forked
// children that do not exec stop recording. KEEL_MEM_RECORD_MIN_BYTES (default 1 MiB):
// smaller requests are not recorded.
//
// Note [Recorder hook path]: malloc and friends are called from everywhere, including from
// inside dlsym() while we look the real functions up and from threads we know nothing about.
// So the hook path never allocates: the real functions are found with dlsym(RTLD_NEXT) on
// first use, and calls made while that lookup runs are served from a static bootstrap arena
// (their frees are ignored). Recorded events go to a static buffer under a spinlock and are
// formatted into a static text buffer and write(2)n when the buffer fills and at exit.
// Timestamps come from CLOCK_MONOTONIC (vDSO, no allocation) and are taken under the lock,
// so the file's events are in time order. Live recorded addresses are kept in a fixed
// open-addressing table so that frees of unrecorded (small) blocks are told apart; a block
// whose address is already live (a free we did not see) gets a synthesized free first.
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);
using CallocFn = void* (*)(size_t, size_t);
using ReallocFn = void* (*)(void*, size_t);
using PosixMemalignFn = int (*)(void**, size_t, size_t);
using AlignedAllocFn = void* (*)(size_t, size_t);

MallocFn real_malloc = nullptr;
FreeFn real_free = nullptr;
CallocFn real_calloc = nullptr;
ReallocFn real_realloc = nullptr;
PosixMemalignFn real_posix_memalign = nullptr;
AlignedAllocFn real_aligned_alloc = nullptr;
AlignedAllocFn real_memalign = nullptr;

// Bootstrap arena for allocations made while dlsym runs.
alignas(64) char g_boot[256 * 1024];
std::atomic<size_t> g_boot_used{0};
std::atomic<int> g_init{0};  // 0 not started, 1 running, 2 done

bool InBoot(const void* p) {
  const char* c = static_cast<const char*>(p);
  return c >= g_boot && c < g_boot + sizeof g_boot;
}

void* BootAlloc(size_t bytes, size_t align) {
  if (align < 16) align = 16;
  size_t used = g_boot_used.load();
  while (true) {
    const size_t start = (used + align - 1) & ~(align - 1);
    if (start + bytes > sizeof g_boot) return nullptr;
    if (g_boot_used.compare_exchange_weak(used, start + bytes)) return g_boot + start;
  }
}

// ---- recording state (Note [Recorder hook path]) ----
constexpr size_t kMaxEvents = 1 << 15;
constexpr size_t kTableSlots = 1 << 18;  // power of two

struct Event {
  uint64_t time_us, id, bytes;
  uint32_t stream;
  char kind;  // 'a' or 'f'
};

std::atomic<bool> g_enabled{false};
std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
int g_fd = -1;
pid_t g_pid = 0;
uint64_t g_min_bytes = 1 << 20;
timespec g_t0{};
Event g_events[kMaxEvents];
size_t g_event_count = 0;
uint64_t g_table[kTableSlots];  // live recorded addresses; 0 = empty
uint64_t g_dropped = 0;         // allocations not recorded because the table was full
char g_text[1 << 20];
std::atomic<int> g_next_thread{0};
__attribute__((tls_model("initial-exec"))) thread_local int t_thread = -1;

class SpinLock {
 public:
  SpinLock() {
    while (g_lock.test_and_set(std::memory_order_acquire)) {
    }
  }
  ~SpinLock() { g_lock.clear(std::memory_order_release); }
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;
};

size_t Slot(uint64_t key) { return (key >> 4) * 0x9E3779B97F4A7C15ull >> (64 - 18); }

bool TableInsert(uint64_t key) {
  for (size_t i = Slot(key), n = 0; n < kTableSlots; i = (i + 1) & (kTableSlots - 1), ++n) {
    if (g_table[i] == 0) {
      g_table[i] = key;
      return true;
    }
  }
  return false;
}

bool TableContains(uint64_t key) {
  for (size_t i = Slot(key), n = 0; n < kTableSlots; i = (i + 1) & (kTableSlots - 1), ++n) {
    if (g_table[i] == key) return true;
    if (g_table[i] == 0) return false;
  }
  return false;
}

// Linear-probing delete with backward shift (no tombstones).
bool TableErase(uint64_t key) {
  size_t i = Slot(key);
  while (g_table[i] != key) {
    if (g_table[i] == 0) return false;
    i = (i + 1) & (kTableSlots - 1);
  }
  size_t j = i;
  while (true) {
    j = (j + 1) & (kTableSlots - 1);
    if (g_table[j] == 0) break;
    const size_t home = Slot(g_table[j]);
    // Move g_table[j] into the hole at i unless its home lies cyclically in (i, j].
    const bool keep = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!keep) {
      g_table[i] = g_table[j];
      i = j;
    }
  }
  g_table[i] = 0;
  return true;
}

char* PutU64(char* p, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

void WriteAll(const char* data, size_t n) {
  while (n > 0 && g_fd >= 0) {
    const ssize_t w = write(g_fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    data += w;
    n -= static_cast<size_t>(w);
  }
}

void FlushLocked() {
  char* p = g_text;
  for (size_t i = 0; i < g_event_count; ++i) {
    if (p + 100 > g_text + sizeof g_text) {
      WriteAll(g_text, static_cast<size_t>(p - g_text));
      p = g_text;
    }
    const Event& e = g_events[i];
    *p++ = e.kind;
    *p++ = ' ';
    p = PutU64(p, e.time_us);
    *p++ = ' ';
    p = PutU64(p, e.id);
    if (e.kind == 'a') {
      *p++ = ' ';
      p = PutU64(p, e.bytes);
      *p++ = ' ';
      p = PutU64(p, e.stream);
    }
    *p++ = '\n';
  }
  WriteAll(g_text, static_cast<size_t>(p - g_text));
  g_event_count = 0;
}

uint64_t NowUs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec - g_t0.tv_sec) * 1000000u +
         static_cast<uint64_t>((t.tv_nsec - g_t0.tv_nsec) / 1000);
}

void PushLocked(char kind, uint64_t id, uint64_t bytes, uint32_t stream) {
  if (g_event_count == kMaxEvents) FlushLocked();
  g_events[g_event_count++] = {NowUs(), id, bytes, stream, kind};
}

int ThreadIndex() {
  if (t_thread < 0) t_thread = g_next_thread.fetch_add(1);
  return t_thread;
}

void RecordAlloc(void* p, size_t bytes) {
  if (p == nullptr || bytes < g_min_bytes || !g_enabled.load(std::memory_order_relaxed)) return;
  const uint32_t stream = static_cast<uint32_t>(ThreadIndex());
  SpinLock lock;
  const auto key = reinterpret_cast<uint64_t>(p);
  if (TableContains(key)) {
    PushLocked('f', key, 0, 0);  // we missed its free
  } else if (!TableInsert(key)) {
    ++g_dropped;
    return;
  }
  PushLocked('a', key, bytes, stream);
}

// Called before the real free: `p` is a live block of the real allocator.
void RecordFree(void* p) {
  if (p == nullptr || !g_enabled.load(std::memory_order_relaxed)) return;
  // A recorded block was requested with >= min bytes, so its usable size is at least that.
  if (malloc_usable_size(p) < g_min_bytes) return;
  SpinLock lock;
  const auto key = reinterpret_cast<uint64_t>(p);
  if (TableErase(key)) PushLocked('f', key, 0, 0);
}

void ChildAfterFork() { g_enabled.store(false); }

uint64_t ParseU64(const char* s, bool* ok) {
  uint64_t v = 0;
  *ok = s != nullptr && *s != '\0';
  for (; *ok && *s != '\0'; ++s) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) {
      *ok = false;
      break;
    }
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  return v;
}

void StartRecording() {
  const char* out = getenv("KEEL_MEM_RECORD_OUT");
  if (out == nullptr || *out == '\0') return;
  bool ok = false;
  g_pid = getpid();
  const uint64_t min_bytes = ParseU64(getenv("KEEL_MEM_RECORD_MIN_BYTES"), &ok);
  if (ok && min_bytes > 0) g_min_bytes = min_bytes;
  char path[4096];
  const size_t len = strlen(out);
  if (len + 24 > sizeof path) return;
  char* end = stpcpy(path, out);
  *end++ = '.';
  *PutU64(end, static_cast<uint64_t>(g_pid)) = '\0';
  g_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (g_fd < 0) return;
  clock_gettime(CLOCK_MONOTONIC, &g_t0);
  char header[256];
  char* p = header;
  const char* parts[] = {"keel-alloc-trace 1\n# source: keel mem recorder (LD_PRELOAD) pid "};
  for (const char* s : parts) p = stpcpy(p, s);
  p = PutU64(p, static_cast<uint64_t>(g_pid));
  p = stpcpy(p, " min_bytes ");
  p = PutU64(p, g_min_bytes);
  *p++ = '\n';
  WriteAll(header, static_cast<size_t>(p - header));
  pthread_atfork(nullptr, nullptr, ChildAfterFork);
  g_enabled.store(true);
}

template <typename F>
F Lookup(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

void Init() {
  int expected = 0;
  if (!g_init.compare_exchange_strong(expected, 1)) {
    while (g_init.load() != 2) {
    }
    return;
  }
  real_malloc = Lookup<MallocFn>("malloc");
  real_free = Lookup<FreeFn>("free");
  real_calloc = Lookup<CallocFn>("calloc");
  real_realloc = Lookup<ReallocFn>("realloc");
  real_posix_memalign = Lookup<PosixMemalignFn>("posix_memalign");
  real_aligned_alloc = Lookup<AlignedAllocFn>("aligned_alloc");
  real_memalign = Lookup<AlignedAllocFn>("memalign");
  g_init.store(2);
  StartRecording();
}

// True when the real functions are usable; false while Init runs on this call path (the
// caller then serves the request from the bootstrap arena).
bool Ready() {
  if (g_init.load(std::memory_order_acquire) == 2) return true;
  if (g_init.load() == 1) return false;  // re-entered from dlsym
  Init();
  return true;
}

__attribute__((constructor)) void OnLoad() { Ready(); }

__attribute__((destructor)) void OnUnload() {
  if (!g_enabled.load()) return;
  SpinLock lock;
  FlushLocked();
  if (g_dropped > 0) {
    char line[96];
    char* p = stpcpy(line, "# recorder: dropped ");
    p = PutU64(p, g_dropped);
    p = stpcpy(p, " allocations (live-table full)\n");
    WriteAll(line, static_cast<size_t>(p - line));
  }
  g_enabled.store(false);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* malloc(size_t n) {
  if (!Ready()) return BootAlloc(n, 16);
  void* p = real_malloc(n);
  RecordAlloc(p, n);
  return p;
}

__attribute__((visibility("default"))) void free(void* p) {
  if (p == nullptr || InBoot(p)) return;
  if (!Ready()) return;
  RecordFree(p);
  real_free(p);
}

__attribute__((visibility("default"))) void* calloc(size_t n, size_t size) {
  if (!Ready()) {
    if (size != 0 && n > SIZE_MAX / size) return nullptr;
    return BootAlloc(n * size, 16);  // static memory is zeroed
  }
  void* p = real_calloc(n, size);
  if (p != nullptr) RecordAlloc(p, n * size);
  return p;
}

__attribute__((visibility("default"))) void* realloc(void* old, size_t n) {
  if (!Ready() || InBoot(old)) {
    void* p = Ready() ? real_malloc(n) : BootAlloc(n, 16);
    if (p != nullptr && old != nullptr) {
      const size_t avail = static_cast<size_t>(g_boot + sizeof g_boot - static_cast<char*>(old));
      memcpy(p, old, n < avail ? n : avail);
    }
    if (Ready()) RecordAlloc(p, n);
    return p;
  }
  // Record the free first: after the real call the old block may belong to someone else.
  if (old != nullptr) RecordFree(old);
  void* p = real_realloc(old, n);
  if (p == nullptr && old != nullptr && n != 0) {
    RecordAlloc(old, malloc_usable_size(old));  // realloc failed: the old block lives on
    return nullptr;
  }
  RecordAlloc(p, n);
  return p;
}

__attribute__((visibility("default"))) int posix_memalign(void** out, size_t align, size_t n) {
  if (!Ready()) {
    *out = BootAlloc(n, align);
    return *out != nullptr ? 0 : ENOMEM;
  }
  const int rc = real_posix_memalign(out, align, n);
  if (rc == 0) RecordAlloc(*out, n);
  return rc;
}

__attribute__((visibility("default"))) void* aligned_alloc(size_t align, size_t n) {
  if (!Ready()) return BootAlloc(n, align);
  void* p = real_aligned_alloc(align, n);
  RecordAlloc(p, n);
  return p;
}

__attribute__((visibility("default"))) void* memalign(size_t align, size_t n) {
  if (!Ready()) return BootAlloc(n, align);
  void* p = real_memalign(align, n);
  RecordAlloc(p, n);
  return p;
}

}  // extern "C"
