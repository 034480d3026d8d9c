// Placeholder dispatch until the optimized kernels land: routes to the scalar reference.
#include "ops/matmul.h"

namespace kvscope::ops {

void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    ref::matmul(x, m, w, bias, y);
}

}  // namespace kvscope::ops
