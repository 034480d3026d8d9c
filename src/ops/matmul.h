// Matrix products against model weights: the only place the forward pass spends most of
// its time. Activations are fp32 row-major; weights keep the layout of their checkpoint
// (no copy for fp32) in fp32, fp16 or bf16; accumulation is fp32.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope {

// KN: [n_in, n_out] row-major, GPT-2's Conv1D layout (y = x @ W).
// NK: [n_out, n_in] row-major, nn.Linear / embedding layout (y = x @ W^T): the tied LM head.
enum class Layout : uint8_t { KN, NK };

struct WeightView {
    const void* data = nullptr;
    DType dtype = DType::F32;  // F32, F16 or BF16
    Layout layout = Layout::KN;
    int64_t n_in = 0;
    int64_t n_out = 0;
    int64_t bytes() const { return int64_t(double(n_in) * n_out * dtype_size(dtype)); }
};

namespace ops {

// y[m, n_out] = x[m, n_in] . W  (+ bias[n_out] when bias != nullptr). y must not alias x.
// Threads: splits work over the OpenMP pool; safe to call from outside a parallel region only.
void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);

namespace ref {
// Plain scalar reference, the definition every optimized kernel is tested against.
void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);
}  // namespace ref

}  // namespace ops
}  // namespace kvscope
