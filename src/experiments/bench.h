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

struct Bench {
    std::vector<BenchRow> rows;
    // Read GB/s, each sample the best of 1, 2, 4 and 8 streams per thread, sampled before
    // every round of repetitions and once after the last: the memory ceiling of every row's
    // roofline (ctx.hw's figure is from the probe, minutes earlier on a machine whose
    // bandwidth drifts).
    analysis::Measure bw_during;
    std::map<int, int> bw_wins;  // streams per thread -> samples where that count read fastest
};

Bench run_bench(Context& ctx, int prompt_len, int new_tokens);
std::string bench_table(const std::vector<BenchRow>& rows);  // human-readable, one line per row

}  // namespace kvscope::exp
