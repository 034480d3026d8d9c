// kvscope bench: the performance rows of the engine (decode at batch 1 per weight dtype,
// decode at depth, batched decode, prefill, the no-cache path) in the experiments' schema,
// each placed on the roofline of the machine measured in the same run.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "experiments/harness.h"
#include "experiments/roofline.h"

namespace kvscope::exp {

struct BenchRow {
    std::string label;
    Spec spec;
    bool prefill = false;
    Result result;
    RooflinePoint point;
};

// Decode ms/token against depth inside one generation: the "decode at depth" row compares two
// processes, one of which has just prefilled hundreds of tokens, and on a shared last-level
// cache the step times of different processes and the first steps after a long prefill differ
// by several percent (docs/PERFORMANCE.md, session 8) - as much as the depth effect itself.
// One generation from the decode rows' prompt to past `deep` times both windows under the same
// conditions. Depth of decode step k: prompt + k (keys cached before it).
struct DepthWindow {
    double shallow_ms = 0, deep_ms = 0;  // median step of each window
    double rise = 0;                     // deep_ms / shallow_ms - 1
    double ms_per_key = 0;               // (deep_ms - shallow_ms) / the distance of the windows' mean depths
};
DepthWindow depth_window(const std::vector<double>& step_ms, int first_depth, int shallow_lo, int shallow_hi,
                         int deep_lo, int deep_hi);

struct DepthSweep {
    int prompt = 0, new_tokens = 0;
    int shallow_lo = 0, shallow_hi = 0, deep_lo = 0, deep_hi = 0;  // depth windows [lo, hi)
    std::vector<DepthWindow> reps;
    double rise = 0;          // median over reps
    double bytes_rise = 0;    // cost model: bytes per step at the deep window's mean depth over the shallow one's, - 1
    double ms_per_key = 0;    // median over reps
    double kv_gbs = 0;        // KV bytes one more key adds to a step / ms_per_key: the rate of the
                              // extra bytes; at the shallow steps' rate, the rise is the bytes' rise
    double shallow_gbs = 0;   // bytes of a shallow step / the median shallow step
    // The same windows of read-only steps (Engine::read_floor_ms: every byte the step reads,
    // in the same buffers and order, with no arithmetic), one generation's worth before each
    // round of repetitions: what this machine charges for the extra KV bytes alone.
    std::vector<DepthWindow> floor_reps;
    double floor_rise = 0, floor_ms_per_key = 0, floor_kv_gbs = 0, floor_shallow_gbs = 0;
};

struct Bench {
    std::vector<BenchRow> rows;
    DepthSweep depth;
    // Read GB/s, each sample the best of 1, 2, 4 and 8 streams per thread, sampled before
    // every round of repetitions and once after the last: the memory ceiling of every row's
    // roofline (ctx.hw's figure is from the probe, minutes earlier on a machine whose
    // bandwidth drifts).
    analysis::Measure bw_during;
    std::map<int, int> bw_wins;  // streams per thread -> samples where that count read fastest
};

Bench run_bench(Context& ctx, int prompt_len, int new_tokens);
std::string bench_table(const std::vector<BenchRow>& rows);  // human-readable, one line per row
std::string depth_summary(const DepthSweep& d);              // human-readable, a few lines

}  // namespace kvscope::exp
