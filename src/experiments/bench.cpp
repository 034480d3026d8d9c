#include "experiments/bench.h"

#include <fmt/core.h>

#include "experiments/experiments.h"

namespace kvscope::exp {

Bench run_bench(Context& ctx, int P, int N) {
    const ModelConfig& c = ctx.model(DType::F32).cfg;
    std::vector<BenchRow> rows;
    auto add = [&](std::string label, DType w, int batch, int prompt, int n_new, bool cache, bool prefill) {
        if (prompt + n_new > c.n_ctx) return;
        BenchRow r;
        r.label = std::move(label);
        r.spec.weights = w;
        r.spec.prompts.assign(size_t(batch), make_prompt(ctx, prompt));
        r.spec.new_tokens = n_new;
        r.spec.use_cache = cache;
        r.prefill = prefill;
        rows.push_back(std::move(r));
    };
    for (DType w : {DType::F32, DType::BF16, DType::F16})
        add(fmt::format("decode {} b1", dtype_name(w)), w, 1, P, N, true, false);
    add("decode fp32 b8", DType::F32, 8, P, N, true, false);
    const int deep = std::min(896, c.n_ctx - 32);
    add(fmt::format("decode fp32 b1 depth {}", deep), DType::F32, 1, deep, 32, true, false);
    const int pre = std::min(512, c.n_ctx - 1);
    add(fmt::format("prefill fp32 {}", pre), DType::F32, 1, pre, 1, true, true);
    add(fmt::format("prefill bf16 {}", pre), DType::BF16, 1, pre, 1, true, true);
    // The no-cache path: each step is a full forward of the sequence so far (a prefill of it).
    add(fmt::format("no-cache fp32 b1 +{}", std::min(N, 64)), DType::F32, 1, P, std::min(N, 64), false, false);

    std::vector<Spec> grid;
    for (const auto& r : rows) grid.push_back(r.spec);
    std::vector<Result> res;
    analysis::Measure bw;
    std::map<int, int> wins;
    {
        analysis::BandwidthSampler sampler(ctx.threads, ctx.quick);
        res = measure(ctx, "bench", grid, [&sampler] { sampler.sample(); });
        sampler.sample();
        bw = sampler.samples();
        wins = sampler.wins();
    }
    for (size_t i = 0; i < rows.size(); i++) {
        rows[i].result = res[i];
        if (rows[i].spec.use_cache) {
            rows[i].point = roofline_point(ctx, rows[i].spec, res[i], rows[i].prefill, bw.median);
        } else {
            // Compare a no-cache step with a prefill of the same length: the median step runs at
            // about prompt + new/2 tokens.
            Spec s = rows[i].spec;
            const int mid = s.max_prompt() + s.new_tokens / 2;
            s.prompts = {make_prompt(ctx, mid)};
            Result r = res[i];
            r.prefill_ms = r.step_ms;
            rows[i].point = roofline_point(ctx, s, r, true, bw.median);
            rows[i].point.phase = "no-cache step";
        }
    }
    return {std::move(rows), bw, std::move(wins)};
}

std::string bench_table(const std::vector<BenchRow>& rows) {
    std::string s = fmt::format("{:<28} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7} {:>9} {:>7} {:>10} {:>7}\n", "configuration",
                                "tok/s", "ms med", "ms p95", "MB/step", "GB/s", "%bw", "GFLOP/s", "%peak",
                                "roof tok/s", "%roof");
    for (const auto& r : rows) {
        const RooflinePoint& p = r.point;
        const Summary& t = r.prefill ? r.result.prefill_ms : r.result.step_ms;
        s += fmt::format("{:<28} {:>9.1f} {:>9.3f} {:>9.3f} {:>10.1f} {:>8.1f} {:>6.0f}% {:>9.1f} {:>6.0f}% {:>10.1f} {:>6.0f}%\n",
                         r.label, p.tok_s, t.median, t.p95, p.cost.bytes() / 1e6, p.gbs, 100 * p.gbs / p.peak_gbs,
                         p.gflops, 100 * p.gflops / p.peak_gflops, p.roofline_tok_s, 100 * p.tok_s / p.roofline_tok_s);
    }
    return s;
}

}  // namespace kvscope::exp
