#!/bin/bash
# GPU check of keel/mem's CUDA paths, for a lent GPU machine whose image has PyTorch with CUDA
# and g++ but not keel's other dependencies (gRPC, spdlog, gtest...).
#
#   scripts/gpu-mem-check.sh prepare   # here, after `make build`: stages headers and
#                                      # googletest's sources in .device-mem/
#   scripts/gpu-mem-check.sh run       # there (carry .device-mem): builds keel/common +
#                                      # keel/mem + googletest standalone, runs the CUDA
#                                      # backend and device-allocator tests, builds
#                                      # libkeel_torch_alloc.so and runs
#                                      # python/tests/test_mem_torch_cuda.py with it
#
# fmt and spdlog are compiled header-only. Without a GPU (e.g. to try the script here) the
# CUDA tests skip with their reason. Results land in $OUT (or the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
D=.device-mem

prepare() {
  mkdir -p $D/include $D/gen/keel/common $D/gtest
  grep -qx "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
  cp -r /usr/include/spdlog /usr/include/fmt $D/include/
  cp -r /usr/src/googletest/googletest/include/gtest $D/include/
  cp -r /usr/src/googletest/googletest/src $D/gtest/
  cp build/keel/common/build_info.h $D/gen/keel/common/
  echo "staged $D ($(du -sh $D | cut -f1)); run: scripts/gpu-mem-check.sh run (carry $D)"
}

build() {
  rm -rf $D/obj $D/bin && mkdir -p $D/obj $D/bin
  export FLAGS="-O2 -g -std=c++20 -fPIC -DFMT_HEADER_ONLY -I. -I$D/gen -isystem $D/include -I$D/gtest"
  local lib_srcs
  lib_srcs="$(ls keel/common/*.cc | grep -v _test) $(ls keel/mem/*.cc | grep -v -e _test \
    -e torch_allocator -e replay -e trace)"
  echo "$lib_srcs $D/gtest/src/gtest-all.cc $D/gtest/src/gtest_main.cc \
    keel/mem/cuda_memory_test.cc keel/mem/device_allocators_test.cc" | tr ' ' '\n' | grep . |
    xargs -P "$(nproc)" -I{} sh -c 'g++ $FLAGS -w -c {} -o '$D'/obj/$(echo {} | tr / _).o'
  local libs=() o
  for o in $D/obj/*.o; do
    case "$o" in *_test.cc.o | *gtest*) ;; *) libs+=("$o") ;; esac
  done
  for t in cuda_memory_test device_allocators_test; do
    g++ -o $D/bin/$t "$D/obj/keel_mem_$t.cc.o" "${libs[@]}" $D/obj/.*gtest-all.cc.o \
      $D/obj/.*gtest_main.cc.o -ldl -lpthread
  done
  g++ $FLAGS -w -shared -fvisibility=hidden -o $D/bin/libkeel_torch_alloc.so \
    keel/mem/torch_allocator.cc "${libs[@]}" -ldl -lpthread
}

run() {
  nvidia-smi -L || echo "no nvidia-smi: the CUDA tests will skip"
  build
  local out="${OUT:-.}"
  mkdir -p "$D/build/keel/mem" && cp $D/bin/libkeel_torch_alloc.so "$D/build/keel/mem/"
  local rc=0
  $D/bin/cuda_memory_test 2>&1 | tee "$out/cuda_memory_test.txt" || rc=1
  KEEL_BUILD_DIR=$PWD/$D/build $D/bin/device_allocators_test 2>&1 |
    tee "$out/device_allocators_test.txt" || rc=1
  KEEL_TORCH_ALLOC=$PWD/$D/bin/libkeel_torch_alloc.so PYTHONUNBUFFERED=1 \
    python3 -m pytest --noconftest -q -p no:cacheprovider -rs python/tests/test_mem_torch_cuda.py \
    2>&1 | tee "$out/pytest.txt" || rc=1
  return $rc
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
