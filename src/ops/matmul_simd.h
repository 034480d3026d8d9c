// AVX2 building blocks of the matmul kernels and the bulk conversions (internal to ops).
// WeightLoad<D> turns 8 stored weights of dtype D into 8 fp32 lanes: the kernels are
// templated on it so that one loop serves fp32, bf16 and fp16 weights.
#pragma once

#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "core/dtype.h"
#include "ops/matmul.h"

namespace kvscope::ops::mm {

template <DType D> struct WeightLoad;

template <> struct WeightLoad<DType::F32> {
    using T = float;
    static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
    static float load1(const float* p) { return *p; }
};

// bf16 is the top half of an fp32: widen to 32 bits and shift into place (exact).
template <> struct WeightLoad<DType::BF16> {
    using T = uint16_t;
    static __m256 load8(const uint16_t* p) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
    static float load1(const uint16_t* p) { return kvscope::bf16_to_f32(*p); }
};

template <> struct WeightLoad<DType::F16> {
    using T = uint16_t;
    static __m256 load8(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static float load1(const uint16_t* p) { return kvscope::f16_to_f32(*p); }
};

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Four horizontal sums at once: {sum(a), sum(b), sum(c), sum(d)}.
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 ab = _mm256_hadd_ps(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
    const __m256 cd = _mm256_hadd_ps(c, d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// acc rows [0, m) (kPanel floats apart) <- the bias of panel columns [o0, o0 + cols), zero
// past them (or everywhere without a bias).
inline void init_rows(float* acc, int64_t m, const float* bias, int64_t o0, int64_t cols) {
    for (int64_t r = 0; r < m; r++) {
        float* a = acc + r * kPanel;
        std::fill(a, a + kPanel, 0.0f);
        if (bias) std::copy(bias + o0, bias + o0 + cols, a);
    }
}

// y[r, o0 .. o0 + cols) <- acc row r, for rows [0, m): a panel's real columns.
inline void store_rows(const float* acc, int64_t m, float* y, int64_t n_out, int64_t o0, int64_t cols) {
    for (int64_t r = 0; r < m; r++) std::copy(acc + r * kPanel, acc + r * kPanel + cols, y + r * n_out + o0);
}

// A thread's run of panels [p0, p0 + n) cut into P contiguous parts, lengths differing by at
// most one (longer first), walked in steps(): step i reads panel i of every part that has one
// (all of them but the shorter parts' at the last step), P read streams far apart.
struct PanelParts {
    int64_t p0, n;
    int P;
    int64_t steps() const { return (n + P - 1) / P; }
    int64_t start(int64_t s) const { return s * (n / P) + std::min<int64_t>(s, n % P); }
    // The panels of step i into idx[0 .. returned count).
    int at(int64_t i, int64_t* idx) const {
        int S = 0;
        for (int s = 0; s < P; s++)
            if (start(s) + i < start(s + 1)) idx[S++] = p0 + start(s) + i;
        return S;
    }
};

// One step of a PanelParts walk against m rows of x: the step's panels of W (weights of
// storage type T, n_in rows of k each) and their accumulators, m rows of kPanel floats each in
// blocks of `stride` floats of `acc`, started from the bias; store() writes them to y.
template <typename T, int MaxParts>
struct PartsStep {
    int S = 0;
    int64_t idx[MaxParts];
    const T* panel[MaxParts];
    float* acc[MaxParts];

    void begin(const PanelParts& parts, int64_t i, const T* w, int64_t n_in, int64_t n_out, const float* bias,
               int64_t m, float* acc_base, int64_t stride) {
        S = parts.at(i, idx);
        for (int s = 0; s < S; s++) {
            const int64_t o0 = idx[s] * kPanel;
            acc[s] = acc_base + s * stride;
            init_rows(acc[s], m, bias, o0, std::min(kPanel, n_out - o0));
            panel[s] = w + idx[s] * n_in * kPanel;
        }
    }
    void store(int64_t m, float* y, int64_t n_out) const {
        for (int s = 0; s < S; s++) {
            const int64_t o0 = idx[s] * kPanel;
            store_rows(acc[s], m, y, n_out, o0, std::min(kPanel, n_out - o0));
        }
    }
};

}  // namespace kvscope::ops::mm
