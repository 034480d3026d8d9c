// AVX2 helpers shared by the ops kernels: horizontal sum and dtype-dispatched loads of 8 (or
// 1) stored values widened to fp32.
#pragma once

#include <cstdint>

#include <immintrin.h>

#include "core/dtype.h"

namespace kvscope::ops::simd {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// exp of eight floats, Cephes' polynomial: within 2 ulp of std::exp over [-87, 88]; inputs
// beyond are clamped (exp(-87.3) ~ 1e-38 and exp(88.3) ~ 2e38, fine for softmax and tanh).
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

// base[idx .. idx+8) stored as T, widened to fp32 (exact for all three types).
template <DType T>
inline __m256 load8(const void* base, int64_t idx) {
    if constexpr (T == DType::F32) {
        return _mm256_loadu_ps(static_cast<const float*>(base) + idx);
    } else if constexpr (T == DType::F16) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx)));
    } else {
        static_assert(T == DType::BF16, "load8: fp32, fp16 or bf16");
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

template <DType T>
inline float load1(const void* base, int64_t idx) {
    if constexpr (T == DType::F32) return static_cast<const float*>(base)[idx];
    else if constexpr (T == DType::F16) return kvscope::f16_to_f32(static_cast<const uint16_t*>(base)[idx]);
    else return kvscope::bf16_to_f32(static_cast<const uint16_t*>(base)[idx]);
}

}  // namespace kvscope::ops::simd
