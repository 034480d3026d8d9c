// Matrix products against model weights: the only place the forward pass spends most of
// its time. Activations are fp32 row-major; weights are fp32, fp16 or bf16 in one of three
// layouts (the model repacks every matrix to Packed at load); accumulation is fp32.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace kvscope {

// KN: [n_in, n_out] row-major, GPT-2's Conv1D layout (y = x @ W).
// NK: [n_out, n_in] row-major, nn.Linear / embedding layout (y = x @ W^T): the tied LM head.
// Packed: panels of kPanel output columns, [ceil(n_out / kPanel)][n_in][kPanel], the last
//   panel zero-padded. A thread that owns a run of panels reads one contiguous block from
//   start to end, the access pattern memory streams best (docs/KERNELS.md).
enum class Layout : uint8_t { KN, NK, Packed };

inline constexpr int64_t kPanel = 16;

inline int64_t packed_panels(int64_t n_out) { return (n_out + kPanel - 1) / kPanel; }

struct WeightView {
    const void* data = nullptr;
    DType dtype = DType::F32;  // F32, F16 or BF16
    Layout layout = Layout::KN;
    int64_t n_in = 0;
    int64_t n_out = 0;
    // Elements stored (Packed includes its padding).
    int64_t elements() const { return n_in * (layout == Layout::Packed ? packed_panels(n_out) * kPanel : n_out); }
    int64_t bytes() const { return elements() * int64_t(dtype_size(dtype)); }
    // Storage index of W[k, o] (input k, output o).
    int64_t index(int64_t k, int64_t o) const {
        switch (layout) {
            case Layout::KN: return k * n_out + o;
            case Layout::NK: return o * n_in + k;
            default: return (o / kPanel * n_in + k) * kPanel + o % kPanel;
        }
    }
};

namespace ops {

// y[m, n_out] = x[m, n_in] . W  (+ bias[n_out] when bias != nullptr). y must not alias x.
// Threads: splits work over the OpenMP pool; safe to call from outside a parallel region only.
void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);

// Grows the calling thread's scratch for products of up to m rows of n_in inputs (the copy
// of x that the prefill GEMM on Packed weights works from), so that matmul calls of at most
// that size from this thread do not allocate. Without it the first larger call grows it.
void reserve_matmul(int64_t m, int64_t n_in);

namespace ref {
// Plain scalar reference, the definition every optimized kernel is tested against.
void matmul(const float* x, int64_t m, const WeightView& w, const float* bias, float* y);
}  // namespace ref

}  // namespace ops
}  // namespace kvscope
