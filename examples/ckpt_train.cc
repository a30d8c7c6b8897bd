// A C++ "training" program checkpointed with keel::ckpt::Checkpointer — the C++ side of
// keel.ckpt. Run it under keel (no Python involved):
//
//   keel run --no-python build/examples/keel_example_ckpt_train --ckpt /tmp/ckpt --crash-at 12
//
// The model is a float vector updated deterministically each step; every --save-every steps
// it is saved (memory first under keel run). With --crash-at S the first attempt aborts at
// step S; the restarted process restores the newest step (from the agent's memory) and ends
// with exactly the parameters of a run that never crashed (printed as a checksum).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "keel/ckpt/checkpointer.h"

int main(int argc, char** argv) {
  CLI::App app("keel::ckpt example: a C++ training loop that checkpoints and resumes");
  std::string dir;
  int steps = 30, save_every = 5, crash_at = -1, size = 1 << 20;
  app.add_option("--ckpt", dir, "Checkpoint directory")->required();
  app.add_option("--steps", steps, "Training steps")->check(CLI::PositiveNumber);
  app.add_option("--save-every", save_every, "Save every N steps")->check(CLI::PositiveNumber);
  app.add_option("--crash-at", crash_at, "Abort at this step on the first attempt");
  app.add_option("--size", size, "Parameters")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  auto ckpt = keel::ckpt::Checkpointer::Create({.dir = dir});
  if (!ckpt.ok()) {
    std::fprintf(stderr, "keel_example_ckpt_train: %s\n", ckpt.status().ToString().c_str());
    return 1;
  }
  std::vector<float> w(static_cast<size_t>(size), 0.5f);
  int first = 1;
  auto last = (*ckpt)->Load();
  if (!last.ok()) {
    std::fprintf(stderr, "keel_example_ckpt_train: %s\n", last.status().ToString().c_str());
    return 1;
  }
  if (last->has_value()) {
    const keel::ckpt::Checkpoint& c = **last;
    auto saved = c.file->Get("model/w");
    if (!saved.ok() || saved->nbytes() != w.size() * sizeof(float)) {
      std::fprintf(stderr, "keel_example_ckpt_train: checkpoint does not fit the model\n");
      return 1;
    }
    std::memcpy(w.data(), saved->data, w.size() * sizeof(float));
    first = static_cast<int>(c.step) + 1;
    std::printf("resumed from step %lld (%s)\n", static_cast<long long>(c.step), c.source.c_str());
  }
  const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
  for (int step = first; step <= steps; ++step) {
    if (step == crash_at && (attempt == nullptr || std::string(attempt) == "0")) {
      std::printf("crashing at step %d\n", step);
      std::fflush(stdout);
      std::abort();
    }
    for (size_t i = 0; i < w.size(); ++i) w[i] = w[i] * 0.99f + std::sin(float(step + i % 97));
    if (step % save_every == 0) {
      const keel::TensorView view = keel::TensorView::Contiguous(w.data(), keel::DType::kFloat32,
                                                                 {static_cast<int64_t>(w.size())});
      auto where = (*ckpt)->Save(step, {{"model/w", view}}, {{"step", std::to_string(step)}});
      if (!where.ok()) {
        std::fprintf(stderr, "keel_example_ckpt_train: %s\n", where.status().ToString().c_str());
        return 1;
      }
    }
  }
  double sum = 0;
  for (float x : w) sum += x;
  std::printf("done: checksum %.6f\n", sum);
  return 0;
}
