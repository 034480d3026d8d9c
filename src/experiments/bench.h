// kvscope bench: the performance rows of the engine (decode at batch 1 per weight dtype,
// decode at depth, batched decode, prefill, the no-cache path) in the experiments' schema,
// each placed on the roofline of the machine measured in the same run.
#pragma once

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

struct Bench {
    std::vector<BenchRow> rows;
    // Read GB/s at the probe's best stream count, sampled before every round of repetitions
    // and once after the last: the memory ceiling of every row's roofline (ctx.hw's figure
    // is from the probe, minutes earlier on a machine whose bandwidth drifts).
    analysis::Measure bw_during;
    int bw_streams = 0;  // streams per thread of those samples
};

Bench run_bench(Context& ctx, int prompt_len, int new_tokens);
std::string bench_table(const std::vector<BenchRow>& rows);  // human-readable, one line per row

}  // namespace kvscope::exp
