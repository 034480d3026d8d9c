#include "experiments/bench.h"

#include <fmt/core.h>

#include <algorithm>

#include "analysis/cost_model.h"
#include "core/error.h"
#include "experiments/experiments.h"

namespace kvscope::exp {

namespace {

// The median of one field over the rounds.
template <class R>
double median_of(const std::vector<R>& rounds, double R::*field) {
    std::vector<double> v;
    for (const R& w : rounds) v.push_back(w.*field);
    return summarize(v).median;
}

}  // namespace

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
    // Decode at depth, steps alternated: two windows of N - 1 depths (as many steps as a
    // prompt-P row times), the shallow one from P + kSettleSteps, the deep one centred on
    // `deep`; each round prefills one prompt past the deep window and then runs a step at
    // shallow depth k, at deep depth k, and the read floor's steps at both (every byte those
    // steps read, no arithmetic), in turn, so that the machine's drift (several percent over
    // the seconds one generation from P to `deep` takes) falls on all four alike. 32 settling
    // rounds of the four come first: the first 15-20 steps after a long prefill run slow
    // (docs/PERFORMANCE.md, "How kvscope bench measures"). Its own engine, built and freed
    // inside the round hook, so that the rows' memory columns do not count its cache.
    constexpr int kSettleSteps = 32;
    DepthSweep sweep;
    sweep.steps = N - 1;
    sweep.shallow_lo = P + kSettleSteps, sweep.shallow_hi = sweep.shallow_lo + N - 1;
    sweep.deep_lo = std::max(sweep.shallow_hi, deep - half), sweep.deep_hi = sweep.deep_lo + N - 1;
    const bool with_sweep = sweep.deep_hi + 1 <= c.n_ctx;
    auto depth_round = [&] {
        EngineOptions eo;
        eo.max_prompt = sweep.deep_hi;
        eo.max_new_tokens = 1;
        Engine e(*ctx.model(DType::F32).weights, eo);
        std::vector<Engine::DepthStep> steps;
        for (int k = -kSettleSteps; k < sweep.steps; k++) {
            const int a = sweep.shallow_lo + std::max(k, 0), b = sweep.deep_lo + std::max(k, 0);
            steps.insert(steps.end(), {{a, false}, {b, false}, {a, true}, {b, true}});
        }
        const std::vector<double> ms = e.time_steps(make_prompt(ctx, sweep.deep_hi), steps).ms;
        std::vector<double> w[4];  // shallow, deep, floor shallow, floor deep
        for (size_t i = size_t(4 * kSettleSteps); i < ms.size(); i++) w[i % 4].push_back(ms[i]);
        const double apart = sweep.deep_lo - sweep.shallow_lo;
        sweep.engine.rounds.push_back(depth_window(w[0], w[1], apart));
        sweep.floor.rounds.push_back(depth_window(w[2], w[3], apart));
    };
    // Batch-1 decode of each weight dtype against its read floor, steps alternated, in the same
    // rounds (kFloorSettle settling pairs first, as above).
    constexpr int kFloorSettle = 8;
    std::vector<FloorSeries> floors;
    const int f_lo = P + kSettleSteps, f_hi = std::min(c.n_ctx - 1, f_lo + std::max(N / 2, 2));
    if (f_hi > f_lo)
        for (DType w : {DType::F32, DType::BF16, DType::F16}) {
            FloorSeries f;
            f.weights = w;
            f.lo = f_lo, f.hi = f_hi;
            f.bytes = decode_step_cost(c, w, DType::F32, 1, (f_lo + f_hi - 1) / 2).bytes();
            floors.push_back(f);
        }
    auto floor_round = [&] {
        for (FloorSeries& f : floors) {
            EngineOptions eo;
            eo.max_prompt = f.hi;
            eo.max_new_tokens = 1;
            Engine e(*ctx.model(f.weights).weights, eo);
            std::vector<Engine::DepthStep> steps;
            for (int k = -kFloorSettle; k < f.hi - f.lo; k++) {
                const int a = f.lo + std::max(k, 0);
                steps.insert(steps.end(), {{a, false}, {a, true}});
            }
            const std::vector<double> ms = e.time_steps(make_prompt(ctx, f.hi), steps).ms;
            std::vector<double> w[2];  // engine, floor
            for (size_t i = size_t(2 * kFloorSettle); i < ms.size(); i++) w[i % 2].push_back(ms[i]);
            f.rounds.push_back({summarize(w[0]).median, summarize(w[1]).median});
        }
    };
    std::vector<Result> res;
    analysis::Measure bw;
    std::map<int, int> wins;
    {
        analysis::BandwidthSampler sampler(ctx.threads, ctx.quick);
        res = measure(ctx, "bench", grid, [&] {
            sampler.sample();
            if (with_sweep) depth_round();
            floor_round();
        });
        sampler.sample();
        bw = sampler.samples();
        wins = sampler.wins();
    }
    if (with_sweep) {
        // The cost is linear in depth: the mean step of a window costs the step at its mean depth.
        const int mid_shallow = (sweep.shallow_lo + sweep.shallow_hi - 1) / 2;
        const int mid_deep = (sweep.deep_lo + sweep.deep_hi - 1) / 2;
        const Cost lo = decode_step_cost(c, DType::F32, DType::F32, 1, mid_shallow);
        const Cost hi = decode_step_cost(c, DType::F32, DType::F32, 1, mid_deep);
        const double per_key = (hi.bytes() - lo.bytes()) / double(mid_deep - mid_shallow);
        sweep.bytes_rise = hi.bytes() / lo.bytes() - 1;
        for (DepthSeries* d : {&sweep.engine, &sweep.floor}) {
            d->shallow_ms = median_of(d->rounds, &DepthWindow::shallow_ms);
            d->deep_ms = median_of(d->rounds, &DepthWindow::deep_ms);
            d->rise = median_of(d->rounds, &DepthWindow::rise);
            d->ms_per_key = median_of(d->rounds, &DepthWindow::ms_per_key);
            d->kv_gbs = d->ms_per_key > 0 ? per_key / (d->ms_per_key * 1e6) : 0;
            d->shallow_gbs = lo.bytes() / (d->shallow_ms * 1e6);
        }
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
    for (FloorSeries& f : floors) {
        f.engine_ms = median_of(f.rounds, &FloorRound::engine_ms);
        f.floor_ms = median_of(f.rounds, &FloorRound::floor_ms);
    }
    return {std::move(rows), std::move(sweep), std::move(floors), bw, std::move(wins)};
}

DepthWindow depth_window(const std::vector<double>& shallow_ms, const std::vector<double>& deep_ms,
                         double keys_apart) {
    if (shallow_ms.empty() || deep_ms.empty())
        fail("depth window: no steps timed ({} shallow, {} deep)", shallow_ms.size(), deep_ms.size());
    if (keys_apart <= 0)
        fail("depth window: the deep window must lie deeper than the shallow one ({} keys apart)", keys_apart);
    DepthWindow w;
    w.shallow_ms = summarize(shallow_ms).median;
    w.deep_ms = summarize(deep_ms).median;
    w.rise = w.deep_ms / w.shallow_ms - 1;
    w.ms_per_key = (w.deep_ms - w.shallow_ms) / keys_apart;
    return w;
}

std::string depth_summary(const DepthSweep& d) {
    if (d.engine.rounds.empty()) return "";
    // "ms/token ... (rounds ...);" and the growth per key of one series, indented under a label.
    auto series = [](const DepthSeries& x) {
        std::string rounds;
        for (const DepthWindow& w : x.rounds)
            rounds += fmt::format("{}{:+.1f}%", rounds.empty() ? "" : " ", 100 * w.rise);
        // No growth (a tiny model whose KV read is lost in the noise) has no rate.
        const std::string growth =
            x.ms_per_key > 0 ? fmt::format("each token of context adds {:.2f} us: the extra KV bytes at {:.1f} GB/s",
                                           x.ms_per_key * 1e3, x.kv_gbs)
                             : std::string("no growth with depth");
        return fmt::format("ms/token {:+.1f}% (rounds {});\n               {} (the shallow steps: {:.1f} GB/s)\n",
                           100 * x.rise, rounds, growth, x.shallow_gbs);
    };
    std::string s = fmt::format(
        "decode at depth, steps at depths {}-{} and {}-{} alternated ({} of each per round, {} rounds):\n"
        "the median step at the deep depths vs the shallow ones, for {:+.1f}% bytes per step (cost model):\n"
        "  kvscope:     {}"
        "  read floor:  the same bytes read with no arithmetic (same buffers, same order), in the same rounds:\n"
        "               {}",
        d.shallow_lo, d.shallow_hi - 1, d.deep_lo, d.deep_hi - 1, d.steps, d.engine.rounds.size(),
        100 * d.bytes_rise, series(d.engine), series(d.floor));
    s += fmt::format("  kvscope over the read floor: median step {:.2f}x at depths {}-{}, {:.2f}x at {}-{}",
                     d.engine.shallow_ms / d.floor.shallow_ms, d.shallow_lo, d.shallow_hi - 1,
                     d.engine.deep_ms / d.floor.deep_ms, d.deep_lo, d.deep_hi - 1);
    s += d.engine.ms_per_key > 0 && d.floor.ms_per_key > 0
             ? fmt::format("; per token of context {:.2f}x\n", d.engine.ms_per_key / d.floor.ms_per_key)
             : std::string("\n");
    return s;
}

std::string floor_summary(const std::vector<FloorSeries>& fs) {
    if (fs.empty() || fs[0].rounds.empty()) return "";
    std::string s = fmt::format(
        "decode b1 against the read floor: steps at depths {}-{} alternated with steps that read the same bytes\n"
        "in the same order with no arithmetic ({} rounds; the floor's rate is what the machine gave those bytes):\n",
        fs[0].lo, fs[0].hi - 1, fs[0].rounds.size());
    for (const FloorSeries& f : fs) {
        std::string rounds;
        for (const FloorRound& r : f.rounds)
            rounds += fmt::format("{}{:.0f}%", rounds.empty() ? "" : " ", 100 * r.floor_ms / r.engine_ms);
        s += fmt::format("  {:<5} {:8.3f} ms/token, floor {:8.3f} ms ({:.1f} GB/s): {:.1f}% of the floor's speed (rounds {})\n",
                         dtype_name(f.weights), f.engine_ms, f.floor_ms, f.bytes / (f.floor_ms * 1e6),
                         100 * f.floor_ms / f.engine_ms, rounds);
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
