// Batching: aggregate throughput and per-sequence latency vs batch size with the cache on,
// plus prompts of unequal length packed (no padding) and left-padded as Hugging Face does.
#include "experiments/experiments.h"

namespace kvscope::exp {

void run_batch(Context& ctx, const Grid& g) {
    const int P = g.prompt_len > 0 ? g.prompt_len : (ctx.quick ? 8 : 32);
    const int N = g.new_tokens > 0 ? g.new_tokens : (ctx.quick ? 8 : 64);
    std::vector<int> batches = g.batches;
    if (batches.empty()) batches = ctx.quick ? std::vector<int>{1, 2} : std::vector<int>{1, 2, 4, 8, 16};
    std::vector<Spec> grid;
    std::vector<std::string> padding, lens;
    auto prompt = make_prompt(ctx, P);
    for (int b : batches) {
        Spec s;
        s.prompts.assign(size_t(b), prompt);
        s.new_tokens = N;
        grid.push_back(s);
        padding.push_back("none");
        lens.push_back(std::to_string(P));
    }
    // Unequal prompts: lengths P/4, P/2, P, 2P (at least 1).
    std::vector<std::vector<int32_t>> unequal;
    std::string lens_s;
    for (int f : {1, 2, 4, 8}) {
        int len = std::max(1, P * f / 4);
        unequal.push_back(make_prompt(ctx, len));
        lens_s += (lens_s.empty() ? "" : "/") + std::to_string(len);
    }
    for (bool pad : {false, true}) {
        Spec s;
        s.prompts = unequal;
        s.new_tokens = N;
        s.left_pad = pad;
        grid.push_back(s);
        padding.push_back(pad ? "left" : "none");
        lens.push_back(lens_s);
    }
    std::vector<Result> res = measure(ctx, "batch", grid);
    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"padding", "prompt_lens", "padded_tokens", "seq_latency_ms_p50", "seq_latency_ms_p95"});
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        auto row = common_row(ctx, "batch", grid[i], res[i]);
        row.push_back(padding[i]);
        row.push_back(lens[i]);
        row.push_back(std::to_string(res[i].reps.front().padded_tokens));
        row.push_back(fmt_num(res[i].step_ms.median));
        row.push_back(fmt_num(res[i].step_ms.p95));
        rows.push_back(row);
    }
    write_results(ctx, "batch", header, rows);
}

}  // namespace kvscope::exp
