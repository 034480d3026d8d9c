#pragma once

#include <cstdint>

namespace kvscope::ops {

// y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * w + b, for r < n_rows. y may alias x.
void layernorm(const float* x, int64_t n_rows, int64_t n, const float* w, const float* b, float eps, float* y);
// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w (Llama's RMSNorm). y may alias x.
void rmsnorm(const float* x, int64_t n_rows, int64_t n, const float* w, float eps, float* y);
// SwiGLU: out[r, i] = silu(gu[r, i]) * gu[r, ff + i] for gu [n_rows, 2 * ff] (gate, then up).
void silu_mul(const float* gu, int64_t n_rows, int64_t ff, float* out);
// GPT-2's gelu_new (tanh approximation), in place.
void gelu_new(float* x, int64_t n);
// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

namespace ref {
void layernorm(const float* x, int64_t n_rows, int64_t n, const float* w, const float* b, float eps, float* y);
void gelu_new(float* x, int64_t n);
void rmsnorm(const float* x, int64_t n_rows, int64_t n, const float* w, float eps, float* y);
void silu_mul(const float* gu, int64_t n_rows, int64_t ff, float* out);
}  // namespace ref

}  // namespace kvscope::ops
