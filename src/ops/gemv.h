// Register-blocked matrix products (internal to ops). Every weight element is read from
// memory once and applied to all m rows: at decode sizes (m = a handful of sequences) the
// cost is streaming the weight bytes; on Packed weights, above 48 rows, a GEMM with the same
// 6 rows x 16 columns register block serves prefill. Same contract as ops::matmul.
#pragma once

#include <cstdint>

#include "ops/matmul.h"

namespace kvscope::ops {

void gemv(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);

// Packed weights with more than 48 rows of x (prefill, no-cache steps) run as a GEMM over a
// copy of x in blocks of six rows, in a buffer of the calling thread grown on demand; this
// grows it now for m rows of n_in (ops::reserve_matmul).
void reserve_gemm_rows(int64_t m, int64_t n_in);

// For KN/NK views ops::matmul uses gemv() for m <= gemv_max_rows(dtype) and gemm() above
// (measured crossover, docs/KERNELS.md); Packed views always use gemv(). gemv() itself is
// correct for any m.
int64_t gemv_max_rows(DType dtype);

}  // namespace kvscope::ops
