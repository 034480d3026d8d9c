// OpenBLAS sgemm path (internal to ops) for large m on KN/NK views, and the baseline the
// packed kernel is benchmarked against; Packed views are accepted too (unpacked per panel).
// Same contract as ops::matmul. bf16/fp16 weights are widened to fp32 one panel at a time into a scratch
// buffer owned by the calling thread (allocated on its first such call, then reused).
#pragma once

#include <cstdint>

#include "ops/matmul.h"

namespace kvscope::ops {

void gemm(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);

// Output columns per converted panel for a 16-bit weight (exposed for tests and benches):
// a panel holds about kGemmPanelFloats fp32 values, so that it stays in the last-level
// cache between its conversion and sgemm's packing of it.
inline constexpr int64_t kGemmPanelFloats = int64_t(1) << 20;
int64_t gemm_panel_cols(const WeightView& w);

}  // namespace kvscope::ops
