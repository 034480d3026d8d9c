// AVX-512 kernel for batched decode on Packed weights (gemv_avx512.cpp), used by ops::gemv
// when the CPU and OS support AVX-512 (F, BW, VL); every other CPU runs the AVX2 kernels.
#pragma once

#include <cstdint>

#include "ops/matmul.h"

namespace kvscope::ops::avx512 {

// Most rows of x gemv_packed takes (one pass over a panel; ops::gemv gives more to AVX2).
inline constexpr int64_t kMaxRows = 12;

// The CPU and the OS support AVX-512 F/BW/VL.
bool available();

// Whether ops::gemv uses this kernel (initially: available(), unless KVSCOPE_AVX512=0). set_enabled(false) makes it
// use the AVX2 kernels everywhere (tests compare both; `KVSCOPE_AVX512=0` in the environment
// does the same for a whole run); set_enabled(true) has no effect without available().
// Returns the previous setting. Not to be called while a matmul runs.
bool enabled();
bool set_enabled(bool on);

// One line for reports: which kernels this process runs, e.g. "AVX2/FMA/F16C; batched decode
// (4-12 rows) AVX-512".
const char* kernels_summary();

// y[r, o] for the columns of panels [p0, p1) and rows r < m (1 <= m <= kMaxRows; ops::gemv calls it for 4 and up), as the
// AVX2 gemv_packed: starting from the bias, fp32 accumulation.
void gemv_packed(const float* x, int64_t m, const WeightView& w, const float* bias, float* y, int64_t p0, int64_t p1);

}  // namespace kvscope::ops::avx512
