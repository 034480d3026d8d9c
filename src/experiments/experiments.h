// The experiments (the seeds' Part C done properly). Each builds a grid of Specs, measures it
// with the harness and writes results/<name>.csv + .json. Grids come from flags; empty lists
// mean the defaults (or the --quick smoke grid).
#pragma once

#include <string>
#include <vector>

#include "experiments/harness.h"

namespace kvscope::exp {

// The serving experiment's trace, policies and budget (0, empty: its defaults).
struct ServingGrid {
    std::vector<std::string> policies;  // static, paged, prefix
    std::vector<double> rates;          // requests/s; empty: fractions of the measured capacity
    std::string trace;                  // a trace CSV (experiments/trace.h) instead of a generated one
    int requests = 0;
    std::string prompt_lens, output_lens;  // "N" or "LO-HI" tokens
    int system_prompt = -1;             // -1: the default (an eighth of the context)
    int kv_tokens = 0, kv_block = 16, max_len = 0, step_tokens = 0, max_seqs = 0;
    uint64_t seed = 1;
};

struct Grid {
    std::vector<int> lengths;    // cache: new tokens L
    std::vector<int> batches;    // batch
    std::vector<int> contexts;   // seqlen, memory: context S
    std::vector<DType> weight_dtypes;  // precision
    std::vector<KvFormat> kv_dtypes;
    int prompt_len = 0;          // 0: the experiment's default
    int new_tokens = 0;          // 0: the experiment's default
    ServingGrid serving;
    // evict
    std::vector<std::string> evict_policies;  // window, sinks, h2o, snapkv, tova
    std::vector<double> budgets;              // fractions of the stream
    int long_stream = -1;                     // tokens of the stream past the window (-1: 4 x context, 0: none)
};

void run_cache(Context& ctx, const Grid& g);
void run_batch(Context& ctx, const Grid& g);
void run_precision(Context& ctx, const Grid& g);
void run_seqlen(Context& ctx, const Grid& g);
void run_memory(Context& ctx, const Grid& g);
void run_roofline(Context& ctx, const Grid& g);
void run_quant(Context& ctx, const Grid& g);
void run_serving(Context& ctx, const Grid& g);
void run_evict(Context& ctx, const Grid& g);

// Names in the order `exp all` (and `study`) runs them.
const std::vector<std::string>& experiment_names();
// Every experiment `exp NAME` runs: the above, quant and evict.
const std::vector<std::string>& all_experiment_names();
void run_experiment(Context& ctx, const std::string& name, const Grid& g);

// Prompts of exactly `len` tokens from the model's tokenizer (or fixed ids without one).
std::vector<int32_t> make_prompt(Context& ctx, int len);

}  // namespace kvscope::exp
