#include "experiments/bench.h"

#include <fmt/core.h>

#include <algorithm>

#include "analysis/cost_model.h"
#include "core/error.h"
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
    // N steps centred on depth `deep` (mean depth prompt + (N - 2) / 2), as many steps as the
    // prompt-P rows: the slow first steps after a long prefill weigh the same in both.
    const int deep = std::min(896, c.n_ctx - 32), half = (N - 2) / 2;
    const int deep_prompt = std::max(1, std::min(deep - half, c.n_ctx - N));
    add(fmt::format("decode fp32 b1 depth {}", deep_prompt + half), DType::F32, 1, deep_prompt, N, true, false);
    const int pre = std::min(512, c.n_ctx - 1);
    add(fmt::format("prefill fp32 {}", pre), DType::F32, 1, pre, 1, true, true);
    add(fmt::format("prefill bf16 {}", pre), DType::BF16, 1, pre, 1, true, true);
    // The no-cache path: each step is a full forward of the sequence so far (a prefill of it).
    add(fmt::format("no-cache fp32 b1 +{}", std::min(N, 64)), DType::F32, 1, P, std::min(N, 64), false, false);

    std::vector<Spec> grid;
    for (const auto& r : rows) grid.push_back(r.spec);
    // The depth sweep: one generation from prompt P past `deep`, two windows of N - 1 steps (as
    // many as a prompt-P row times): the shallow one after the first kSettleSteps, which can run
    // several percent slow while the caches refill after the previous configuration (at batch 1
    // a run's first 10-16 steps, on the Intel VM of docs/PERFORMANCE.md), the deep one centred
    // on `deep`.
    constexpr int kSettleSteps = 32;
    DepthSweep sweep;
    sweep.prompt = P;
    sweep.shallow_lo = P + kSettleSteps, sweep.shallow_hi = sweep.shallow_lo + N - 1;
    sweep.deep_lo = std::max(sweep.shallow_hi, deep - half), sweep.deep_hi = sweep.deep_lo + N - 1;
    sweep.new_tokens = sweep.deep_hi - P + 1;  // its last step runs at depth deep_hi - 1
    const bool with_sweep = P + sweep.new_tokens <= c.n_ctx;
    if (with_sweep) {
        Spec s;
        s.prompts = {make_prompt(ctx, P)};
        s.new_tokens = sweep.new_tokens;
        grid.push_back(s);
    }
    // The read-only floor of the sweep's steps: the settling steps and the shallow window, then
    // as many settling steps and the deep window (the steps between are not needed). Its own
    // engine, built and freed inside the round hook, so that the rows' memory columns do not
    // count its cache.
    auto floor_rep = [&] {
        EngineOptions eo;
        eo.max_prompt = P;
        eo.max_new_tokens = sweep.new_tokens;
        Engine e(*ctx.model(DType::F32).weights, eo);
        std::vector<double> ms(size_t(sweep.new_tokens - 1), 0.0);
        const std::vector<double> a = e.read_floor_ms(P, sweep.shallow_hi - P);
        const int deep_from = std::max(sweep.shallow_hi, sweep.deep_lo - kSettleSteps);
        const std::vector<double> b = e.read_floor_ms(deep_from, sweep.deep_hi - deep_from);
        std::copy(a.begin(), a.end(), ms.begin());
        std::copy(b.begin(), b.end(), ms.begin() + (deep_from - P));
        sweep.floor_reps.push_back(
            depth_window(ms, P, sweep.shallow_lo, sweep.shallow_hi, sweep.deep_lo, sweep.deep_hi));
    };
    std::vector<Result> res;
    analysis::Measure bw;
    std::map<int, int> wins;
    {
        analysis::BandwidthSampler sampler(ctx.threads, ctx.quick);
        res = measure(ctx, "bench", grid, [&] {
            sampler.sample();
            if (with_sweep) floor_rep();
        });
        sampler.sample();
        bw = sampler.samples();
        wins = sampler.wins();
    }
    if (with_sweep) {
        for (const GenerateResult& g : res.back().reps)
            sweep.reps.push_back(
                depth_window(g.step_ms, P, sweep.shallow_lo, sweep.shallow_hi, sweep.deep_lo, sweep.deep_hi));
        // The cost is linear in depth: the mean step of a window costs the step at its mean depth.
        const int mid_shallow = (sweep.shallow_lo + sweep.shallow_hi - 1) / 2;
        const int mid_deep = (sweep.deep_lo + sweep.deep_hi - 1) / 2;
        const Cost lo = decode_step_cost(c, DType::F32, DType::F32, 1, mid_shallow);
        const Cost hi = decode_step_cost(c, DType::F32, DType::F32, 1, mid_deep);
        const double per_key = (hi.bytes() - lo.bytes()) / double(mid_deep - mid_shallow);
        sweep.bytes_rise = hi.bytes() / lo.bytes() - 1;
        // Medians over the reps: rise, ms per key, the extra bytes' rate, the shallow steps' rate.
        auto medians = [&](const std::vector<DepthWindow>& reps, double& rise, double& ms_per_key, double& kv_gbs,
                           double& shallow_gbs) {
            std::vector<double> r, k, sh;
            for (const DepthWindow& w : reps) {
                r.push_back(w.rise);
                k.push_back(w.ms_per_key);
                sh.push_back(w.shallow_ms);
            }
            rise = summarize(r).median;
            ms_per_key = summarize(k).median;
            kv_gbs = ms_per_key > 0 ? per_key / (ms_per_key * 1e6) : 0;
            shallow_gbs = lo.bytes() / (summarize(sh).median * 1e6);
        };
        medians(sweep.reps, sweep.rise, sweep.ms_per_key, sweep.kv_gbs, sweep.shallow_gbs);
        medians(sweep.floor_reps, sweep.floor_rise, sweep.floor_ms_per_key, sweep.floor_kv_gbs,
                sweep.floor_shallow_gbs);
        res.pop_back();
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
    return {std::move(rows), std::move(sweep), bw, std::move(wins)};
}

DepthWindow depth_window(const std::vector<double>& step_ms, int first_depth, int shallow_lo, int shallow_hi,
                         int deep_lo, int deep_hi) {
    auto window = [&](int lo, int hi) {
        std::vector<double> v;
        for (int k = std::max(0, lo - first_depth); k < hi - first_depth && k < int(step_ms.size()); k++)
            v.push_back(step_ms[size_t(k)]);
        if (v.empty()) fail("depth window [{}, {}) holds no step of a generation from depth {} ({} steps)", lo, hi,
                            first_depth, step_ms.size());
        return summarize(v).median;
    };
    DepthWindow w;
    w.shallow_ms = window(shallow_lo, shallow_hi);
    w.deep_ms = window(deep_lo, deep_hi);
    w.rise = w.deep_ms / w.shallow_ms - 1;
    // Per key between the windows' mean depths (the medians' positions for steps evenly spaced).
    const double mid_shallow = (shallow_lo + shallow_hi - 1) / 2.0, mid_deep = (deep_lo + deep_hi - 1) / 2.0;
    w.ms_per_key = (w.deep_ms - w.shallow_ms) / (mid_deep - mid_shallow);
    return w;
}

std::string depth_summary(const DepthSweep& d) {
    if (d.reps.empty()) return "";
    auto reps = [](const std::vector<DepthWindow>& ws) {
        std::string s;
        for (const DepthWindow& w : ws) s += fmt::format("{}{:+.1f}%", s.empty() ? "" : " ", 100 * w.rise);
        return s;
    };
    // No growth (a tiny model whose KV read is lost in the noise) has no rate.
    auto growth = [](double ms_per_key, double kv_gbs) {
        return ms_per_key > 0 ? fmt::format("each token of context adds {:.2f} us: the extra KV bytes at {:.1f} GB/s",
                                            ms_per_key * 1e3, kv_gbs)
                              : std::string("no growth with depth");
    };
    std::string s = fmt::format(
        "depth in one generation (prompt {}, {} new tokens, {} reps): the median step at depths {}-{} vs {}-{},\n"
        "for {:+.1f}% bytes per step (cost model):\n"
        "  kvscope:     ms/token {:+.1f}% (reps {});\n"
        "               {} (the shallow steps: {:.1f} GB/s)\n",
        d.prompt, d.new_tokens, d.reps.size(), d.deep_lo, d.deep_hi - 1, d.shallow_lo, d.shallow_hi - 1,
        100 * d.bytes_rise, 100 * d.rise, reps(d.reps), growth(d.ms_per_key, d.kv_gbs), d.shallow_gbs);
    if (!d.floor_reps.empty())
        s += fmt::format(
            "  read floor:  the same bytes read with no arithmetic (same buffers, same order), before each round:\n"
            "               ms/token {:+.1f}% (reps {});\n"
            "               {} (the shallow steps: {:.1f} GB/s)\n",
            100 * d.floor_rise, reps(d.floor_reps), growth(d.floor_ms_per_key, d.floor_kv_gbs), d.floor_shallow_gbs);
    if (!d.floor_reps.empty()) {
        auto median = [](const std::vector<DepthWindow>& ws, double DepthWindow::*f) {
            std::vector<double> v;
            for (const DepthWindow& w : ws) v.push_back(w.*f);
            return summarize(v).median;
        };
        s += fmt::format("  kvscope's median step over the read floor's: {:.2f}x at depths {}-{}, {:.2f}x at {}-{}\n",
                         median(d.reps, &DepthWindow::shallow_ms) / median(d.floor_reps, &DepthWindow::shallow_ms),
                         d.shallow_lo, d.shallow_hi - 1,
                         median(d.reps, &DepthWindow::deep_ms) / median(d.floor_reps, &DepthWindow::deep_ms),
                         d.deep_lo, d.deep_hi - 1);
    }
    return s;
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
