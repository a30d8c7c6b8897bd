#!/bin/bash
# GPU check of keel.ckpt's CUDA path, for a lent GPU machine whose image has PyTorch with
# CUDA, g++, pybind11 and the CUDA headers but not keel's other dependencies (gRPC, spdlog...).
#
#   scripts/gpu-ckpt-check.sh prepare   # here, after `make build`: stages headers in .device/
#   scripts/gpu-ckpt-check.sh run       # there (carry .device): builds keel._C standalone,
#                                       # runs the checkpoint tests and bench/ckpt_cuda.py
#
# The standalone build compiles keel/common, keel/ckpt, keel/cuda and python/src into
# keel._C for that machine's python3, with fmt and spdlog header-only. The agent side runs as
# python/tests/agent_standin.py there (the real agent needs gRPC). Results land in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
D=.device

prepare() {
  mkdir -p $D/include $D/gen/keel/common
  grep -qx "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
  cp -r /usr/include/spdlog /usr/include/fmt /usr/include/nlohmann /usr/include/dlpack \
    /usr/include/zlib.h /usr/include/zconf.h $D/include/
  cp build/keel/common/build_info.h $D/gen/keel/common/
  echo "staged $D ($(du -sh $D | cut -f1)); run: scripts/gpu-ckpt-check.sh run (carry $D)"
}

build() {
  local py=python3 out=$D/python/keel
  rm -rf $D/python $D/obj && mkdir -p "$out" $D/obj
  cp -r python/keel/* "$out"/
  local cuda_inc=/usr/local/cuda/include
  local pyinc suffix zlib
  pyinc=$($py -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  suffix=$($py -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  zlib=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1)
  export FLAGS="-O2 -std=c++20 -fPIC -fvisibility=hidden -DFMT_HEADER_ONLY -DKEEL_CKPT_WITH_CUDA=1 -I. -I$D/gen -isystem $D/include -isystem $cuda_inc -isystem $pyinc $($py -m pybind11 --includes)"
  { ls keel/common/*.cc | grep -v _test; echo keel/ckpt/checkpointer.cc keel/ckpt/commit.cc \
      keel/ckpt/memory_slot.cc keel/ckpt/safetensors.cc keel/cuda/driver.cc python/src/*.cc; } |
    tr ' ' '\n' | grep . |
    xargs -P "$(nproc)" -I{} sh -c 'g++ $FLAGS -w -c {} -o '$D'/obj/$(echo {} | tr / _).o'
  g++ -shared -o "$out/_C$suffix" $D/obj/*.o "$zlib" -ldl -lpthread
}

run() {
  nvidia-smi -L
  build
  export PYTHONPATH=$PWD/$D/python:$PWD/python/tests PYTHONUNBUFFERED=1
  python3 -m pytest --noconftest -q -p no:cacheprovider python/tests/test_ckpt_cuda.py \
    python/tests/test_ckpt_memory.py python/tests/test_ckpt.py 2>&1 | tee "${OUT:-.}/pytest.txt"
  python3 bench/ckpt_cuda.py --sizes-mib 1024,4096 --repeat 5 2>&1 | tee "${OUT:-.}/bench.txt"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
