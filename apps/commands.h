// Each kvscope subcommand registers its flags and its action on the CLI11 app.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace kvscope::cli {

void add_info(CLI::App& app);
void add_run(CLI::App& app);
void add_make_model(CLI::App& app);
void add_report(CLI::App& app);
void add_hw(CLI::App& app);
void add_exp(CLI::App& app);
void add_bench(CLI::App& app);
void add_study(CLI::App& app);
void add_data(CLI::App& app);
void add_plan(CLI::App& app);

// Flags shared by `exp` and `study`.
struct ExpOpts {
    std::string model = "distilgpt2", tokenizer, out = "results";
    int reps = 5, warmup = 1, threads = 0, prompt_len = 0, new_tokens = 0;
    double max_config_seconds = 60;
    bool quick = false, fresh_hw = false;
    std::vector<int> g_lengths, g_batches, g_contexts;
    std::vector<std::string> g_wt, g_kv;
    // serving
    std::vector<std::string> policies;
    std::vector<double> rates;
    std::string trace, prompt_lens, output_lens;
    int requests = 0, system_prompt = -1, kv_tokens = 0, kv_block = 16, max_len = 0, step_tokens = 0, max_seqs = 0;
    uint64_t seed = 1;
    // evict
    std::vector<std::string> kv_policies;
    std::vector<double> budgets;
    int long_stream = -1;
};
void add_exp_options(CLI::App* cmd, ExpOpts& o);
void run_exps(const ExpOpts& o, const std::vector<std::string>& names, const std::string& command);

// Sets the OpenMP thread count (<= 0: one per online CPU) and returns it.
int set_threads(int n);

}  // namespace kvscope::cli
