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

std::vector<BenchRow> run_bench(Context& ctx, int prompt_len, int new_tokens);
std::string bench_table(const std::vector<BenchRow>& rows);  // human-readable, one line per row

}  // namespace kvscope::exp
