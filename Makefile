# keel — the two commands users need are `make demo` and `make test`; both install what they
# need first (scripts/install-deps.sh). Everything else is for developers.
SHELL := /bin/bash
PYTHON := /usr/bin/python3
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
CTEST_FLAGS ?= --output-on-failure --timeout 300 -j $(JOBS)

# Project sources for format/lint: tracked and new (not ignored) C++ files.
CXX_SOURCES = $(shell git ls-files -co --exclude-standard '*.cc' '*.h' 2>/dev/null)
CC_SOURCES = $(shell git ls-files -co --exclude-standard '*.cc' 2>/dev/null | grep -v '/testdata/')

.PHONY: all deps configure build test test-cpp test-python demo format lint tidy asan tsan fuzz clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_PYTHON=$(PYTHON) \
	  > $(BUILD).configure.log || { cat $(BUILD).configure.log; exit 1; }

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	$(MAKE) --no-print-directory test-cpp test-python

test-cpp:
	cd $(BUILD) && ctest $(CTEST_FLAGS)

test-python:
	KEEL_BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) -m pytest

# keel's main job: a small GPT trained with DDP on 2 local workers, checkpointed every 10
# steps; rank 1 crashes (SIGKILL) at step 25 of the first attempt, keel restarts both workers,
# they resume after step 20 and the job finishes.
DEMO_CKPT ?= $(BUILD)/demo-ckpt
demo: build
	@rm -rf $(DEMO_CKPT)
	@echo "== keel run --nproc-per-node 2 examples/train_gpt.py (rank 1 is killed at step 25)"
	$(BUILD)/tools/keel/keel run --nproc-per-node 2 examples/train_gpt.py --steps 60 \
	  --crash-rank 1 --crash-at-step 25 --ckpt-dir $(DEMO_CKPT) --save-every 10
	@echo "== the job survived the crash: both workers restarted, restored the step-20 checkpoint"
	@echo "   from the agent's memory, and finished; committed steps persisted in $(DEMO_CKPT)"

format:
	clang-format -i $(CXX_SOURCES)

# clang-format check + clang-tidy over the project's sources (uses the build's compile commands).
lint: build
	clang-format --dry-run -Werror $(CXX_SOURCES)
	run-clang-tidy -quiet -p $(BUILD) -j $(JOBS) $(addprefix $(CURDIR)/,$(CC_SOURCES)) \
	  > $(BUILD)/clang-tidy.log 2>&1 || { grep -E 'warning:|error:' -A3 $(BUILD)/clang-tidy.log; exit 1; }
	@echo "lint: clang-format and clang-tidy clean"

# Unit tests under AddressSanitizer + UBSan, built with clang so -Wthread-safety is enforced too.
asan: deps
	@CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DKEEL_SANITIZE=address,undefined -DKEEL_WITH_PYTHON=OFF > $(ASAN_BUILD).configure.log \
	  || { cat $(ASAN_BUILD).configure.log; exit 1; }
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS)

# The concurrent code under ThreadSanitizer (clang): the embedding table and its SSD tier, the
# inference compute pool, the memory allocators' concurrent callers.
TSAN_BUILD ?= build-tsan
TSAN_TESTS = keel_embed_table_test keel_embed_table_checkpoint_test keel_embed_ssd_store_test \
  keel_infer_kernels_compute_pool_test keel_mem_allocator_test
tsan: deps
	@CC=clang CXX=clang++ cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DKEEL_SANITIZE=thread -DKEEL_WITH_PYTHON=OFF > $(TSAN_BUILD).configure.log \
	  || { cat $(TSAN_BUILD).configure.log; exit 1; }
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TESTS)
	cd $(TSAN_BUILD) && KEEL_SANITIZED=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest $(CTEST_FLAGS) \
	  -R '^(Table|TableCheckpoint|SsdStore[A-Za-z]*|ComputePool)\.|AllocatorInvariantsTest\.Concurrent'

# libFuzzer on the GGUF reader (clang, ASan + UBSan) for FUZZ_SECONDS, then merge what it found
# into the checked-in corpus that gguf_corpus_test replays on every build.
FUZZ_SECONDS ?= 300
FUZZER = $(ASAN_BUILD)/keel/infer/gguf/keel_gguf_fuzzer
fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DKEEL_SANITIZE=address,undefined -DKEEL_WITH_PYTHON=OFF > $(ASAN_BUILD).configure.log \
	  || { cat $(ASAN_BUILD).configure.log; exit 1; }
	cmake --build $(ASAN_BUILD) --target keel_gguf_fuzzer
	mkdir -p $(ASAN_BUILD)/fuzz-work && cp keel/infer/gguf/testdata/fuzz_corpus/* $(ASAN_BUILD)/fuzz-work/
	$(FUZZER) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -rss_limit_mb=1024 $(ASAN_BUILD)/fuzz-work
	$(FUZZER) -merge=1 keel/infer/gguf/testdata/fuzz_corpus $(ASAN_BUILD)/fuzz-work

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(BUILD).configure.log $(ASAN_BUILD).configure.log
