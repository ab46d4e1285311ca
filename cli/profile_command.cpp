// specontext profile --out TRACE.json [--summary-json S.json] -- generate|bench ARGS...
//
// Runs `specontext generate` or `specontext bench` with ARGS under an in-process CUPTI timeline
// (engine/cupti_timeline.hpp), started before the command and stopped after it, and writes
//   - the Chrome trace (DESIGN.md: traceEvents in µs; kernels, copies and memsets per stream, the
//     `specontext` NVTX ranges per host thread), which Perfetto opens beside `specontext sim`'s
//     predicted step;
//   - the per-step breakdown (engine/chrome_trace.hpp): kernel time per NVTX range and the H2D
//     copies of every `step N`, as a table on stdout (stderr when the command prints --json) and
//     as JSON with --summary-json.
// Per-layer ranges need kernel-by-kernel launches: pass the command's --no-graph (a CUDA graph's
// replay is one launch, inside its step range).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "sim/config_error.hpp"
#if defined(SPECONTEXT_HAVE_CUDA)
#include "engine/cupti_timeline.hpp"
#endif

namespace specontext::cli {
namespace {

struct ProfileFlags {
  std::string out, summary_json;
  std::vector<std::string> command;  // after --: the subcommand and its arguments
};

#if defined(SPECONTEXT_HAVE_CUDA)
// An output opened before the run, so that an unwritable path fails before minutes of profiling,
// and removed again when the run fails, so that no empty trace is left behind.
class OutputFile {
 public:
  OutputFile(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)), out_(path_) {
    if (!out_) throw ConfigError(path_, "", "cannot write the " + what_);
  }
  ~OutputFile() {
    if (written_) return;
    out_.close();
    std::remove(path_.c_str());
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  void write(const std::string& text) {
    out_ << text << "\n";
    out_.flush();
    if (!out_) throw ConfigError(path_, "", "cannot write the " + what_);
    written_ = true;
  }

 private:
  std::string path_, what_;
  std::ofstream out_;
  bool written_ = false;
};
#endif

void run(const ProfileFlags& f) {
  if (f.command.empty())
    throw ConfigError("profile", "", "give the command to profile after --, e.g. specontext profile --out step.json -- bench --model llama-3.1-8b --random-weights --no-graph");
  const std::string& name = f.command.front();
  if (name != "generate" && name != "bench")
    throw ConfigError("profile", "", "the command to profile must be generate or bench, got '" + name + "'");
#if !defined(SPECONTEXT_HAVE_CUDA)
  throw ConfigError("profile", "", "this build has no CUDA (no nvcc at configure time); profile needs a CUDA device");
#else
  // A fresh command line holding the profiled subcommands: the same flags, checks and run
  // functions as `specontext generate|bench`.
  CLI::App inner{"specontext " + name + ", profiled", "specontext profile --"};
  inner.require_subcommand(1);
  add_generate_command(inner);
  add_bench_command(inner);
  std::vector<std::string> args(f.command.rbegin(), f.command.rend());  // CLI11 takes them reversed
  const auto parse = [&] {
    try {
      inner.parse(args);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() != 0) throw ConfigError("profile -- " + name, "", e.what());
      inner.exit(e);  // --help: the command's help, nothing run
    }
  };
  const bool help = std::find(f.command.begin(), f.command.end(), "--help") != f.command.end() ||
                    std::find(f.command.begin(), f.command.end(), "-h") != f.command.end();
  if (help) {
    parse();
    return;
  }

  OutputFile trace_out(f.out, "trace (--out)");
  std::unique_ptr<OutputFile> summary_out;
  if (!f.summary_json.empty()) summary_out = std::make_unique<OutputFile>(f.summary_json, "summary (--summary-json)");
  CuptiTimeline timeline;
  timeline.start();  // before the engine's first NVTX range (engine/cupti_timeline.hpp)
  parse();           // runs the command; a failure stops the timeline as it unwinds
  timeline.stop();

  const GpuTimeline& r = timeline.records();
  trace_out.write(timeline.chrome_trace().dump());
  const nlohmann::json summary = timeline.summary();
  if (summary_out) summary_out->write(summary.dump(2));

  // The command's own --json output stays the only thing on stdout.
  bool command_json = false;
  for (const std::string& a : f.command) command_json = command_json || a == "--json";
  std::ostream& report = command_json ? std::cerr : std::cout;
  report << "\nprofile: " << r.kernels.size() << " kernels, " << r.memcpys.size() << " copies, " << r.memsets.size() << " memsets, "
         << r.ranges.size() << " NVTX ranges (NVTX: " << summary.at("nvtx_routing").get<std::string>() << ") -> " << f.out << "\n";
  if (r.dropped_records > 0)
    report << "profile: warning: CUPTI dropped " << r.dropped_records << " records for lack of buffer space; the timeline is incomplete\n";
  if (r.incomplete_records > 0) report << "profile: warning: " << r.incomplete_records << " GPU records without timestamps were left out\n";
  if (r.unpaired_markers > 0) report << "profile: warning: " << r.unpaired_markers << " NVTX markers without their start or end\n";
  std::size_t unlaunched = 0;
  for (const KernelRecord& k : r.kernels) unlaunched += !k.launch.known;
  if (unlaunched > 0) report << "profile: warning: " << unlaunched << " kernels without their launching call: they count outside every step\n";
  if (summary.at("steps").empty()) {
    report << "profile: no `step N` NVTX ranges, so no per-step breakdown"
           << (r.ranges.empty() ? " (no NVTX ranges were recorded at all)" : "") << "\n";
    return;
  }
  report << "\n" << step_breakdown_table(summary);
  const auto& outside = summary.at("outside_steps");
  report << "\nkernel ms summed per NVTX range of the launch (overlapping streams count twice); outside the steps: "
         << outside.at("kernels").get<std::uint64_t>() << " kernels, " << outside.at("kernel_ms").get<double>() << " ms\n";
#endif
}

}  // namespace

void add_profile_command(CLI::App& app) {
  auto f = std::make_shared<ProfileFlags>();
  CLI::App* cmd = app.add_subcommand("profile", "run generate or bench under an in-process CUPTI timeline: Chrome trace and per-step breakdown by NVTX range");
  cmd->add_option("--out", f->out, "the Chrome trace (JSON, traceEvents in µs) to write")->required();
  cmd->add_option("--summary-json", f->summary_json, "also write the per-step breakdown as JSON");
  cmd->add_option("command", f->command, "after --: generate|bench and its arguments (add --no-graph for per-layer ranges)");
  cmd->footer("example: specontext profile --out step.json -- bench --model llama-3.1-8b --random-weights --requests 1 --depth 4096 --steps 4 --reps 1 --no-graph");
  cmd->callback([f]() { run(*f); });
}

}  // namespace specontext::cli
