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

// Bulk conversions must match the scalar conversions bit for bit (NaN included).
inline constexpr Tolerance kConvertTolerance{0.0, 0.0};

}  // namespace kvscope::ops
