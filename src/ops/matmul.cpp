// ops::matmul picks the kernel. Packed weights (what the model uses) always go to the packed
// kernels of gemv_avx2.cpp: panels streamed at decode sizes, and above 48 rows a 6x16
// register-blocked GEMM over a k-major copy of x. Against unpacking + OpenBLAS sgemm they
// measured ahead at every m from 8 to 512 on an AMD EPYC VM (~205 vs 150-178 GFLOP/s at
// m = 256-512), and ahead up to m = 128 but behind at 256 and 512 on an Intel VM whose OpenBLAS
// uses AVX-512 (149-155 vs 190-196 GFLOP/s at m = 512, fp32, 2 threads; docs/KERNELS.md).
// Unpacked KN/NK views use the decode GEMV for small m and OpenBLAS sgemm (gemm.cpp) above
// gemv_max_rows.
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

void reserve_matmul(int64_t m, int64_t n_in) { reserve_gemm_rows(m, n_in); }

void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    if (m == 0) return;
    if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
        fail("matmul: weight dtype {} is not supported (expected fp32, fp16 or bf16)", dtype_name(w.dtype));
    if (w.layout == Layout::Packed || m <= gemv_max_rows(w.dtype)) gemv(x, m, w, bias, y);
    else gemm(x, m, w, bias, y);
}

}  // namespace kvscope::ops
