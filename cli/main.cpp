// specontext: one program, one subcommand per job (DESIGN.md).
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"specontext: engine, simulator and profiler for speculative context sparsity in long-context decoding"};
  app.require_subcommand(1);
  specontext::cli::add_plan_command(app);
  specontext::cli::add_sim_command(app);
  specontext::cli::add_replay_command(app);
  specontext::cli::add_sweep_command(app);
  specontext::cli::add_reproduce_command(app);
  specontext::cli::add_devices_command(app);
  specontext::cli::add_generate_command(app);
  specontext::cli::add_bench_command(app);
  specontext::cli::add_tokenize_command(app);
  specontext::cli::add_eval_command(app);
  specontext::cli::add_record_command(app);
  specontext::cli::add_calibrate_command(app);
  specontext::cli::add_profile_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "specontext: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
