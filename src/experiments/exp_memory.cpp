// Memory: the KV formula against what the cache allocated (they must agree exactly), and the
// whole breakdown: weights, KV, scratch, RSS and peak RSS per (batch, context).
#include <algorithm>

#include "experiments/experiments.h"

namespace kvscope::exp {

void run_memory(Context& ctx, const Grid& g) {
    const ModelConfig& c = ctx.model(DType::F32).cfg;
    std::vector<int> batches = g.batches, contexts = g.contexts;
    if (batches.empty()) batches = ctx.quick ? std::vector<int>{1, 2} : std::vector<int>{1, 4, 16};
    if (contexts.empty()) contexts = ctx.quick ? std::vector<int>{16, 32} : std::vector<int>{128, 512, 1024};
    std::vector<KvFormat> kvs = g.kv_dtypes;
    if (kvs.empty()) kvs = {DType::F32, DType::F16};
    const int P = 4;
    std::vector<Spec> grid;
    for (const KvFormat& k : kvs)
        for (int b : batches)
            for (int S : contexts) {
                if (S > c.n_ctx || S <= P) continue;
                Spec s;
                s.kv = k;
                s.prompts.assign(size_t(b), make_prompt(ctx, P));
                s.new_tokens = S - P;  // the cache holds S positions per sequence...
                s.gen_tokens = 2;      // ...but sizing it needs no long generation
                grid.push_back(s);
            }
    // Memory needs no timing repetitions: one warm-free run per configuration.
    const int reps = ctx.reps, warmup = ctx.warmup;
    ctx.reps = 1;
    ctx.warmup = 0;
    std::vector<Result> res = measure(ctx, "memory", grid);
    ctx.reps = reps;
    ctx.warmup = warmup;
    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"context", "kv_rss_delta_bytes", "rss_bytes", "kv_formula_matches"});
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        auto row = common_row(ctx, "memory", grid[i], res[i]);
        row.push_back(std::to_string(grid[i].max_prompt() + grid[i].new_tokens));
        row.push_back(std::to_string(res[i].kv_rss_delta));
        row.push_back(std::to_string(res[i].rss_after_setup));
        row.push_back(res[i].kv_bytes == res[i].kv_theory ? "1" : "0");
        rows.push_back(row);
    }
    write_results(ctx, "memory", header, rows);
}

}  // namespace kvscope::exp
