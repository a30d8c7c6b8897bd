// `keel mem replay|compare|generate|record|info`: allocation traces and the allocator
// policies of keel/mem (docs/mem.md). `mem` takes its whole command line as trailing words
// (so `record -- python3 train.py --flag` reaches the program untouched) and parses it here
// with its own CLI11 app: the same messages and exit codes as the top-level parser.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "keel/mem/replay.h"
#include "keel/mem/trace.h"
#include "keel/mem/trace_generator.h"
#include "tools/keel/command.h"
#include "tools/keel/mem_cli.h"

namespace keel::cli {

StatusOr<uint64_t> ParseBytes(const std::string& flag, const std::string& text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return InvalidArgumentError(fmt::format("{} '{}': too large", flag, text));
    }
    v = v * 10 + d;
    ++i;
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int shift = -1;
  if (unit.empty() || unit == "b") shift = 0;
  for (const auto& [names, s] :
       std::vector<std::pair<std::vector<std::string>, int>>{{{"k", "kb", "kib"}, 10},
                                                             {{"m", "mb", "mib"}, 20},
                                                             {{"g", "gb", "gib"}, 30},
                                                             {{"t", "tb", "tib"}, 40}}) {
    for (const std::string& n : names) {
      if (unit == n) shift = s;
    }
  }
  if (i == 0 || shift < 0) {
    return InvalidArgumentError(
        fmt::format("{} '{}' is not a size: use bytes or a number with K, M, G or T (binary units)",
                    flag, text));
  }
  if (v == 0) return InvalidArgumentError(fmt::format("{} must be greater than 0", flag));
  if (shift > 0 && v > (UINT64_MAX >> shift)) {
    return InvalidArgumentError(fmt::format("{} '{}': too large", flag, text));
  }
  return v << shift;
}

namespace {

struct ReplayFlags {
  std::string trace, allocator, backend = "simulated", capacity, chunk = "2M";
  std::string frag_limit, max_split;
  double reuse_limit = 10.0;
  int defrag_level = 0, realloc_level = 1;
  bool chunk_rounding = false, compare = false, json = false;
};

std::string Human(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
  if (bytes >= (1ull << 20)) return fmt::format("{:.1f} MiB", bytes / 1048576.0);
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

nlohmann::json ToJson(const mem::LatencyStats& l) {
  return {{"count", l.count},
          {"median_ns", l.median_ns},
          {"p99_ns", l.p99_ns},
          {"total_ns", l.total_ns}};
}

nlohmann::json ToJson(const mem::ReplayResult& r) {
  return {{"policy", r.policy},
          {"backend", r.backend},
          {"capacity_bytes", r.capacity_bytes},
          {"events", r.events},
          {"allocs", r.allocs},
          {"frees", r.frees},
          {"trace_peak_live_bytes", r.trace_peak_live_bytes},
          {"peak_active_bytes", r.peak_active_bytes},
          {"peak_reserved_bytes", r.peak_reserved_bytes},
          {"utilization", r.utilization},
          {"fragmentation", r.fragmentation},
          {"map_count", r.map_count},
          {"unmap_count", r.unmap_count},
          {"stitch_count", r.stitch_count},
          {"stitched_bytes", r.stitched_bytes},
          {"stitched_reuse_count", r.stitched_reuse_count},
          {"gc_count", r.gc_count},
          {"oom_count", r.oom_count},
          {"first_oom", r.first_oom},
          {"alloc", ToJson(r.alloc_all)},
          {"alloc_cached", ToJson(r.alloc_cached)},
          {"alloc_stitched", ToJson(r.alloc_stitched)},
          {"alloc_grew", ToJson(r.alloc_grew)},
          {"free_total_ns", r.free_total_ns},
          {"wall_ms", r.wall_ms}};
}

void PrintTable(const std::string& path, const mem::TraceSummary& s,
                const std::vector<mem::ReplayResult>& results) {
  fmt::print("trace {}: {} allocs, {} frees, peak live {} (the ideal reserved), {} stream(s)\n",
             path, s.allocs, s.frees, Human(s.peak_live_bytes), s.streams);
  if (!results.empty()) {
    fmt::print("backend {}, capacity {}\n\n", results[0].backend, Human(results[0].capacity_bytes));
  }
  fmt::print("{:<11} {:>12} {:>13} {:>7} {:>6} {:>8} {:>8} {:>8} {:>5} {:>10} {:>10} {:>9}\n",
             "allocator", "peak active", "peak reserved", "util", "frag", "maps", "unmaps",
             "stitches", "OOMs", "alloc med", "alloc p99", "time");
  for (const mem::ReplayResult& r : results) {
    fmt::print(
        "{:<11} {:>12} {:>13} {:>6.1f}% {:>5.1f}% {:>8} {:>8} {:>8} {:>5} {:>8.0f}ns {:>8.0f}ns "
        "{:>7.0f}ms\n",
        r.policy, Human(r.peak_active_bytes), Human(r.peak_reserved_bytes), 100 * r.utilization,
        100 * r.fragmentation, r.map_count, r.unmap_count, r.stitch_count, r.oom_count,
        r.alloc_all.median_ns, r.alloc_all.p99_ns, r.alloc_all.total_ns / 1e6);
  }
  for (const mem::ReplayResult& r : results) {
    if (r.oom_count > 0) fmt::print("{}: first OOM at {}\n", r.policy, r.first_oom);
  }
}

// Flag errors set *usage (exit 2); trace and replay errors do not (exit 1).
Status RunReplay(const ReplayFlags& f, bool* usage) {
  *usage = true;
  mem::ReplayOptions o;
  o.backend = f.backend;
  if (!f.capacity.empty()) {
    KEEL_ASSIGN_OR_RETURN(o.capacity_bytes, ParseBytes("--capacity", f.capacity));
  }
  KEEL_ASSIGN_OR_RETURN(o.chunk_bytes, ParseBytes("--chunk", f.chunk));
  if (!f.frag_limit.empty()) {
    KEEL_ASSIGN_OR_RETURN(o.allocator.frag_limit_bytes, ParseBytes("--frag-limit", f.frag_limit));
  }
  if (!f.max_split.empty()) {
    KEEL_ASSIGN_OR_RETURN(o.allocator.max_split_size_bytes, ParseBytes("--max-split", f.max_split));
  }
  o.allocator.reuse_limit = f.reuse_limit;
  o.allocator.defrag_level = f.defrag_level;
  o.allocator.realloc_level = f.realloc_level;
  o.allocator.chunk_rounding = f.chunk_rounding;
  std::vector<std::string> policies;
  if (f.compare) {
    policies = {"caching", "expandable", "stitching"};
  } else {
    policies = {f.allocator.empty() ? "stitching" : f.allocator};
  }
  o.policy = policies[0];
  KEEL_RETURN_IF_ERROR(o.Validate());
  *usage = false;
  KEEL_ASSIGN_OR_RETURN(mem::Trace trace, mem::ReadTrace(f.trace));
  std::vector<mem::ReplayResult> results;
  for (const std::string& p : policies) {
    o.policy = p;
    KEEL_ASSIGN_OR_RETURN(mem::ReplayResult r, mem::Replay(trace, o));
    results.push_back(std::move(r));
  }
  if (f.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : results) out.push_back(ToJson(r));
    const mem::TraceSummary s = mem::Summarize(trace);
    std::cout << nlohmann::json{{"trace", f.trace},
                                {"allocs", s.allocs},
                                {"peak_live_bytes", s.peak_live_bytes},
                                {"results", out}}
                     .dump(2)
              << "\n";
  } else {
    PrintTable(f.trace, mem::Summarize(trace), results);
  }
  return OkStatus();
}

Status RunInfo(const std::string& path) {
  KEEL_ASSIGN_OR_RETURN(mem::Trace t, mem::ReadTrace(path));
  const mem::TraceSummary s = mem::Summarize(t);
  for (const std::string& c : t.comments) fmt::print("# {}\n", c);
  fmt::print(
      "{}: {} allocs, {} frees, {} live at end, peak live {}, largest {}, {} stream(s), "
      "{:.3f} s\n",
      path, s.allocs, s.frees, s.live_at_end, Human(s.peak_live_bytes), Human(s.max_alloc_bytes),
      s.streams, s.duration_us / 1e6);
  return OkStatus();
}

struct MemFlags {
  std::vector<std::string> words;  // everything after `keel mem`
  ReplayFlags replay;
  mem::GeneratorOptions gen;
  bool no_zero3 = false, no_optimizer = false;
  std::string gen_out, info_path;
  RecordFlags record;
};

void AddReplay(CLI::App* mem, ReplayFlags* f) {
  CLI::App* app = mem->add_subcommand("replay", "Replay a trace through allocator policies");
  app->add_option("trace", f->trace, "keel allocation trace (.trace or .trace.gz)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--allocator", f->allocator, "caching, expandable or stitching (default)")
      ->check(CLI::IsMember({"caching", "expandable", "stitching"}));
  app->add_flag("--compare", f->compare, "Run all three policies and print one table");
  app->add_option("--backend", f->backend, "simulated (default: accounting only) or host")
      ->check(CLI::IsMember({"simulated", "host"}));
  app->add_option("--capacity", f->capacity,
                  "Backend capacity, e.g. 80G (default 80G simulated, 2x peak live on host)");
  app->add_option("--chunk", f->chunk, "Physical chunk size (default 2M)");
  app->add_option("--frag-limit", f->frag_limit, "stitching: smallest request stitched (512M)");
  app->add_option("--reuse-limit", f->reuse_limit, "stitching: stitched-block reuse ratio (10)")
      ->check(CLI::Range(1.0, 1e6));
  app->add_option("--defrag-level", f->defrag_level, "stitching: 0 stitch first, 1 on failure")
      ->check(CLI::Range(0, 1));
  app->add_option("--realloc-level", f->realloc_level,
                  "stitching: 1 create only the shortfall and stitch (default), 0 GMLake's")
      ->check(CLI::Range(0, 1));
  app->add_flag("--chunk-rounding", f->chunk_rounding,
                "stitching: round requests > 1 MiB to 2 MiB chunks as GMLake does");
  app->add_option("--max-split", f->max_split, "caching/stitching: never split blocks >= this");
  app->add_flag("--json", f->json, "Print JSON instead of a table");
  app->get_option("--allocator")->excludes("--compare");
}

void AddGenerate(CLI::App* mem, MemFlags* f) {
  mem::GeneratorOptions& g = f->gen;
  CLI::App* app = mem->add_subcommand("generate", "Write a synthetic transformer-training trace");
  app->add_option("out", f->gen_out, "Output trace (.gz compresses)")->required();
  app->add_option("--steps", g.steps, "Training steps (4)");
  app->add_option("--seed", g.seed, "Random seed (1)");
  app->add_option("--layers", g.layers, "Transformer blocks (16)");
  app->add_option("--hidden", g.hidden, "Model width (2048)");
  app->add_option("--heads", g.heads, "Attention heads (16)");
  app->add_option("--vocab", g.vocab, "Vocabulary size (50304)");
  app->add_option("--batch", g.micro_batch, "Sequences per step (4)");
  app->add_option("--min-seq", g.min_seq, "Shortest sequence (256)");
  app->add_option("--max-seq", g.max_seq, "Longest sequence (2048)");
  app->add_option("--dtype-bytes", g.dtype_bytes, "Element size (2)");
  app->add_flag("--checkpointing", g.checkpointing, "Activation checkpointing (recompute)");
  app->add_flag("--no-zero3", f->no_zero3, "No ZeRO-3 parameter gathers");
  app->add_option("--world-size", g.world_size, "ZeRO-3 shards (8)");
  app->add_flag("--no-optimizer", f->no_optimizer, "No persistent Adam states");
  app->add_option("--gather-stream", g.gather_stream, "Stream of ZeRO-3 gathers (0)");
}

void AddRecord(CLI::App* mem, RecordFlags* f) {
  CLI::App* app = mem->add_subcommand(
      "record", "Run a program and record its large allocations: record -o OUT -- CMD ...");
  app->add_option("-o,--out", f->out, "Trace to write (OUT.trace.gz)")->required();
  app->add_option("--min-bytes", f->min_bytes, "Smallest allocation recorded (1M)");
  app->add_option("--recorder", f->recorder, "libkeel_mem_record.so (default: found beside keel)");
  app->add_flag("!--no-cuda-snapshot", f->cuda_snapshot,
                "Do not install the CUDA memory-history hook for Python programs");
}

constexpr const char* kMemHelp =
    "keel mem COMMAND ...\n"
    "  replay TRACE [--allocator P | --compare] [--backend simulated|host] [--capacity B]\n"
    "  generate OUT [--steps N --seed S --checkpointing ...]\n"
    "  record -o OUT.trace.gz [--min-bytes N] -- PROGRAM ARGS...\n"
    "  info TRACE\n"
    "Run 'keel mem COMMAND --help' for a command's flags.";

int RunMem(MemFlags* f) {
  CLI::App app("Allocation traces and allocator policies (docs/mem.md)", "keel mem");
  app.require_subcommand(1);
  AddReplay(&app, &f->replay);
  AddGenerate(&app, f);
  AddRecord(&app, &f->record);
  CLI::App* info = app.add_subcommand("info", "Print a trace's comments and summary");
  info->add_option("trace", f->info_path, "Trace")->required()->check(CLI::ExistingFile);

  std::vector<std::string> words = f->words;
  words.insert(words.begin(), "keel mem");
  std::vector<char*> argv;
  argv.reserve(words.size());
  for (std::string& w : words) argv.push_back(w.data());
  int argc = static_cast<int>(argv.size());
  const std::vector<std::string> known = {"replay", "generate", "record", "info"};
  if (argc > 1 && !words[1].starts_with("-") &&
      std::find(known.begin(), known.end(), words[1]) == known.end()) {
    std::cerr << "keel mem: error: unknown command '" << words[1] << "'\n" << kMemHelp << "\n";
    return kExitUsage;
  }
  if (argc > 1 && words[1] == "record") {
    bool separator = false;
    const int start =
        FindTrailingStart(*app.get_subcommand("record"), argc, argv.data(), 2, &separator);
    f->record.command.assign(words.begin() + start + (separator ? 1 : 0), words.end());
    argc = start;
  }
  try {
    app.parse(argc, argv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "keel mem: error: " << e.what() << "\n" << kMemHelp << "\n";
    return kExitUsage;
  }
  Status s;
  std::string what;
  bool usage = false;
  if (app.got_subcommand("replay")) {
    what = "replay";
    s = RunReplay(f->replay, &usage);
  } else if (app.got_subcommand("info")) {
    what = "info";
    s = RunInfo(f->info_path);
  } else if (app.got_subcommand("generate")) {
    what = "generate";
    f->gen.zero3 = !f->no_zero3;
    f->gen.optimizer_states = !f->no_optimizer;
    usage = !f->gen.Validate().ok();
    StatusOr<mem::Trace> t = mem::GenerateTrace(f->gen);
    s = t.ok() ? mem::WriteTrace(*t, f->gen_out) : t.status();
    if (s.ok()) {
      const mem::TraceSummary sum = mem::Summarize(*t);
      fmt::print("{}: {} allocs, peak live {}\n", f->gen_out, sum.allocs,
                 Human(sum.peak_live_bytes));
    }
  } else {
    if (f->record.command.empty()) {
      std::cerr << "keel mem record: error: no program given; use: keel mem record -o OUT -- "
                   "PROGRAM ARGS...\n";
      return kExitUsage;
    }
    return RunRecord(f->record);
  }
  if (!s.ok()) {
    std::cerr << "keel mem " << what << ": " << s.message() << "\n";
    return usage ? kExitUsage : kExitFailure;
  }
  return kExitOk;
}

Command MakeMem(CLI::App* parent) {
  auto f = std::make_shared<MemFlags>();
  CLI::App* app = parent->add_subcommand(
      "mem", "Allocation traces: replay (--compare), generate, record, info");
  app->footer(kMemHelp);
  app->allow_extras();
  return {app,
          [f] {
            if (f->words.empty()) {
              std::cerr << "keel mem: error: no command given\n" << kMemHelp << "\n";
              return kExitUsage;
            }
            return RunMem(f.get());
          },
          &f->words};
}
KEEL_REGISTER_COMMAND(MakeMem);

}  // namespace
}  // namespace keel::cli
