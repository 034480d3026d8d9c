// Decode-path matrix products (internal to ops): m is small (a handful of sequences, one
// token each), so the cost is streaming the weight bytes once; every weight element is read
// from memory once and applied to all m rows. Same contract as ops::matmul.
#pragma once

#include <cstdint>

#include "ops/matmul.h"

namespace kvscope::ops {

void gemv(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);

// ops::matmul uses gemv() for m <= gemv_max_rows(dtype) and gemm() above (measured
// crossover, docs/KERNELS.md). gemv() itself is correct for any m.
int64_t gemv_max_rows(DType dtype);

}  // namespace kvscope::ops
