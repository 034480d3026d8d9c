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
