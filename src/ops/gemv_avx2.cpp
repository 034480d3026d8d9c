// Decode GEMV/skinny GEMM, AVX2 + FMA, fp32 accumulation. Reference: ops::ref::matmul.
//
// At batch 1 a weight element is used for exactly one FMA, so these kernels are bounded by
// memory bandwidth, not arithmetic: their job is to keep several sequential read streams in
// flight per core and to touch each weight byte once, whatever m is.
//
// KN ([n_in, n_out], y = x @ W): each thread owns a range of output columns. It sweeps 4
//   rows of W at a time (4 concurrent streams) across its columns, adding x[r, k..k+3] *
//   W[k..k+3, j] into y[r, j]. y itself is the accumulator: the column range is cut into
//   tiles small enough that y's m rows of the tile stay in L1 while all of k is swept.
// Packed ([panels][n_in][16], the layout the model uses): each thread owns a run of panels.
//   With 1 to 3 rows of x (decode at batch 1-3) it reads 4 or 2 panels far apart in its run
//   side by side (4 or 2 read streams). Otherwise, per panel,
//   1 to 6 rows of x are multiplied at once with 16 columns in two ymm accumulators per row
//   (and several accumulator pairs over k when there are few rows, to cover the FMA
//   latency); with up to 48 rows the passes go chunk by chunk over k, the first one
//   prefetching ahead, alternating between panels of 3 parts of the run (3 streams). Above
//   that, a GEMM over x copied k-major in blocks of six rows. On CPUs with AVX-512, 4 to 12
//   rows go to gemv_avx512.cpp instead.
// NK ([n_out, n_in], y = x @ W^T): each thread owns a range of output rows and computes 4
//   dot products at once (4 streams), for up to 3 rows of x per pass so that the 4 weight
//   rows are converted from memory once and re-read from L1 for the next rows of x.
#include <algorithm>

#include <immintrin.h>
#include <omp.h>

#include "core/aligned.h"
#include "ops/gemv.h"
#include "ops/gemv_avx512.h"
#include "ops/matmul_simd.h"

namespace kvscope::ops {
namespace {

using mm::init_rows;
using mm::store_rows;
using mm::WeightLoad;

// y tile (m rows x tile columns, fp32) that stays in L1 (32 KiB) next to the weight lines.
constexpr int64_t kTileBytes = 16 * 1024;

// Below this many multiply-adds a second thread costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 16;

// Thread t's share of [0, n), cut at multiples of grain so that ranges start on cache lines.
struct Range {
    int64_t begin, end;
};
Range split(int64_t n, int64_t grain, int nt, int t) {
    const int64_t chunks = (n + grain - 1) / grain;
    const int64_t b = chunks * t / nt, e = chunks * (t + 1) / nt;
    return {std::min(n, b * grain), std::min(n, e * grain)};
}

// ---- KN ----------------------------------------------------------------------------------

// y[r, j] += sum_kk x[r, kk] * W[kk, j] for R rows of x, K rows of W, j in [j0, j1).
// x points at x[0, k], w at W[k, 0], y at y[0, 0]; row strides n_in, n_out, n_out.
// prefetch, when not null, points at the rows of W the next call will read (same columns):
// each thread's share of a row is only a few KiB, too short for the hardware prefetcher to
// ramp up before the stream ends, so the next rows are requested while these are summed.
template <DType D, int R, int K>
void kn_update(const float* x, int64_t n_in, const typename WeightLoad<D>::T* w, int64_t n_out, float* y,
               int64_t j0, int64_t j1, const typename WeightLoad<D>::T* prefetch) {
    using L = WeightLoad<D>;
    __m256 xb[R][K];
    for (int r = 0; r < R; r++)
        for (int kk = 0; kk < K; kk++) xb[r][kk] = _mm256_set1_ps(x[r * n_in + kk]);
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        if (prefetch)
            for (int kk = 0; kk < K; kk++)
                _mm_prefetch(reinterpret_cast<const char*>(prefetch + kk * n_out + j), _MM_HINT_T0);
        __m256 wv[K];
        for (int kk = 0; kk < K; kk++) wv[kk] = L::load8(w + kk * n_out + j);
        for (int r = 0; r < R; r++) {
            float* yr = y + r * n_out + j;
            __m256 acc = _mm256_loadu_ps(yr);
            for (int kk = 0; kk < K; kk++) acc = _mm256_fmadd_ps(xb[r][kk], wv[kk], acc);
            _mm256_storeu_ps(yr, acc);
        }
    }
    for (; j < j1; j++) {
        for (int r = 0; r < R; r++) {
            float acc = y[r * n_out + j];
            for (int kk = 0; kk < K; kk++) acc += x[r * n_in + kk] * L::load1(w + kk * n_out + j);
            y[r * n_out + j] = acc;
        }
    }
}

// All m rows of x against K rows of W, two rows of x per pass (8 broadcasts + 4 weight
// vectors + accumulators fit the 16 ymm registers).
template <DType D, int K>
void kn_rows(const float* x, int64_t m, int64_t n_in, const typename WeightLoad<D>::T* w, int64_t n_out,
             float* y, int64_t j0, int64_t j1, const typename WeightLoad<D>::T* prefetch) {
    // Only the first pass reads W from memory (the others hit L1), so only it prefetches.
    int64_t r = 0;
    for (; r + 2 <= m; r += 2, prefetch = nullptr)
        kn_update<D, 2, K>(x + r * n_in, n_in, w, n_out, y + r * n_out, j0, j1, prefetch);
    if (r < m) kn_update<D, 1, K>(x + r * n_in, n_in, w, n_out, y + r * n_out, j0, j1, prefetch);
}

template <DType D>
void gemv_kn(const float* x, int64_t m, const WeightView& wv, const float* bias, float* y, int64_t c0,
             int64_t c1) {
    using T = typename WeightLoad<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out;
    const int64_t tile = std::max<int64_t>(8, kTileBytes / int64_t(sizeof(float)) / m / 8 * 8);
    for (int64_t jt = c0; jt < c1; jt += tile) {
        const int64_t je = std::min(c1, jt + tile);
        for (int64_t r = 0; r < m; r++) {
            float* yr = y + r * n_out;
            if (bias) std::copy(bias + jt, bias + je, yr + jt);
            else std::fill(yr + jt, yr + je, 0.0f);
        }
        int64_t k = 0;
        for (; k + 4 <= n_in; k += 4) {
            const T* next = k + 8 <= n_in ? w + (k + 4) * n_out : nullptr;
            kn_rows<D, 4>(x + k, m, n_in, w + k * n_out, n_out, y, jt, je, next);
        }
        for (; k < n_in; k++) kn_rows<D, 1>(x + k, m, n_in, w + k * n_out, n_out, y, jt, je, nullptr);
    }
}

// ---- Packed -------------------------------------------------------------------------------

// acc[r][0..16) += sum_{k in [k0, k1)} x[r, k] * P[k, 0..16) for R rows of x over one panel
// P ([n_in][16]). U independent accumulator pairs per row cover the FMA latency when R is
// small; at most 12 accumulators + 2 weight vectors + 1 broadcast fit the 16 ymm registers.
// The loops over r and u are unrolled by pragma: without it GCC 12 kept a copy of the
// accumulators on the stack and stored all of them every k (prefill at half speed).
// With Prefetch, each k also requests the weights kPrefetchAhead rows of k further on (into
// the next panel near the end, which is read next; past the last one a prefetch is a no-op).
constexpr int64_t kPrefetchAhead = 256;

template <DType D, int R, int U, bool Prefetch>
void panel_pass(const float* x, int64_t n_in, const typename WeightLoad<D>::T* p, int64_t k0, int64_t k1,
                float* acc) {
    using L = WeightLoad<D>;
    __m256 a[R][U][2];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        a[r][0][0] = _mm256_loadu_ps(acc + r * kPanel);
        a[r][0][1] = _mm256_loadu_ps(acc + r * kPanel + 8);
        #pragma GCC unroll 8
        for (int u = 1; u < U; u++) a[r][u][0] = a[r][u][1] = _mm256_setzero_ps();
    }
    int64_t k = k0;
    for (; k + U <= k1; k += U) {
        #pragma GCC unroll 8
        for (int u = 0; u < U; u++) {
            if constexpr (Prefetch)
                _mm_prefetch(reinterpret_cast<const char*>(p + (k + u + kPrefetchAhead) * kPanel), _MM_HINT_T0);
            const __m256 w0 = L::load8(p + (k + u) * kPanel), w1 = L::load8(p + (k + u) * kPanel + 8);
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m256 xb = _mm256_broadcast_ss(x + r * n_in + k + u);
                a[r][u][0] = _mm256_fmadd_ps(xb, w0, a[r][u][0]);
                a[r][u][1] = _mm256_fmadd_ps(xb, w1, a[r][u][1]);
            }
        }
    }
    for (; k < k1; k++) {
        const __m256 w0 = L::load8(p + k * kPanel), w1 = L::load8(p + k * kPanel + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 xb = _mm256_broadcast_ss(x + r * n_in + k);
            a[r][0][0] = _mm256_fmadd_ps(xb, w0, a[r][0][0]);
            a[r][0][1] = _mm256_fmadd_ps(xb, w1, a[r][0][1]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int u = 1; u < U; u++) {
            a[r][0][0] = _mm256_add_ps(a[r][0][0], a[r][u][0]);
            a[r][0][1] = _mm256_add_ps(a[r][0][1], a[r][u][1]);
        }
        _mm256_storeu_ps(acc + r * kPanel, a[r][0][0]);
        _mm256_storeu_ps(acc + r * kPanel + 8, a[r][0][1]);
    }
}

// Rows of x per pass over a panel, of m rows with `left` still to do: up to 6. 5 rows go as
// 3 + 2 rather than 4 + 1. 8 rows go as 6 + 2, not 4 + 4: batch-8 decode steps (in-process
// A/B, 7-9 rounds each) bf16 8.92 -> 8.17 and 10.63 -> 9.93 ms, fp32 11.24 -> 11.00 and
// 8.76 -> 8.98 ms (no change): the 6-row pass loads and widens each weight vector once for
// 12 FMAs. 4 and 6 rows, which would fit one pass, go in halves (see gemv_packed).
int pass_rows(int64_t m, int64_t left) {
    if (m == 4 || m == 6) return int(m / 2);
    return left >= 6 ? 6 : left >= 4 && left != 5 ? 4 : int(std::min<int64_t>(left, 3));
}

template <DType D, bool Prefetch>
void panel_rows(int R, const float* x, int64_t n_in, const typename WeightLoad<D>::T* p, int64_t k0, int64_t k1,
                float* acc) {
    switch (R) {
        case 6: panel_pass<D, 6, 1, Prefetch>(x, n_in, p, k0, k1, acc); break;
        case 4: panel_pass<D, 4, 1, Prefetch>(x, n_in, p, k0, k1, acc); break;
        case 3: panel_pass<D, 3, 2, Prefetch>(x, n_in, p, k0, k1, acc); break;
        case 2: panel_pass<D, 2, 2, Prefetch>(x, n_in, p, k0, k1, acc); break;
        default: panel_pass<D, 1, 4, Prefetch>(x, n_in, p, k0, k1, acc); break;
    }
}

// ---- Few rows of x: several panels at once ------------------------------------------------

// acc[s][r * 16 + (0..16)] += sum_k x[r, k] * P_s[k, 0..16) for R rows of x and S panels read
// side by side (S streams), U accumulator pairs per panel and row. Each panel's weight vectors
// are loaded (and widened) once per k for all R rows; at most 12 accumulators.
// Bytes ahead of each panel stream that the batch-1..3 kernel requests with a software
// prefetch, one per cache line. The hardware prefetchers alone left 16-bit weights well under
// the read floor. Intel VM, `kvscope run --model smollm-135m --dtype bf16`, 200 tokens, two
// rounds: p50 step 10.2-10.4 ms without (the read floor: 7.4 ms), 8.3-9.0 at 1 KiB, 7.8-8.5 at
// 2 KiB, 8.1-8.6 at 4 KiB, 8.5-9.6 at 8 KiB; distilgpt2 bf16 5.3-5.4 -> 3.9-4.0 ms, fp32
// 9.7-9.8 -> 9.0-9.2 ms.
constexpr int64_t kFewRowsPrefetchBytes = 2048;

template <DType D, int R, int S, int U>
void panels_side_by_side(const float* x, int64_t n_in, const typename WeightLoad<D>::T* const* p,
                         float* const* acc) {
    static_assert(R * S * U * 2 <= 12, "accumulators, weight vectors and a broadcast fit 16 ymm registers");
    using L = WeightLoad<D>;
    __m256 a[S][R][U][2];
    #pragma GCC unroll 8
    for (int s = 0; s < S; s++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            a[s][r][0][0] = _mm256_loadu_ps(acc[s] + r * kPanel);
            a[s][r][0][1] = _mm256_loadu_ps(acc[s] + r * kPanel + 8);
            #pragma GCC unroll 8
            for (int u = 1; u < U; u++) a[s][r][u][0] = a[s][r][u][1] = _mm256_setzero_ps();
        }
    }
    constexpr int64_t pf = kFewRowsPrefetchBytes / int64_t(kPanel * sizeof(typename L::T));  // rows of k
    const auto step = [&](int64_t k, int u) __attribute__((always_inline)) {
        #pragma GCC unroll 8
        for (int s = 0; s < S; s++) {
            if (sizeof(typename L::T) == 4 || (k & 1) == 0)  // a row of k is 64 bytes in fp32, 32 in bf16/fp16
                _mm_prefetch(reinterpret_cast<const char*>(p[s] + (k + pf) * kPanel), _MM_HINT_T0);
            const __m256 w0 = L::load8(p[s] + k * kPanel), w1 = L::load8(p[s] + k * kPanel + 8);
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m256 xb = _mm256_broadcast_ss(x + r * n_in + k);
                a[s][r][u][0] = _mm256_fmadd_ps(xb, w0, a[s][r][u][0]);
                a[s][r][u][1] = _mm256_fmadd_ps(xb, w1, a[s][r][u][1]);
            }
        }
    };
    int64_t k = 0;
    for (; k + U <= n_in; k += U) {
        #pragma GCC unroll 8
        for (int u = 0; u < U; u++) step(k + u, u);
    }
    for (; k < n_in; k++) step(k, 0);
    #pragma GCC unroll 8
    for (int s = 0; s < S; s++) {
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            #pragma GCC unroll 8
            for (int u = 1; u < U; u++) {
                a[s][r][0][0] = _mm256_add_ps(a[s][r][0][0], a[s][r][u][0]);
                a[s][r][0][1] = _mm256_add_ps(a[s][r][0][1], a[s][r][u][1]);
            }
            _mm256_storeu_ps(acc[s] + r * kPanel, a[s][r][0][0]);
            _mm256_storeu_ps(acc[s] + r * kPanel + 8, a[s][r][0][1]);
        }
    }
}

// Panels [p0, p1) against m = 1 to 3 rows of x (decode at batch 1 to 3). The run is cut into
// contiguous parts whose panels are read side by side, one from each part: a thread that
// streams one block front to back reads memory slower than one that reads several blocks far
// apart at once (`kvscope hw`: 58 vs 76 GB/s for 1 and 4 streams per thread in one run).
// One row takes 4 parts, two or three rows 2 (4 panels' accumulators would not fit the
// registers). distilgpt2 decode steps, in-process A/B against one panel after another:
// batch 1 fp32 6.1-6.9 -> 5.1-5.6 ms, bf16 3.6 -> 3.2; batch 2 fp32 8.8 -> 7.1 and
// 7.7 -> 4.6; batch 3 11.0 -> 7.4 and 9.7 -> 5.0 (docs/KERNELS.md).
constexpr int kMaxParts = 4;
constexpr int64_t kFewRows = 3;

template <DType D>
void gemv_few_rows(const float* x, int64_t m, const WeightView& wv, const float* bias, float* y, int64_t p0,
                   int64_t p1) {
    using T = typename WeightLoad<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out;
    const mm::PanelParts parts{p0, p1 - p0, m == 1 ? 4 : 2};
    alignas(32) float acc[kMaxParts * kFewRows * kPanel];
    mm::PartsStep<T, kMaxParts> st;
    for (int64_t i = 0; i < parts.steps(); i++) {
        st.begin(parts, i, w, n_in, n_out, bias, m, acc, kFewRows * kPanel);
        const T* const* panel = st.panel;
        float* const* accp = st.acc;
        switch (m * 8 + st.S) {
            case 1 * 8 + 4: panels_side_by_side<D, 1, 4, 1>(x, n_in, panel, accp); break;
            case 1 * 8 + 3: panels_side_by_side<D, 1, 3, 2>(x, n_in, panel, accp); break;
            case 1 * 8 + 2: panels_side_by_side<D, 1, 2, 2>(x, n_in, panel, accp); break;
            case 1 * 8 + 1: panels_side_by_side<D, 1, 1, 4>(x, n_in, panel, accp); break;
            case 2 * 8 + 2: panels_side_by_side<D, 2, 2, 1>(x, n_in, panel, accp); break;
            case 2 * 8 + 1: panels_side_by_side<D, 2, 1, 2>(x, n_in, panel, accp); break;
            case 3 * 8 + 2: panels_side_by_side<D, 3, 2, 1>(x, n_in, panel, accp); break;
            default: panels_side_by_side<D, 3, 1, 2>(x, n_in, panel, accp); break;  // m = 3, S = 1
        }
        st.store(m, y, n_out);
    }
}

// Panels [p0, p1) against kFewRows < m <= kChunkedRows rows of x.
//
// Batched decode takes two or more passes per panel (8 rows are 6 + 2). Done one whole pass
// after another, the first would read the panel from memory and the others from L2, leaving
// the memory idle during those; instead the panel goes in chunks of kChunk rows of k, every
// pass over one chunk before the next (the chunk stays in L1), and the first pass prefetches
// kPrefetchAhead rows ahead so that memory keeps streaming while the other passes compute
// (AMD VM, batch-8 steps 14.9 -> 10.3 ms; without the prefetch 17.8). 4 and 6 rows, which
// would fit one pass, also go this way, in halves (batch-4 11.5 -> 8.4 ms, batch-6 11.9 ->
// 7.9 against one pass). The thread's run is cut into kChunkedParts contiguous parts and
// the chunks of one panel from each part alternate, so that three streams are in flight, as
// at batch 1-3. Intel VM, fp32 decode steps (kvscope run, AVX2 kernels, alternating rounds):
// one part in chunks of 64 rows against three parts in chunks of 8: batch 4 19.8-20.0 ->
// 14.4-14.6 ms, batch 8 19.3-20.5 -> 16.4-16.8, batch 16 29.6-30.8 -> 25.2-25.3; three parts
// in chunks of 64 were slower than one (21.5-22.5 ms at batch 8), in chunks of 16 between
// (16.8-17.6). docs/KERNELS.md.
// Up to 48 rows this beats gemm_panels below (fp32, 2 threads, Intel VM: 105/102, 121/114 and
// 134/128 GFLOP/s at 24, 32 and 48 rows on the QKV / MLP-down shapes against 87/90, 94/96 and
// 115/107; at 64 rows 122/120 for gemm_panels; measured with one part in chunks of 64).
constexpr int64_t kChunk = 8;
constexpr int kChunkedParts = 3;
constexpr int64_t kChunkedRows = 48;

template <DType D>
void gemv_packed(const float* x, int64_t m, const WeightView& wv, const float* bias, float* y, int64_t p0,
                 int64_t p1) {
    using T = typename WeightLoad<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out;
    const mm::PanelParts parts{p0, p1 - p0, kChunkedParts};
    alignas(32) float acc[kChunkedParts * kChunkedRows * kPanel];
    mm::PartsStep<T, kChunkedParts> st;
    for (int64_t i = 0; i < parts.steps(); i++) {
        st.begin(parts, i, w, n_in, n_out, bias, m, acc, kChunkedRows * kPanel);
        for (int64_t k0 = 0; k0 < n_in; k0 += kChunk) {
            const int64_t k1 = std::min(n_in, k0 + kChunk);
            for (int s = 0; s < st.S; s++)
                for (int64_t r = 0; r < m;) {
                    const int R = pass_rows(m, m - r);
                    if (r == 0) panel_rows<D, true>(R, x, n_in, st.panel[s], k0, k1, st.acc[s]);
                    else panel_rows<D, false>(R, x + r * n_in, n_in, st.panel[s], k0, k1, st.acc[s] + r * kPanel);
                    r += R;
                }
        }
        st.store(m, y, n_out);
    }
}

// ---- Prefill-sized m: a GEMM over x packed six rows at a time ------------------------------

constexpr int64_t kXRows = 6;  // rows of x per packed block: the 6x16 register block
int64_t x_blocks(int64_t m) { return (m + kXRows - 1) / kXRows; }

// out[r][0..16) = in[r][0..16) + sum_{k < kn} xp[k * 6 + r] * P[k, 0..16) for R <= 6 rows of
// x packed k-major (six values per k; rows past R unused) over kn rows of one panel. in and
// out rows are in_stride and out_stride floats apart (in_stride 0: the same row, the bias).
template <DType D, int R>
void packed_x_pass(const float* xp, const typename WeightLoad<D>::T* p, int64_t kn, const float* in,
                   int64_t in_stride, float* out, int64_t out_stride) {
    using L = WeightLoad<D>;
    __m256 a[R][2];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        a[r][0] = _mm256_loadu_ps(in + r * in_stride);
        a[r][1] = _mm256_loadu_ps(in + r * in_stride + 8);
    }
    for (int64_t k = 0; k < kn; k++) {
        const __m256 w0 = L::load8(p + k * kPanel), w1 = L::load8(p + k * kPanel + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m256 xb = _mm256_broadcast_ss(xp + k * kXRows + r);
            a[r][0] = _mm256_fmadd_ps(xb, w0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(xb, w1, a[r][1]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(out + r * out_stride, a[r][0]);
        _mm256_storeu_ps(out + r * out_stride + 8, a[r][1]);
    }
}

template <DType D>
void packed_x_rows(int R, const float* xp, const typename WeightLoad<D>::T* p, int64_t kn, const float* in,
                   int64_t in_stride, float* out, int64_t out_stride) {
    switch (R) {
        case 6: packed_x_pass<D, 6>(xp, p, kn, in, in_stride, out, out_stride); break;
        case 5: packed_x_pass<D, 5>(xp, p, kn, in, in_stride, out, out_stride); break;
        case 4: packed_x_pass<D, 4>(xp, p, kn, in, in_stride, out, out_stride); break;
        case 3: packed_x_pass<D, 3>(xp, p, kn, in, in_stride, out, out_stride); break;
        case 2: packed_x_pass<D, 2>(xp, p, kn, in, in_stride, out, out_stride); break;
        default: packed_x_pass<D, 1>(xp, p, kn, in, in_stride, out, out_stride); break;
    }
}

// x's rows [6 * b0, 6 * b1) copied k-major into blocks of six rows: block b at xp + b * n_in * 6
// holds x[6b + r, k] at k * 6 + r (rows past m left unset: never read).
void pack_x_blocks(const float* x, int64_t m, int64_t n_in, int64_t b0, int64_t b1, float* xp) {
    for (int64_t b = b0; b < b1; b++) {
        const int64_t R = std::min(kXRows, m - kXRows * b);
        float* dst = xp + b * n_in * kXRows;
        for (int64_t r = 0; r < R; r++) {
            const float* src = x + (kXRows * b + r) * n_in;
            for (int64_t k = 0; k < n_in; k++) dst[k * kXRows + r] = src[k];
        }
    }
}

// Panels [p0, p1) against m > kChunkedRows rows of x (prefill, no-cache steps), blocked as a
// GEMM over x packed by pack_x_blocks: per kBlockK rows of k, each panel's share (16 KiB of
// fp32) stays in L1 while every block of six rows runs over it, reading its six values per
// k from one line; x's share of those rows of k (m x 1 KiB) stays in L2 across the panels.
// y holds the sums between k blocks. Whole-panel passes over x rows read in place leave the
// panel in L2 and the six rows' broadcasts in six lines 3-12 KiB apart (docs/KERNELS.md, Prefill).
constexpr int64_t kBlockK = 256;

template <DType D>
void gemm_panels(const float* xp, int64_t m, const WeightView& wv, const float* bias, float* y, int64_t p0,
                 int64_t p1) {
    using T = typename WeightLoad<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out, blocks = x_blocks(m);
    alignas(32) static constexpr float kZeros[kPanel] = {};
    alignas(32) float tile[kXRows * kPanel];
    for (int64_t k0 = 0; k0 < n_in; k0 += kBlockK) {
        const int64_t kn = std::min(kBlockK, n_in - k0);
        for (int64_t p = p0; p < p1; p++) {
            const int64_t o0 = p * kPanel, cols = std::min(kPanel, n_out - o0);
            const T* panel = w + (p * n_in + k0) * kPanel;
            for (int64_t b = 0; b < blocks; b++) {
                const int R = int(std::min(kXRows, m - kXRows * b));
                const float* xb = xp + (b * n_in + k0) * kXRows;
                float* yb = y + kXRows * b * n_out + o0;
                // The sums so far: the bias (or zero) before the first k block, then y.
                const float* in = k0 > 0 ? yb : bias ? bias + o0 : kZeros;
                const int64_t in_stride = k0 > 0 ? n_out : 0;
                // The next block's first lines of x and its rows of y (read if k0 > 0, written
                // in any case): fetched while this block computes instead of stalling its start.
                if (b + 1 < blocks) {
                    const float* xn = xb + n_in * kXRows;
                    for (int l = 0; l < 4; l++) _mm_prefetch(reinterpret_cast<const char*>(xn + 16 * l), _MM_HINT_T0);
                    const float* yn = yb + kXRows * n_out;
                    const int Rn = int(std::min(kXRows, m - kXRows * (b + 1)));
                    for (int r = 0; r < Rn; r++) {
                        _mm_prefetch(reinterpret_cast<const char*>(yn + r * n_out), _MM_HINT_T0);
                        _mm_prefetch(reinterpret_cast<const char*>(yn + r * n_out + kPanel - 1), _MM_HINT_T0);
                    }
                }
                if (cols == kPanel) {
                    packed_x_rows<D>(R, xb, panel, kn, in, in_stride, yb, n_out);
                } else {  // the last panel's columns past n_out: computed in a tile, dropped
                    for (int r = 0; r < R; r++) {
                        std::copy(in + r * in_stride, in + r * in_stride + cols, tile + r * kPanel);
                        std::fill(tile + r * kPanel + cols, tile + (r + 1) * kPanel, 0.0f);
                    }
                    packed_x_rows<D>(R, xb, panel, kn, tile, kPanel, tile, kPanel);
                    for (int r = 0; r < R; r++) std::copy(tile + r * kPanel, tile + r * kPanel + cols, yb + r * n_out);
                }
            }
        }
    }
}

// The calling thread's buffer for x packed by pack_x_blocks, grown on demand (the model
// reserves its largest at construction, so forward passes do not allocate).
struct PackedX {
    AlignedArray<float> buf;
    size_t floats = 0;
};
thread_local PackedX t_packed_x;

float* packed_x_buffer(int64_t m, int64_t n_in) {
    const size_t need = size_t(x_blocks(m) * kXRows * n_in);
    if (t_packed_x.floats < need) {
        t_packed_x.buf = make_aligned<float>(need);
        t_packed_x.floats = need;
    }
    return t_packed_x.buf.get();
}

// ---- NK ----------------------------------------------------------------------------------

// y[r, o] = bias[o] + dot(x[r, :], W[o, :]) for R rows of x and NO rows of W.
// x points at x[0, 0], w at W[o, 0], y at y[0, o], bias at bias[o] (or null).
template <DType D, int R, int NO>
void nk_block(const float* x, int64_t n_in, const typename WeightLoad<D>::T* w, float* y, int64_t n_out,
              const float* bias) {
    using L = WeightLoad<D>;
    __m256 acc[R][NO];
    for (int r = 0; r < R; r++)
        for (int o = 0; o < NO; o++) acc[r][o] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n_in; k += 8) {
        __m256 wv[NO];
        for (int o = 0; o < NO; o++) wv[o] = L::load8(w + o * n_in + k);
        for (int r = 0; r < R; r++) {
            const __m256 xv = _mm256_loadu_ps(x + r * n_in + k);
            for (int o = 0; o < NO; o++) acc[r][o] = _mm256_fmadd_ps(wv[o], xv, acc[r][o]);
        }
    }
    for (int r = 0; r < R; r++) {
        float out[NO];
        if constexpr (NO == 4) {
            _mm_storeu_ps(out, mm::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        } else {
            for (int o = 0; o < NO; o++) out[o] = mm::hsum(acc[r][o]);
        }
        for (int o = 0; o < NO; o++) {
            float tail = 0.0f;
            for (int64_t kt = k; kt < n_in; kt++) tail += x[r * n_in + kt] * L::load1(w + o * n_in + kt);
            y[r * n_out + o] = out[o] + tail + (bias ? bias[o] : 0.0f);
        }
    }
}

// NO rows of W against all m rows of x, in passes of up to 3 rows (12 accumulators).
template <DType D, int NO>
void nk_rows(const float* x, int64_t m, int64_t n_in, const typename WeightLoad<D>::T* w, float* y,
             int64_t n_out, const float* bias) {
    int64_t r = 0;
    while (r < m) {
        const int64_t left = m - r;
        // 4 rows go as 2 + 2 rather than 3 + 1: the pass count is the same, the FMAs per
        // weight load are better balanced.
        if (left >= 3 && left != 4) {
            nk_block<D, 3, NO>(x + r * n_in, n_in, w, y + r * n_out, n_out, bias);
            r += 3;
        } else if (left >= 2) {
            nk_block<D, 2, NO>(x + r * n_in, n_in, w, y + r * n_out, n_out, bias);
            r += 2;
        } else {
            nk_block<D, 1, NO>(x + r * n_in, n_in, w, y + r * n_out, n_out, bias);
            r += 1;
        }
    }
}

template <DType D>
void gemv_nk(const float* x, int64_t m, const WeightView& wv, const float* bias, float* y, int64_t o0,
             int64_t o1) {
    using T = typename WeightLoad<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out;
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4)
        nk_rows<D, 4>(x, m, n_in, w + o * n_in, y + o, n_out, bias ? bias + o : nullptr);
    for (; o < o1; o++) nk_rows<D, 1>(x, m, n_in, w + o * n_in, y + o, n_out, bias ? bias + o : nullptr);
}

template <DType D>
void gemv_typed(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    const bool parallel = w.n_in * w.n_out * m >= kMinParallelWork;
    const bool gemm = w.layout == Layout::Packed && m > kChunkedRows;
    float* xp = gemm ? packed_x_buffer(m, w.n_in) : nullptr;
#pragma omp parallel if (parallel)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (gemm) {
            const Range br = split(x_blocks(m), 1, nt, t);
            pack_x_blocks(x, m, w.n_in, br.begin, br.end, xp);
#pragma omp barrier
            const Range pr = split(packed_panels(w.n_out), 1, nt, t);
            if (pr.begin < pr.end) gemm_panels<D>(xp, m, w, bias, y, pr.begin, pr.end);
        } else if (w.layout == Layout::Packed) {
            // Whole panels per thread: each thread owns one contiguous block.
            const Range pr = split(packed_panels(w.n_out), 1, nt, t);
            if (pr.begin < pr.end) {
                if (m <= kFewRows) gemv_few_rows<D>(x, m, w, bias, y, pr.begin, pr.end);
                else if (m <= avx512::kMaxRows && avx512::enabled())
                    avx512::gemv_packed(x, m, w, bias, y, pr.begin, pr.end);
                else gemv_packed<D>(x, m, w, bias, y, pr.begin, pr.end);
            }
        } else if (w.layout == Layout::KN) {
            // 16 columns: a cache line of fp32, so neighbouring threads never share one of y.
            const Range c = split(w.n_out, 16, nt, t);
            if (c.begin < c.end) gemv_kn<D>(x, m, w, bias, y, c.begin, c.end);
        } else {
            const Range o = split(w.n_out, 4, nt, t);
            if (o.begin < o.end) gemv_nk<D>(x, m, w, bias, y, o.begin, o.end);
        }
    }
}

}  // namespace

void reserve_gemm_rows(int64_t m, int64_t n_in) {
    if (m > kChunkedRows) packed_x_buffer(m, n_in);
}

void gemv(const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    if (m <= 0 || w.n_out <= 0) return;
    switch (w.dtype) {
        case DType::F32: gemv_typed<DType::F32>(x, m, w, bias, y); break;
        case DType::BF16: gemv_typed<DType::BF16>(x, m, w, bias, y); break;
        case DType::F16: gemv_typed<DType::F16>(x, m, w, bias, y); break;
        default: break;
    }
}

}  // namespace kvscope::ops
