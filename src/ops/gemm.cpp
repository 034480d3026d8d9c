// Prefill GEMM: OpenBLAS sgemm (its OpenMP build, so it shares our thread pool and obeys
// omp_set_num_threads), bias added afterwards. Reference: ops::ref::matmul.
//
// For bf16/fp16 weights, and for weights in the Packed layout (which sgemm cannot read), a
// panel of output columns is widened/unpacked to fp32 KN or NK (all threads, the bulk
// converters of ops/convert.h) and multiplied with sgemm. The conversion is O(n_in * n_out)
// against the product's O(m * n_in * n_out), so at prefill sizes it costs a few percent,
// and sgemm's packing and microkernel are hard to beat by hand.
#include "ops/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <cblas.h>
#include <omp.h>

#include "ops/convert.h"

namespace kvscope::ops {
namespace {

// Widens W's panel of output columns [o0, o0 + cols) into dst, keeping the layout:
// KN -> dst[n_in, cols] (row k takes cols contiguous values of W's row k),
// NK -> dst[cols, n_in] (a contiguous run of W's rows).
// Packed -> dst[n_in, cols] (o0 and the panel width are multiples of kPanel).
void widen_panel(const WeightView& w, int64_t o0, int64_t cols, float* dst) {
    if (w.layout == Layout::Packed) {
        const int64_t p0 = o0 / kPanel, np = (cols + kPanel - 1) / kPanel;
        const size_t es = dtype_size(w.dtype);
        const auto* base = static_cast<const uint8_t*>(w.data);
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < w.n_in; k++)
            for (int64_t q = 0; q < np; q++) {
                const int64_t n = std::min(kPanel, cols - q * kPanel);
                const uint8_t* s = base + size_t(((p0 + q) * w.n_in + k) * kPanel) * es;
                float* d = dst + k * cols + q * kPanel;
                if (w.dtype == DType::F32) std::memcpy(d, s, size_t(n) * 4);
                else if (w.dtype == DType::BF16) bf16_to_f32(reinterpret_cast<const uint16_t*>(s), d, n);
                else f16_to_f32(reinterpret_cast<const uint16_t*>(s), d, n);
            }
        return;
    }
    const auto* src = static_cast<const uint16_t*>(w.data);
    const bool bf16 = w.dtype == DType::BF16;
    auto widen = [bf16](const uint16_t* s, float* d, int64_t n) { bf16 ? bf16_to_f32(s, d, n) : f16_to_f32(s, d, n); };
    if (w.layout == Layout::KN) {
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < w.n_in; k++) widen(src + k * w.n_out + o0, dst + k * cols, cols);
    } else {
        // Split the contiguous run into one block per thread (rows can be short).
        const int64_t n = cols * w.n_in;
        const uint16_t* s = src + o0 * w.n_in;
#pragma omp parallel
        {
            const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            const int64_t b = n * t / nt / 8 * 8, e = t + 1 == nt ? n : n * (t + 1) / nt / 8 * 8;
            widen(s + b, dst + b, e - b);
        }
    }
}

void sgemm(const float* x, int64_t m, Layout layout, const float* w, int64_t n_in, int64_t cols, float* y,
           int64_t ldy) {
    // Row-major y[m, cols] = x[m, n_in] . (KN: w[n_in, cols] | NK: w[cols, n_in]^T)
    const bool kn = layout != Layout::NK;  // a widened Packed panel is KN
    cblas_sgemm(CblasRowMajor, CblasNoTrans, kn ? CblasNoTrans : CblasTrans, int(m), int(cols), int(n_in), 1.0f, x,
                int(n_in), w, int(kn ? cols : n_in), 0.0f, y, int(ldy));
}

void add_bias(int64_t m, int64_t n_out, const float* bias, float* y) {
#pragma omp parallel for schedule(static) if (m * n_out >= (1 << 16))
    for (int64_t r = 0; r < m; r++) {
        float* yr = y + r * n_out;
        for (int64_t o = 0; o < n_out; o++) yr[o] += bias[o];
    }
}

}  // namespace

int64_t gemm_panel_cols(const WeightView& w) {
    const int64_t cols = std::max<int64_t>(64, kGemmPanelFloats / std::max<int64_t>(1, w.n_in) / 64 * 64);
    return std::min(cols, w.n_out);
}

void gemm(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    if (m <= 0 || w.n_out <= 0) return;
    if (w.n_in == 0) {
        // BLAS leaves C untouched when k == 0 only if beta == 1; define y explicitly.
        for (int64_t r = 0; r < m; r++)
            for (int64_t o = 0; o < w.n_out; o++) y[r * w.n_out + o] = bias ? bias[o] : 0.0f;
        return;
    }
    if (w.dtype == DType::F32 && w.layout != Layout::Packed) {
        sgemm(x, m, w.layout, static_cast<const float*>(w.data), w.n_in, w.n_out, y, w.n_out);
    } else {
        // Grows to the largest panel this thread has seen, once; steady state allocates nothing.
        thread_local std::vector<float> panel;
        const int64_t cols_max = gemm_panel_cols(w);
        if (int64_t(panel.size()) < cols_max * w.n_in) panel.resize(size_t(cols_max * w.n_in));
        for (int64_t o0 = 0; o0 < w.n_out; o0 += cols_max) {
            const int64_t cols = std::min(cols_max, w.n_out - o0);
            widen_panel(w, o0, cols, panel.data());
            sgemm(x, m, w.layout, panel.data(), w.n_in, cols, y + o0, w.n_out);
        }
    }
    if (bias) add_bias(m, w.n_out, bias, y);
}

}  // namespace kvscope::ops
