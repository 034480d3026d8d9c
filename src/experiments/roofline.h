// One measured phase placed on the roofline; shared by `exp roofline` and `bench`.
#pragma once

#include <string>
#include <vector>

#include "analysis/cost_model.h"
#include "experiments/harness.h"

namespace kvscope::exp {

struct RooflinePoint {
    std::string phase;     // prefill or decode
    int context = 0;       // prompt length (prefill) or mean depth (decode)
    Cost cost;             // per prefill or per decode step
    double ms = 0;         // median time of that prefill / step
    double tokens = 0;     // tokens it produces or processes
    double gflops = 0, gbs = 0, peak_gflops = 0, peak_gbs = 0, ridge = 0;
    std::string bound;
    double roofline_tok_s = 0, tok_s = 0;
};

// peak_gbs > 0 replaces the probe's bandwidth (ctx.hw) as the roofline's memory ceiling.
RooflinePoint roofline_point(Context& ctx, const Spec& s, const Result& r, bool prefill, double peak_gbs = 0);
std::vector<std::string> roofline_columns();
std::vector<std::string> roofline_values(const RooflinePoint& p);

}  // namespace kvscope::exp
