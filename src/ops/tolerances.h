// Test tolerances of the optimized ops against their scalar references, one place for all
// dtypes: |out - ref| <= atol + rtol * |ref|.
//
// Matmul: the reference reads the same stored (already rounded) weights and accumulates in
// double, so the only difference is the fp32 accumulation order of the fast kernels (and
// OpenBLAS). With inputs of order 1 and a few thousand terms, the fp32 error is ~1e-5
// relative to the sum of |terms|; the weight dtype does not change that, because widening
// bf16/fp16 to fp32 is exact. The tolerances are per weight dtype anyway so that a future
// kernel that (say) accumulates fp16 products in lower precision has to state it here.
#pragma once

#include "core/dtype.h"

namespace kvscope::ops {

struct Tolerance {
    double atol, rtol;
};

inline Tolerance matmul_tolerance(DType weight_dtype) {
    switch (weight_dtype) {
        case DType::F32: return {1e-4, 1e-4};
        case DType::F16: return {1e-4, 1e-4};
        case DType::BF16: return {1e-4, 1e-4};
        default: return {0.0, 0.0};
    }
}

// Attention over quantized (or fp16) KV rows against ops::ref, which decodes every row with
// kv_decode_row and attends in double: the kernels rebuild each value in fp32 (one fused
// multiply-add of code, scale and minimum, where the reference rounds twice) and sum scores
// and values in fp32 in their own order, ~1e-6 relative over hundreds of keys; outputs are
// O(1), so both bounds are loose by two orders of magnitude yet far below one quantization step.
inline constexpr Tolerance kCodecAttentionTolerance{2e-4, 2e-4};

// Bulk conversions must match the scalar conversions bit for bit (NaN included).
inline constexpr Tolerance kConvertTolerance{0.0, 0.0};

}  // namespace kvscope::ops
