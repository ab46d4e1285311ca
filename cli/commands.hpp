#pragma once
// The subcommands of `specontext`, each in its own file; main.cpp wires them up.
#include <CLI/CLI.hpp>

namespace specontext::cli {

void add_plan_command(CLI::App& app);
void add_sim_command(CLI::App& app);
void add_replay_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_reproduce_command(CLI::App& app);
void add_devices_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_record_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_profile_command(CLI::App& app);

}  // namespace specontext::cli
