#include "ops/convert.h"

#include <immintrin.h>

#include "core/dtype.h"
#include "ops/matmul_simd.h"

namespace kvscope::ops {

// Same recipe as the scalar kvscope::f32_to_bf16, 8 lanes at a time: NaN lanes keep their
// top half with the quiet bit set, the others add 0x7fff + lsb (round to nearest even; the
// add cannot carry out of 32 bits because only NaNs lie above -Inf's bit pattern).
static inline __m128i f32x8_to_bf16x8(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    const __m256i quiet_nan = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
    const __m256i r = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet_nan, is_nan), 16);
    // Every lane is now in [0, 0xffff], so the unsigned-saturating pack is exact.
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), f32x8_to_bf16x8(_mm256_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = kvscope::f32_to_bf16(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, mm::WeightLoad<DType::BF16>::load8(src + i));
    for (; i < n; i++) dst[i] = kvscope::bf16_to_f32(src[i]);
}

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = kvscope::f32_to_f16(src[i]);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, mm::WeightLoad<DType::F16>::load8(src + i));
    for (; i < n; i++) dst[i] = kvscope::f16_to_f32(src[i]);
}

}  // namespace kvscope::ops
