#include "ops/norm.h"

#include <cmath>

#include "ops/simd.h"

namespace kvscope::ops {

void layernorm(const float* x, int64_t n_rows, int64_t n, const float* w, const float* b, float eps, float* y) {
#pragma omp parallel for if (n_rows > 8)
    for (int64_t r = 0; r < n_rows; r++) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        // Two passes (mean, then centred variance) keep fp32 accuracy close to PyTorch's.
        __m256 s = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(xr + i));
        float sum = simd::hsum(s);
        for (; i < n; i++) sum += xr[i];
        const float mean = sum / float(n);
        const __m256 vm = _mm256_set1_ps(mean);
        __m256 q = _mm256_setzero_ps();
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + i), vm);
            q = _mm256_fmadd_ps(d, d, q);
        }
        float var = simd::hsum(q);
        for (; i < n; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= float(n);
        const float rstd = 1.0f / std::sqrt(var + eps);
        const __m256 vr = _mm256_set1_ps(rstd);
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), vm), vr);
            _mm256_storeu_ps(yr + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
        }
        for (; i < n; i++) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
    }
}

void gelu_new(float* x, int64_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    // 0.5 v (1 + tanh(u)) with 1 + tanh(u) = 2 - 2 / (exp(2u) + 1): one vector exp per 8 values.
    const int64_t n8 = n / 8 * 8;
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.0f * c),
                                 _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
        __m256 e = simd::exp8(u);
        __m256 one_plus_tanh = _mm256_sub_ps(_mm256_set1_ps(2.0f),
                                             _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), one_plus_tanh));
    }
    for (int64_t i = n8; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
    }
}

void rmsnorm(const float* x, int64_t n_rows, int64_t n, const float* w, float eps, float* y) {
#pragma omp parallel for if (n_rows > 8)
    for (int64_t r = 0; r < n_rows; r++) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        __m256 q = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) q = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(xr + i), q);
        float ss = simd::hsum(q);
        for (; i < n; i++) ss += xr[i] * xr[i];
        const float rs = 1.0f / std::sqrt(ss / float(n) + eps);
        const __m256 vr = _mm256_set1_ps(rs);
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vr), _mm256_loadu_ps(w + i)));
        for (; i < n; i++) yr[i] = xr[i] * rs * w[i];
    }
}

void silu_mul(const float* gu, int64_t n_rows, int64_t ff, float* out) {
    const int64_t f8 = ff / 8 * 8;
#pragma omp parallel for if (n_rows * ff > 65536)
    for (int64_t r = 0; r < n_rows; r++) {
        const float* g = gu + r * 2 * ff;
        const float* u = g + ff;
        float* o = out + r * ff;
        for (int64_t i = 0; i < f8; i += 8) {
            const __m256 vg = _mm256_loadu_ps(g + i);
            const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_setzero_ps(), vg));  // silu(g) = g / (1 + exp(-g))
            const __m256 s = _mm256_div_ps(vg, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
        }
        for (int64_t i = f8; i < ff; i++) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

namespace ref {

void layernorm(const float* x, int64_t n_rows, int64_t n, const float* w, const float* b, float eps, float* y) {
    for (int64_t r = 0; r < n_rows; r++) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += x[r * n + i];
        mean /= double(n);
        for (int64_t i = 0; i < n; i++) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
        var /= double(n);
        double rstd = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < n; i++) y[r * n + i] = float((x[r * n + i] - mean) * rstd * w[i] + b[i]);
    }
}

void gelu_new(float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        x[i] = float(0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    }
}

void rmsnorm(const float* x, int64_t n_rows, int64_t n, const float* w, float eps, float* y) {
    for (int64_t r = 0; r < n_rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += double(x[r * n + i]) * x[r * n + i];
        const double rs = 1.0 / std::sqrt(ss / double(n) + eps);
        for (int64_t i = 0; i < n; i++) y[r * n + i] = float(x[r * n + i] * rs * w[i]);
    }
}

void silu_mul(const float* gu, int64_t n_rows, int64_t ff, float* out) {
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < ff; i++) {
            const double g = gu[r * 2 * ff + i], u = gu[r * 2 * ff + ff + i];
            out[r * ff + i] = float(g / (1.0 + std::exp(-g)) * u);
        }
}

}  // namespace ref
}  // namespace kvscope::ops
