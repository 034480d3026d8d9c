#include "ops/matmul.h"

#include <vector>

namespace kvscope::ops::ref {

static float load(const WeightView& w, int64_t idx) {
    switch (w.dtype) {
        case DType::F32: return static_cast<const float*>(w.data)[idx];
        case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[idx]);
        case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[idx]);
        default: return 0.0f;
    }
}

void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    for (int64_t r = 0; r < m; r++) {
        for (int64_t o = 0; o < w.n_out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < w.n_in; i++) {
                acc += double(x[r * w.n_in + i]) * load(w, w.index(i, o));
            }
            y[r * w.n_out + o] = float(acc);
        }
    }
}

}  // namespace kvscope::ops::ref
