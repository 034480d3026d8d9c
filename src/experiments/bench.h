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

// Decode ms/token against depth. Comparing two processes, one of which has just prefilled
// hundreds of tokens, or two windows of one generation seconds apart, measures the machine's
// drift and the slow first steps after a long prefill as much as the depth (docs/PERFORMANCE.md,
// "How kvscope bench measures"). So the steps of the two windows alternate (Engine::time_steps),
// together with the read floor's steps at the same depths. Depth of a step: the keys cached
// before it.
struct DepthWindow {
    double shallow_ms = 0, deep_ms = 0;  // median step of each window
    double rise = 0;                     // deep_ms / shallow_ms - 1
    double ms_per_key = 0;               // (deep_ms - shallow_ms) / keys_apart
};
// From the steps of each window; keys_apart: the distance between the windows' mean depths.
DepthWindow depth_window(const std::vector<double>& shallow_ms, const std::vector<double>& deep_ms,
                         double keys_apart);

// One kind of step at the two depths: a window per round and medians over the rounds.
struct DepthSeries {
    std::vector<DepthWindow> rounds;
    double shallow_ms = 0, deep_ms = 0;  // medians of the rounds' window medians
    double rise = 0, ms_per_key = 0;     // medians over the rounds
    double kv_gbs = 0;       // KV bytes one more key adds to a step / ms_per_key: the rate of the
                             // extra bytes; at the shallow steps' rate, the rise is the bytes' rise
    double shallow_gbs = 0;  // bytes of a shallow step / shallow_ms
};

struct DepthSweep {
    int steps = 0;                                                 // per window and round
    int shallow_lo = 0, shallow_hi = 0, deep_lo = 0, deep_hi = 0;  // depth windows [lo, hi)
    double bytes_rise = 0;  // cost model: bytes per step at the deep window's mean depth over the shallow one's, - 1
    DepthSeries engine;     // kvscope's decode steps
    // The read floor's steps at the same depths (every byte the step reads, in the same buffers
    // and order, with no arithmetic; Gpt2Model::read_step), alternated with the engine's: what
    // this machine charges for those bytes alone.
    DepthSeries floor;
};

// Decode at batch 1 in one weight dtype against its read floor: per round, the engine's steps
// at depths [lo, hi) alternated with the read floor's steps at the same depths (every byte the
// step reads, no arithmetic). The floor is what this machine charges for the step's bytes at
// that moment and in that order, so engine / floor needs no bandwidth figure from elsewhere
// (a probe minutes earlier, or one whose buffer the last-level cache partly serves).
struct FloorRound {
    double engine_ms = 0, floor_ms = 0;  // median step of each kind in the round
};
struct FloorSeries {
    DType weights = DType::F32;
    int lo = 0, hi = 0;
    std::vector<FloorRound> rounds;
    double engine_ms = 0, floor_ms = 0;  // medians over the rounds
    double bytes = 0;                    // cost model: bytes of a step at the window's mean depth
};

struct Bench {
    std::vector<BenchRow> rows;
    DepthSweep depth;
    std::vector<FloorSeries> floor;  // fp32, bf16, fp16
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
std::string floor_summary(const std::vector<FloorSeries>& f);  // human-readable, a line per dtype

}  // namespace kvscope::exp
