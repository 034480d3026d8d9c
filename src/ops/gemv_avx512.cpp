// Batched decode (4 to 12 rows of x) on Packed weights with AVX-512, where the CPU has it.
//
// A 16-column panel row is one zmm register, so up to 12 rows of x go in one pass over the
// panel, each weight vector loaded and widened once for all of them: per 64 bytes of fp32
// weights, 8 rows take 8 FMAs against the AVX2 kernel's 16 in two passes (6 + 2) over chunks
// of the panel. 32 registers also leave room to read 3 (up to 8 rows) or 2 panels side by
// side, the access pattern that streams memory best. The AVX2 kernel (gemv_avx2.cpp) serves
// more rows, and every row count on other CPUs. Only these functions are compiled for AVX-512 (a target attribute, not a
// file-wide -mavx512f, so that no inline function shared with the AVX2 code is built with
// 512-bit instructions).
#include "ops/gemv_avx512.h"

// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_ps behind _mm512_set1_ps and
// the conversions: "'__Y' may be used uninitialized"), a false positive of the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <cpuid.h>

#include <immintrin.h>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/matmul_simd.h"

#define KVSCOPE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

namespace kvscope::ops::avx512 {
namespace {

bool cpu_has_avx512() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
    // The OS must save the opmask and all 32 zmm registers (XCR0 bits 5, 6, 7) with x87/SSE/AVX.
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));  // F, BW, VL
}

bool enabled_at_start() {
    const char* env = std::getenv("KVSCOPE_AVX512");
    return available() && !(env && std::string(env) == "0");
}

std::atomic<bool> g_enabled{enabled_at_start()};

template <DType D> struct Load16;
template <> struct Load16<DType::F32> {
    using T = float;
    KVSCOPE_AVX512 static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
};
template <> struct Load16<DType::BF16> {
    using T = uint16_t;
    KVSCOPE_AVX512 static __m512 load(const uint16_t* p) {
        const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
};
template <> struct Load16<DType::F16> {
    using T = uint16_t;
    KVSCOPE_AVX512 static __m512 load(const uint16_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
};

constexpr int64_t kPanel16 = 16;
static_assert(kPanel16 == kPanel, "one zmm register per panel row");

constexpr int64_t kPrefetchAhead = 256;  // rows of a panel ahead that each k requests

// acc[s][r * 16 + (0..16)] += sum over k of x[r, k] * P_s[k, 0..16) for R rows of x and S
// panels read side by side (S streams), one accumulator per row and panel; each k also
// requests the panels' rows kPrefetchAhead further on.
template <DType D, int R, int S>
KVSCOPE_AVX512 void pass_side_by_side(const float* x, int64_t n_in, const typename Load16<D>::T* const* p,
                                      float* const* acc) {
    static_assert(R * S <= 24, "accumulators, weight vectors and a broadcast fit 32 zmm registers");
    __m512 a[S][R];
    for (int s = 0; s < S; s++)
        for (int r = 0; r < R; r++) a[s][r] = _mm512_loadu_ps(acc[s] + r * kPanel);
    for (int64_t k = 0; k < n_in; k++) {
        __m512 w[S];
        for (int s = 0; s < S; s++) {
            _mm_prefetch(reinterpret_cast<const char*>(p[s] + (k + kPrefetchAhead) * kPanel), _MM_HINT_T0);
            w[s] = Load16<D>::load(p[s] + k * kPanel);
        }
        for (int r = 0; r < R; r++) {
            const __m512 xb = _mm512_set1_ps(x[r * n_in + k]);
            for (int s = 0; s < S; s++) a[s][r] = _mm512_fmadd_ps(xb, w[s], a[s][r]);
        }
    }
    for (int s = 0; s < S; s++)
        for (int r = 0; r < R; r++) _mm512_storeu_ps(acc[s] + r * kPanel, a[s][r]);
}

// Panels read side by side for R rows: as many as 24 accumulators allow, at most 3. Batch-8
// decode steps, fp32, distilgpt2, Intel VM (kvscope run, 3 alternating rounds, p50): one
// panel 19.2 / 19.6 / 19.5 ms, 2 side by side 15.6 / 15.8 / 15.8, 3 side by side 15.1 /
// 15.3 / 15.4; without the prefetch 17.8-18.8 and 17.3-17.9 (docs/KERNELS.md).
constexpr int kMaxSideBySide = 3;
constexpr int side_by_side(int R) { return std::min(kMaxSideBySide, 24 / R); }

template <DType D, int R>
KVSCOPE_AVX512 void rows_side_by_side(int S, const float* x, int64_t n_in, const typename Load16<D>::T* const* p,
                                      float* const* acc) {
    if constexpr (side_by_side(R) >= 3)
        if (S == 3) return pass_side_by_side<D, R, 3>(x, n_in, p, acc);
    if constexpr (side_by_side(R) >= 2)
        if (S == 2) return pass_side_by_side<D, R, 2>(x, n_in, p, acc);
    pass_side_by_side<D, R, 1>(x, n_in, p, acc);
}

// Panels [p0, p1) against m <= kMaxRows rows: the run is cut into S contiguous parts read
// side by side, panel i of every part at once (as the AVX2 kernel does for 1 to 3 rows).
template <DType D>
KVSCOPE_AVX512 void gemv_one_pass(const float* x, int64_t m, const WeightView& wv, const float* bias, float* y,
                                  int64_t p0, int64_t p1) {
    using T = typename Load16<D>::T;
    const T* w = static_cast<const T*>(wv.data);
    const int64_t n_in = wv.n_in, n_out = wv.n_out;
    const mm::PanelParts parts{p0, p1 - p0, side_by_side(int(m))};
    alignas(64) float acc[kMaxSideBySide * kMaxRows * kPanel];
    mm::PartsStep<T, kMaxSideBySide> st;
    for (int64_t i = 0; i < parts.steps(); i++) {
        st.begin(parts, i, w, n_in, n_out, bias, m, acc, kMaxRows * kPanel);
        const int S = st.S;
        const T* const* panel = st.panel;
        float* const* accp = st.acc;
        switch (m) {
            case 1: rows_side_by_side<D, 1>(S, x, n_in, panel, accp); break;
            case 2: rows_side_by_side<D, 2>(S, x, n_in, panel, accp); break;
            case 3: rows_side_by_side<D, 3>(S, x, n_in, panel, accp); break;
            case 4: rows_side_by_side<D, 4>(S, x, n_in, panel, accp); break;
            case 5: rows_side_by_side<D, 5>(S, x, n_in, panel, accp); break;
            case 6: rows_side_by_side<D, 6>(S, x, n_in, panel, accp); break;
            case 7: rows_side_by_side<D, 7>(S, x, n_in, panel, accp); break;
            case 8: rows_side_by_side<D, 8>(S, x, n_in, panel, accp); break;
            case 9: rows_side_by_side<D, 9>(S, x, n_in, panel, accp); break;
            case 10: rows_side_by_side<D, 10>(S, x, n_in, panel, accp); break;
            case 11: rows_side_by_side<D, 11>(S, x, n_in, panel, accp); break;
            default: rows_side_by_side<D, 12>(S, x, n_in, panel, accp); break;
        }
        st.store(m, y, n_out);
    }
}

}  // namespace

bool available() {
    static const bool has = cpu_has_avx512();  // CPUID and XGETBV once
    return has;
}

bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

bool set_enabled(bool on) {
    const bool was = enabled();
    g_enabled.store(on && available(), std::memory_order_relaxed);
    return was;
}

const char* kernels_summary() {
    if (enabled()) return "AVX2/FMA/F16C; batched decode (4-12 rows) AVX-512";
    if (available()) return "AVX2/FMA/F16C everywhere (AVX-512 turned off)";
    return "AVX2/FMA/F16C everywhere (no AVX-512 on this CPU)";
}

void gemv_packed(const float* x, int64_t m, const WeightView& w, const float* bias, float* y, int64_t p0, int64_t p1) {
    if (m < 1 || m > kMaxRows) fail("avx512::gemv_packed: {} rows of x; it takes 1 to {}", m, kMaxRows);
    switch (w.dtype) {
        case DType::F32: gemv_one_pass<DType::F32>(x, m, w, bias, y, p0, p1); break;
        case DType::BF16: gemv_one_pass<DType::BF16>(x, m, w, bias, y, p0, p1); break;
        case DType::F16: gemv_one_pass<DType::F16>(x, m, w, bias, y, p0, p1); break;
        default: break;
    }
}

}  // namespace kvscope::ops::avx512
