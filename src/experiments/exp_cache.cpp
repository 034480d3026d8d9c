// Cache on vs off over generation length: the seeds' Experiment 1 / Lab Tasks 2-3, done with
// one cache kept across the whole generation and a no-cache path that really recomputes.
#include <algorithm>

#include "core/fs.h"
#include "experiments/experiments.h"
#include "report/csv.h"

namespace kvscope::exp {

void run_cache(Context& ctx, const Grid& g) {
    const ModelConfig& c = ctx.model(DType::F32).cfg;
    const int P = g.prompt_len > 0 ? g.prompt_len : 8;
    std::vector<int> lengths = g.lengths;
    if (lengths.empty()) lengths = ctx.quick ? std::vector<int>{8, 16} : std::vector<int>{32, 64, 128, 256, 512};
    lengths.erase(std::remove_if(lengths.begin(), lengths.end(), [&](int L) { return L < 1 || P + L > c.n_ctx; }),
                  lengths.end());
    std::vector<Spec> grid;
    auto prompt = make_prompt(ctx, P);
    for (int L : lengths)
        for (bool cache : {true, false}) {
            Spec s;
            s.prompts = {prompt};
            s.new_tokens = L;
            s.use_cache = cache;
            grid.push_back(s);
        }
    std::vector<Result> res = measure(ctx, "cache", grid);

    std::vector<std::string> header = common_columns();
    header.insert(header.end(), {"speedup", "decode_ms_last"});
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        const size_t on = i & ~size_t(1), off = on + 1;
        double speedup = res[off].total_ms.median / res[on].total_ms.median;
        std::vector<double> last;
        for (const auto& r : res[i].reps)
            if (!r.step_ms.empty()) last.push_back(r.step_ms.back());
        auto row = common_row(ctx, "cache", grid[i], res[i]);
        row.push_back(fmt_num(speedup));
        row.push_back(fmt_num(summarize(last).median));
        rows.push_back(row);
    }
    write_results(ctx, "cache", header, rows);

    // One long run per mode, token by token: the GPT-2-from-scratch seed's two plots.
    std::vector<std::vector<std::string>> tok_rows;
    for (size_t i = grid.size() - 2; i < grid.size(); i++) {
        const GenerateResult& r = res[i].reps.front();
        double cum = r.prefill_ms;
        tok_rows.push_back({grid[i].use_cache ? "1" : "0", "0", fmt_num(r.prefill_ms), fmt_num(cum)});
        for (size_t k = 0; k < r.step_ms.size(); k++) {
            cum += r.step_ms[k];
            tok_rows.push_back({grid[i].use_cache ? "1" : "0", std::to_string(k + 1), fmt_num(r.step_ms[k]), fmt_num(cum)});
        }
    }
    write_csv(ctx.out_dir / "cache_tokens.csv", {"use_cache", "step", "token_ms", "cumulative_ms"}, tok_rows);
}

}  // namespace kvscope::exp
