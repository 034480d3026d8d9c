// Roofline: each phase's FLOPs and bytes from the cost model, its measured time, and where it
// sits against this machine's measured ceilings (kvscope hw): achieved GFLOP/s and GB/s, the
// arithmetic intensity against the ridge point, and the verdict memory- or compute-bound.
#include <algorithm>

#include "analysis/cost_model.h"
#include "experiments/experiments.h"
#include "experiments/roofline.h"

namespace kvscope::exp {

RooflinePoint roofline_point(Context& ctx, const Spec& s, const Result& r, bool prefill, double peak_gbs) {
    const ModelConfig& c = ctx.model(s.weights).cfg;
    RooflinePoint p;
    p.phase = prefill ? "prefill" : "decode";
    if (prefill) {
        p.context = s.max_prompt();
        p.cost = prefill_cost(c, s.weights, s.kv, s.batch(), s.max_prompt());
        p.ms = r.prefill_ms.median;
        p.tokens = double(s.batch()) * s.max_prompt();
    } else {
        // Decode steps run at depths prompt .. prompt + new - 2: cost at the mean depth (the
        // cost is linear in depth, so this is the mean cost per step).
        p.context = s.max_prompt() + (s.new_tokens - 2) / 2;
        p.cost = decode_step_cost(c, s.weights, s.kv, s.batch(), p.context);
        p.ms = r.step_ms.median;
        p.tokens = s.batch();
    }
    p.peak_gflops = ctx.hw.gflops_all.median;
    p.peak_gbs = peak_gbs > 0 ? peak_gbs : ctx.hw.bw_gbs_all.median;
    p.gflops = p.cost.flops() / (p.ms * 1e6);
    p.gbs = p.cost.bytes() / (p.ms * 1e6);
    p.ridge = p.peak_gbs > 0 ? p.peak_gflops / p.peak_gbs : 0;
    p.bound = p.cost.intensity() < p.ridge ? "memory" : "compute";
    double floor_s = std::max(p.cost.bytes() / (p.peak_gbs * 1e9), p.cost.flops() / (p.peak_gflops * 1e9));
    p.roofline_tok_s = p.tokens / floor_s;
    p.tok_s = p.tokens / (p.ms / 1e3);
    return p;
}

std::vector<std::string> roofline_columns() {
    return {"phase", "context", "flops", "bytes", "intensity", "ms", "gflops", "gbs", "peak_gflops", "peak_gbs",
            "ridge", "pct_peak_flops", "pct_peak_bw", "bound", "roofline_tok_s", "pct_roofline"};
}

std::vector<std::string> roofline_values(const RooflinePoint& p) {
    return {p.phase,
            std::to_string(p.context),
            fmt_num(p.cost.flops()),
            fmt_num(p.cost.bytes()),
            fmt_num(p.cost.intensity()),
            fmt_num(p.ms),
            fmt_num(p.gflops),
            fmt_num(p.gbs),
            fmt_num(p.peak_gflops),
            fmt_num(p.peak_gbs),
            fmt_num(p.ridge),
            fmt_num(100.0 * p.gflops / p.peak_gflops),
            fmt_num(100.0 * p.gbs / p.peak_gbs),
            p.bound,
            fmt_num(p.roofline_tok_s),
            fmt_num(100.0 * p.tok_s / p.roofline_tok_s)};
}

void run_roofline(Context& ctx, const Grid& g) {
    const int N = g.new_tokens > 0 ? g.new_tokens : (ctx.quick ? 8 : 64);
    std::vector<int> batches = g.batches;
    if (batches.empty()) batches = ctx.quick ? std::vector<int>{1, 2} : std::vector<int>{1, 4, 16};
    std::vector<int> prefills = g.contexts;
    if (prefills.empty()) prefills = ctx.quick ? std::vector<int>{16} : std::vector<int>{128, 512};
    std::vector<Spec> grid;
    std::vector<bool> is_prefill;
    auto prompt8 = make_prompt(ctx, 8);
    for (int b : batches) {
        Spec s;
        s.prompts.assign(size_t(b), prompt8);
        s.new_tokens = N;
        grid.push_back(s);
        is_prefill.push_back(false);
    }
    for (int L : prefills) {
        Spec s;
        s.prompts = {make_prompt(ctx, L)};
        s.new_tokens = 1;
        grid.push_back(s);
        is_prefill.push_back(true);
    }
    std::vector<Result> res = measure(ctx, "roofline", grid);
    std::vector<std::string> header = common_columns();
    auto rc = roofline_columns();
    header.insert(header.end(), rc.begin(), rc.end());
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < grid.size(); i++) {
        auto row = common_row(ctx, "roofline", grid[i], res[i]);
        auto v = roofline_values(roofline_point(ctx, grid[i], res[i], is_prefill[i]));
        row.insert(row.end(), v.begin(), v.end());
        rows.push_back(row);
    }
    write_results(ctx, "roofline", header, rows);
}

}  // namespace kvscope::exp
