// Tests of the shipped configs: every file loads, every number has a source, and the numbers
// agree with independent figures (PAPER.md §4.5, H200.md, datasheets' link rates).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/config_error.hpp"
#include "sim/hardware.hpp"
#include "sim/json_fields.hpp"
#include "sim/model_shape.hpp"
#include "sim/scenario_loader.hpp"
#include "sim/sweep.hpp"
#include "sim/system_model.hpp"

using namespace specontext;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kConfigs = SPECONTEXT_CONFIGS_DIR;

std::vector<fs::path> json_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

const char* kHardwareNumericFields[] = {"gpu_memory_bytes",  "hbm_bandwidth_Bps",         "dense_bf16_flops",
                                        "sm_count",          "h2d_bandwidth_Bps",         "d2h_bandwidth_Bps",
                                        "host_memory_bytes", "host_memory_bandwidth_Bps", "kernel_launch_overhead_s",
                                        "kernel_gap_s",      "hbm_efficiency",            "compute_efficiency",
                                        "gather_row_efficiency"};

// Per-direction raw rate of each card's host link, from the interface standards (not from the
// configs): PCIe 4.0 = 1.969 GB/s per lane, PCIe 5.0 = 3.938 GB/s per lane; NVLink-C2C 450 GB/s.
const std::map<std::string, double> kHostLinkBps = {
    {"a100-80g", 16 * 1.969e9},       // PCIe 4.0 x16
    {"a800-80g", 16 * 1.969e9},       // PCIe 4.0 x16
    {"rtx4090", 16 * 1.969e9},        // PCIe 4.0 x16
    {"rtx4060-laptop", 8 * 1.969e9},  // PCIe 4.0 x8 (AD107)
    {"h100-sxm", 16 * 3.938e9},       // PCIe 5.0 x16
    {"h200", 16 * 3.938e9},           // PCIe 5.0 x16
    {"h200.calibrated", 16 * 3.938e9},  // the same machine, fitted to the engine (sim/VALIDATION.md)
    {"gh200", 450e9},                 // NVLink-C2C, per direction
};

}  // namespace

// ---------------------------------------------------------------- hardware

TEST(Configs, EveryHardwareFileLoadsWithSources) {
  const auto files = json_files(kConfigs / "hardware");
  ASSERT_FALSE(files.empty()) << "no hardware configs in " << kConfigs / "hardware";
  std::set<std::string> names;
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    Hardware hw;
    ASSERT_NO_THROW(hw = load_hardware(path));
    EXPECT_FALSE(hw.name.empty());
    EXPECT_TRUE(names.insert(hw.name).second) << "duplicate hardware name '" << hw.name << "'";
    for (const char* key : kHardwareNumericFields) {
      auto it = hw.sources.find(key);
      ASSERT_NE(it, hw.sources.end()) << key;
      EXPECT_FALSE(it->second.empty()) << key << " has no source";
    }
    EXPECT_FALSE(hw.gather_row_efficiency.empty());
  }
}

TEST(Configs, H200MemoryIsMeasured) {
  const Hardware hw = load_hardware(kConfigs / "hardware" / "h200.json");
  // `specontext devices` on the H200: totalGlobalMem, a little under nvidia-smi's 143,771 MiB (H200.md)
  EXPECT_EQ(hw.gpu_memory_bytes, 150109880320.0);
  EXPECT_LT(hw.gpu_memory_bytes, 143771.0 * 1024 * 1024);
  EXPECT_EQ(hw.sm_count, 132.0);
  EXPECT_EQ(hw.h2d_bandwidth_Bps, 55.4e9);                  // H200.md pinned H2D
}

TEST(Configs, A800Is80GiB) {
  const Hardware hw = load_hardware(kConfigs / "hardware" / "a800-80g.json");
  EXPECT_EQ(hw.gpu_memory_bytes, 85899345920.0);  // PAPER.md §4.5: 80 GiB
  EXPECT_EQ(hw.gpu_memory_bytes, 80.0 * (1ull << 30));
}

TEST(Configs, DenseBf16NeverTheSparsityFigure) {
  for (const auto& path : json_files(kConfigs / "hardware")) {
    SCOPED_TRACE(path.string());
    const Hardware hw = load_hardware(path);
    EXPECT_GT(hw.dense_bf16_flops, 0.0);
    EXPECT_LT(hw.dense_bf16_flops, 1.0e15);  // the densest card here (Hopper) is 989.5 TFLOPS dense
  }
}

TEST(Configs, HostCopyRatesBelowTheLink) {
  for (const auto& path : json_files(kConfigs / "hardware")) {
    SCOPED_TRACE(path.string());
    const Hardware hw = load_hardware(path);
    const auto link = kHostLinkBps.find(path.stem().string());
    if (link == kHostLinkBps.end()) {
      ADD_FAILURE() << "no host-link rate known for " << path.stem() << ": add it to kHostLinkBps";
      continue;
    }
    EXPECT_LT(hw.h2d_bandwidth_Bps, link->second);
    EXPECT_LT(hw.d2h_bandwidth_Bps, link->second);
    // ...and plausibly close to it (at least half the raw rate).
    EXPECT_GT(hw.h2d_bandwidth_Bps, 0.5 * link->second);
    // A pinned copy cannot beat the host memory it reads from.
    EXPECT_LE(hw.h2d_bandwidth_Bps, hw.host_memory_bandwidth_Bps);
  }
}

// ---------------------------------------------------------------- models

TEST(Configs, EveryModelFileLoads) {
  const auto files = json_files(kConfigs / "models");
  ASSERT_FALSE(files.empty());
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    ModelShape m;
    ASSERT_NO_THROW(m = load_model_config(path));
    EXPECT_EQ(m.name, path.stem().string());
    const bool named_draft = path.stem().string().rfind("eagle3-", 0) == 0;
    EXPECT_EQ(m.eagle3_draft, named_draft);
    EXPECT_GT(m.total_params(), 0.0);
  }
}

TEST(Configs, EveryDraftMatchesItsTarget) {
  for (const auto& path : json_files(kConfigs / "models")) {
    const std::string stem = path.stem().string();
    if (stem.rfind("eagle3-", 0) != 0) continue;
    SCOPED_TRACE(stem);
    const fs::path target_path = kConfigs / "models" / (stem.substr(7) + ".json");
    ASSERT_TRUE(fs::exists(target_path)) << "draft without a target config";
    const ModelShape d = load_model_config(path), t = load_model_config(target_path);
    EXPECT_EQ(d.layers, 1);
    EXPECT_EQ(d.q_heads, t.q_heads);
    EXPECT_EQ(d.kv_heads, t.kv_heads);
    EXPECT_EQ(d.head_dim, t.head_dim);
    EXPECT_EQ(d.target_hidden, t.hidden);
    EXPECT_EQ(d.vocab, t.vocab);  // the draft shares the target's embedding
    EXPECT_EQ(d.draft_vocab, 32000);
  }
}

// ---------------------------------------------------------------- experiments

TEST(Configs, EveryExperimentLoads) {
  const auto files = json_files(kConfigs / "experiments");
  if (files.empty()) GTEST_SKIP() << "no experiments in " << kConfigs / "experiments" << " yet";
  std::set<std::string> names;
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    Experiment e;
    ASSERT_NO_THROW(e = load_experiment(path));
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate experiment name '" << e.name << "'";
    EXPECT_FALSE(e.hardware.empty());
    EXPECT_FALSE(e.models.empty());
    EXPECT_FALSE(e.systems.empty());
    // What the sweep will load must exist and parse (the sweep itself is not run here).
    for (const auto& h : e.hardware) {
      SCOPED_TRACE(h.config + " " + h.variant);
      EXPECT_NO_THROW(with_overrides(load_hardware(resolve_config(h.config, "hardware")), h.overrides, e.origin));
    }
    for (const auto& m : e.models) {
      SCOPED_TRACE(m.model);
      EXPECT_NO_THROW(load_model_config(resolve_config(m.model, "models")));
      if (!m.draft.empty()) {
        EXPECT_NO_THROW(load_model_config(resolve_config(m.draft, "models")));
      }
    }
    EXPECT_GE(e.overlap, 0.0);
    EXPECT_LE(e.overlap, 1.0);
  }
}

// ---------------------------------------------------------------- systems.json

TEST(Configs, EverySystemParameterHasASource) {
  const json all = read_json_file(kConfigs / "systems.json");
  ASSERT_TRUE(all.is_object());
  std::set<std::string> systems;
  for (const auto& [system, params] : all.items()) {
    if (system.rfind("_", 0) == 0) continue;  // comment
    SCOPED_TRACE(system);
    systems.insert(system);
    ASSERT_TRUE(params.is_object());
    for (const auto& [key, p] : params.items()) {
      if (key.rfind("_", 0) == 0) continue;
      SCOPED_TRACE(key);
      ASSERT_TRUE(p.is_object()) << "expected {\"value\", \"source\"}";
      ASSERT_TRUE(p.contains("source") && p.at("source").is_string());
      EXPECT_FALSE(p.at("source").get<std::string>().empty());
      ASSERT_TRUE(p.contains("value"));
      EXPECT_TRUE(p.at("value").is_number());
    }
  }
  for (const auto& name : system_names()) EXPECT_TRUE(systems.count(name)) << "no entry for system '" << name << "'";
}

// ---------------------------------------------------------------- scenario loader

TEST(Configs, ConfigsDirIsTheSourceTree) {
  const char* env = std::getenv("SPECONTEXT_CONFIGS");
  if (env && *env) GTEST_SKIP() << "SPECONTEXT_CONFIGS is set";
  EXPECT_EQ(fs::weakly_canonical(configs_dir()), fs::weakly_canonical(kConfigs));
  EXPECT_EQ(fs::weakly_canonical(resolve_config("h200", "hardware")), fs::weakly_canonical(kConfigs / "hardware" / "h200.json"));
}

TEST(Configs, ResolveConfigErrors) {
  try {
    resolve_config("nope", "hardware");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no hardware config named 'nope'"), std::string::npos) << e.what();
  }
  try {
    resolve_config("/nonexistent/dir/card.json", "hardware");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/card.json"), std::string::npos) << e.what();
  }
  // A path is used as given.
  const fs::path p = kConfigs / "models" / "qwen3-8b.json";
  EXPECT_EQ(resolve_config(p.string(), "models"), p);
}

namespace {
ScenarioSpec spec_h200_llama() {
  ScenarioSpec s;
  s.hardware = (kConfigs / "hardware" / "h200.json").string();
  s.model = (kConfigs / "models" / "llama-3.1-8b.json").string();
  s.system = "specontext";
  s.systems_file = (kConfigs / "systems.json").string();
  s.workload = {2048, 16, 1, 2048};
  return s;
}
}  // namespace

TEST(Configs, MakeScenarioDerivesOrLoadsTheDraft) {
  const Scenario derived = make_scenario(spec_h200_llama());
  EXPECT_EQ(derived.model.total_params(), 8030261248.0);
  EXPECT_TRUE(derived.draft.eagle3_draft);
  EXPECT_EQ(derived.draft.total_params(), 424689664.0);
  EXPECT_EQ(derived.gpu_memory_bytes, 150109880320.0);
  EXPECT_TRUE(derived.system_params.is_object());

  ScenarioSpec s = spec_h200_llama();
  s.draft = (kConfigs / "models" / "eagle3-llama-3.1-8b.json").string();
  s.gpu_memory_cap = 4.0 * (1ull << 30);
  s.hardware_overrides = json{{"h2d_bandwidth_Bps", 6.0e10}};
  const Scenario loaded = make_scenario(s);
  EXPECT_EQ(loaded.draft.total_params(), 424689664.0);
  EXPECT_EQ(loaded.gpu_memory_bytes, 4.0 * (1ull << 30));
  EXPECT_EQ(loaded.hw.h2d_bandwidth_Bps, 6.0e10);
}

TEST(Configs, MakeScenarioErrors) {
  {
    ScenarioSpec s = spec_h200_llama();
    s.model = (kConfigs / "models" / "eagle3-llama-3.1-8b.json").string();  // a draft as the target
    try {
      make_scenario(s);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("eagle3-llama-3.1-8b.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("field 'draft_vocab_size'"), std::string::npos) << e.what();
    }
  }
  {
    ScenarioSpec s = spec_h200_llama();
    s.draft = (kConfigs / "models" / "qwen3-8b.json").string();  // not a draft
    EXPECT_THROW(make_scenario(s), ConfigError);
  }
  {
    ScenarioSpec s = spec_h200_llama();
    s.draft = "eagle3-qwen3-8b";  // a draft of another target: same heads, other vocabulary
    try {
      make_scenario(s);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("eagle3-qwen3-8b.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("field 'vocab_size'"), std::string::npos) << e.what();
    }
  }
  {
    ScenarioSpec s = spec_h200_llama();
    s.system = "vllm";
    try {
      make_scenario(s);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("vllm"), std::string::npos) << e.what();
    }
  }
  {
    ScenarioSpec s = spec_h200_llama();
    s.workload.output = 0;
    try {
      make_scenario(s);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("field 'output'"), std::string::npos) << e.what();
    }
  }
  {
    ScenarioSpec s = spec_h200_llama();
    s.hardware_overrides = json{{"nvlink_Bps", 1e12}};
    EXPECT_THROW(make_scenario(s), ConfigError);
  }
}

namespace specontext {
namespace {

TEST(Configs, ExperimentListsMustBeLists) {
  const auto path = std::filesystem::temp_directory_path() / "specontext-bare-budget.json";
  {
    std::ofstream out(path);
    out << R"({"name": "x", "hardware": ["h200"], "models": ["llama-3.1-8b"], "systems": ["flashinfer"],
              "budgets": 2048, "workloads": [[1024, 16]], "requests": [1]})";
  }
  try {
    load_experiment(path);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'budgets'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace specontext
