// Sequence-length scaling: at context S, the prefill time and the decode ms/token at that
// depth with and without the cache, and the KV bytes measured (allocator and RSS) vs theory.
#include <algorithm>

#include "experiments/experiments.h"

namespace kvscope::exp {

void run_seqlen(Context& ctx, const Grid& g) {
    const ModelConfig& c = ctx.model(DType::F32).cfg;
    const int D = g.new_tokens > 0 ? g.new_tokens : 8;  // decode steps measured at each depth
    std::vector<int> contexts = g.contexts;
    if (contexts.empty()) contexts = ctx.quick ? std::vector<int>{16, 32} : std::vector<int>{32, 64, 128, 256, 512, 1024};
    contexts.erase(std::remove_if(contexts.begin(), contexts.end(), [&](int S) { return S <= D || S > c.n_ctx; }),
                   contexts.end());
    std::vector<Spec> grid;
    for (int S : contexts)
        for (bool cache : {true, false}) {
            Spec s;
            s.prompts = {make_prompt(ctx, S - D)};
            s.new_tokens = D;
            s.use_cache = cache;
            grid.push_back(s);
        }
    std::vector<Result> res = measure(ctx, "seqlen", grid);
    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"context", "kv_rss_delta_bytes"});
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        auto row = common_row(ctx, "seqlen", grid[i], res[i]);
        row.push_back(std::to_string(grid[i].max_prompt() + D));
        row.push_back(std::to_string(res[i].kv_rss_delta));
        rows.push_back(row);
    }
    write_results(ctx, "seqlen", header, rows);
}

}  // namespace kvscope::exp
