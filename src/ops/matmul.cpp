// ops::matmul picks the kernel by the number of activation rows: the decode GEMV
// (gemv_avx2.cpp, bandwidth-bound, owns the weight stream) for small m, OpenBLAS sgemm
// (gemm.cpp, compute-bound) for prefill. The crossover was measured: see docs/KERNELS.md.
#include "ops/matmul.h"

#include "core/error.h"
#include "ops/gemm.h"
#include "ops/gemv.h"

namespace kvscope::ops {

int64_t gemv_max_rows(DType dtype) {
    switch (dtype) {
        case DType::F32: return 16;
        case DType::F16: return 16;
        case DType::BF16: return 16;
        default: return 0;
    }
}

void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
        fail("matmul: weight dtype {} is not supported (expected fp32, fp16 or bf16)", dtype_name(w.dtype));
    if (m <= gemv_max_rows(w.dtype)) gemv(x, m, w, bias, y);
    else gemm(x, m, w, bias, y);
}

}  // namespace kvscope::ops
