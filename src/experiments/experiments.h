// The experiments (the seeds' Part C done properly). Each builds a grid of Specs, measures it
// with the harness and writes results/<name>.csv + .json. Grids come from flags; empty lists
// mean the defaults (or the --quick smoke grid).
#pragma once

#include <string>
#include <vector>

#include "experiments/harness.h"

namespace kvscope::exp {

struct Grid {
    std::vector<int> lengths;    // cache: new tokens L
    std::vector<int> batches;    // batch
    std::vector<int> contexts;   // seqlen, memory: context S
    std::vector<DType> weight_dtypes;  // precision
    std::vector<KvFormat> kv_dtypes;
    int prompt_len = 0;          // 0: the experiment's default
    int new_tokens = 0;          // 0: the experiment's default
};

void run_cache(Context& ctx, const Grid& g);
void run_batch(Context& ctx, const Grid& g);
void run_precision(Context& ctx, const Grid& g);
void run_seqlen(Context& ctx, const Grid& g);
void run_memory(Context& ctx, const Grid& g);
void run_roofline(Context& ctx, const Grid& g);
void run_quant(Context& ctx, const Grid& g);

// Names in the order `exp all` (and `study`) runs them.
const std::vector<std::string>& experiment_names();
// Every experiment `exp NAME` runs: the above and quant.
const std::vector<std::string>& all_experiment_names();
void run_experiment(Context& ctx, const std::string& name, const Grid& g);

// Prompts of exactly `len` tokens from the model's tokenizer (or fixed ids without one).
std::vector<int32_t> make_prompt(Context& ctx, int len);

}  // namespace kvscope::exp
