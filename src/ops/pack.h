// Weight repacking at load: any layout and storage dtype in, Layout::Packed in the compute
// dtype out, and reading one output's weights back (the tied embedding's rows).
#pragma once

#include <cstdint>

#include "ops/matmul.h"

namespace kvscope::ops {

// Writes `src` (KN or NK, fp32/fp16/bf16) as Layout::Packed in `dtype` into dst, which
// holds WeightView{.., dtype, Packed, n_in, n_out}.elements() elements. fp32 -> 16-bit
// rounds to nearest even, as the bulk converters do. Threads: the OpenMP pool.
WeightView pack_weight(const WeightView& src, DType dtype, void* dst);

// out[k] = W[k, o] for k < n_in, as fp32: for an embedding stored NK (or packed from NK),
// the row of token o.
void weight_column(const WeightView& w, int64_t o, float* out);

}  // namespace kvscope::ops
