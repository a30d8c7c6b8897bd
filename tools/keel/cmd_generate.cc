// `keel generate`: text generation from a GGUF LLaMA model, streamed to stdout as it is
// produced; prompt and generation speed go to stderr at the end.
//
//   keel generate --model tiny.gguf --prompt "Once upon a time" -n 128 --seed 1
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "keel/infer/kernels/compute_pool.h"
#include "keel/infer/model/llama.h"
#include "keel/infer/sampling/sampler.h"
#include "keel/infer/tokenizer/tokenizer.h"
#include "tools/keel/command.h"

namespace keel::cli {
namespace {

struct GenerateFlags {
  std::string model, prompt;
  int n_predict = 128;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  infer::SamplerOptions sampling;
  int64_t seed = -1;
  std::vector<std::string> stops;
};

// Bytes at the end of `s` that start an incomplete UTF-8 character (held back from output).
size_t IncompleteUtf8Tail(const std::string& s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

// Streams text, holding back what could still become a stop string or half a character.
class Streamer {
 public:
  explicit Streamer(const std::vector<std::string>& stops) : stops_(stops) {}

  // Returns true when a stop string has been reached (output ends before it).
  bool Add(const std::string& piece) {
    pending_ += piece;
    for (const std::string& stop : stops_) {
      const size_t at = pending_.find(stop);
      if (at != std::string::npos) {
        Emit(pending_.substr(0, at));
        pending_.clear();
        return true;
      }
    }
    size_t hold = IncompleteUtf8Tail(pending_);
    for (const std::string& stop : stops_) {
      for (size_t k = std::min(stop.size() - 1, pending_.size()); k > hold; --k) {
        if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
          hold = k;
          break;
        }
      }
    }
    Emit(pending_.substr(0, pending_.size() - hold));
    pending_.erase(0, pending_.size() - hold);
    return false;
  }
  void Flush() {
    Emit(pending_);
    pending_.clear();
  }

 private:
  static void Emit(const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  }
  const std::vector<std::string>& stops_;
  std::string pending_;
};

int RunGenerate(const GenerateFlags& f) {
  using Clock = std::chrono::steady_clock;
  auto fail = [](const Status& s) {
    fmt::print(stderr, "keel generate: {}\n", s.message());
    return kExitFailure;
  };
  infer::SamplerOptions sampling = f.sampling;
  sampling.seed = f.seed >= 0 ? static_cast<uint64_t>(f.seed) : std::random_device{}();
  if (Status s = infer::Validate(sampling); !s.ok()) return fail(s);
  StatusOr<std::unique_ptr<infer::LlamaModel>> model = infer::LlamaModel::Load(f.model);
  if (!model.ok()) return fail(model.status());
  StatusOr<std::unique_ptr<infer::Tokenizer>> tok = infer::Tokenizer::FromGguf((*model)->file());
  if (!tok.ok()) return fail(tok.status());
  std::vector<int32_t> tokens = (*tok)->Encode(f.prompt, /*add_bos=*/true);
  if (tokens.empty())
    return fail(
        InvalidArgumentError("the prompt is empty and the model has "
                             "no BOS token"));
  std::unique_ptr<infer::ComputePool> pool;
  if (f.threads > 1) pool = std::make_unique<infer::ComputePool>(f.threads - 1, "keel-generate");
  infer::LlamaSession session(**model, pool.get());
  infer::Sampler sampler(sampling);

  std::fwrite(f.prompt.data(), 1, f.prompt.size(), stdout);
  std::fflush(stdout);
  const auto t0 = Clock::now();
  StatusOr<std::vector<float>> logits = session.Forward(tokens);
  if (!logits.ok()) return fail(logits.status());
  const double prompt_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const size_t n_prompt = tokens.size();

  Streamer out(f.stops);
  const auto t1 = Clock::now();
  int generated = 0;
  const char* reason = "length";
  while (generated < f.n_predict) {
    const int32_t next = sampler.Sample(*logits, tokens);
    ++generated;
    if (next == (*tok)->eos()) {
      reason = "end of text";
      break;
    }
    tokens.push_back(next);
    if (out.Add((*tok)->Decode(next))) {
      reason = "stop string";
      break;
    }
    if (generated == f.n_predict) break;
    if (session.position() >= (*model)->config().n_ctx) {
      reason = "context full";
      break;
    }
    logits = session.Forward({&next, 1});
    if (!logits.ok()) return fail(logits.status());
  }
  out.Flush();
  const double gen_s = std::chrono::duration<double>(Clock::now() - t1).count();
  fmt::print(stderr,
             "\n\nprompt: {} tokens in {:.3f} s ({:.1f} tok/s); generation: {} tokens in "
             "{:.3f} s ({:.1f} tok/s); stopped: {}; threads: {}; seed: {}\n",
             n_prompt, prompt_s, n_prompt / std::max(prompt_s, 1e-9), generated, gen_s,
             generated / std::max(gen_s, 1e-9), reason, f.threads, sampling.seed);
  return kExitOk;
}

Command MakeGenerate(CLI::App* parent) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* app = parent->add_subcommand("generate", "Generate text with a GGUF LLaMA model");
  app->add_option("--model,-m", f->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  app->add_option("--prompt,-p", f->prompt, "Text to continue")->required();
  app->add_option("--n-predict,-n", f->n_predict, "Tokens to generate (default 128)")
      ->check(CLI::Range(0, 1 << 20));
  app->add_option("--threads,-t", f->threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  app->add_option("--temperature", f->sampling.temperature, "0 = greedy (default 0.8)")
      ->check(CLI::Range(0.0, 100.0));
  app->add_option("--top-k", f->sampling.top_k, "Keep the k most likely (0 = off, default 40)")
      ->check(CLI::Range(0, 1 << 24));
  app->add_option("--top-p", f->sampling.top_p, "Nucleus mass (1 = off, default 0.95)")
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--min-p", f->sampling.min_p, "Drop below min-p x best (0 = off, default 0.05)")
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--repeat-penalty", f->sampling.repeat_penalty, "1 = off (default 1.0)")
      ->check(CLI::Range(0.01, 100.0));
  app->add_option("--repeat-last-n", f->sampling.repeat_last_n, "Window of the penalty (64)")
      ->check(CLI::Range(0, 1 << 20));
  app->add_option("--seed", f->seed, "Sampling seed (default: random)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 62));
  app->add_option("--stop", f->stops, "Stop when this text is generated (repeatable)")
      ->check(CLI::Validator(
          [](const std::string& v) { return v.empty() ? std::string("empty stop string") : ""; },
          "", "non-empty"));
  return {app, [f] { return RunGenerate(*f); }};
}
KEEL_REGISTER_COMMAND(MakeGenerate);

}  // namespace
}  // namespace keel::cli
