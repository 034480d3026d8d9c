// The codec attention kernels on 16-lane AVX-512 vectors (attention_codec_kernels.h), used when
// ops::avx512::enabled() (gemv_avx512.h: the CPU and OS support F, BW and VL, and
// KVSCOPE_AVX512 is not 0). A meta pass is 64 channels, one GPT-2 or Llama head: int4 codes
// come 32 to a unit (16 bytes widened once), int2 codes 64. Half the instructions of the AVX2
// kernels per channel, and 32 registers: the value sums of up to 6 heads x 64 channels stay in
// registers over all rows. Only these functions carry the target attribute (as gemv_avx512.cpp).
#include <array>
#include <cstring>

#include <immintrin.h>

#include "ops/attention_codec.h"

// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_ps behind the conversions:
// "'__Y' may be used uninitialized", "is used uninitialized"), false positives of the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define KVSCOPE_CODEC_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#include "ops/attention_codec_kernels.h"

namespace kvscope::ops::codec {
namespace {

struct V16 {
    using V = __m512;
    using Vi = __m512i;
    static constexpr int L = 16;

    // Blocks per values slice: 4 (64 channels) x up to 6 heads in 24 sums; 7 and 8 heads in
    // two slices of 32 channels.
    template <int M>
    static constexpr int slice_blocks() {
        return M <= 6 ? 4 : 2;
    }

    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V zero() { return _mm512_setzero_ps(); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V set1(float x) { return _mm512_set1_ps(x); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V load(const float* p) { return _mm512_loadu_ps(p); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V add(V a, V b) { return _mm512_add_ps(a, b); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V cvt(Vi v) { return _mm512_cvtepi32_ps(v); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi u8(const uint8_t* p) {
        return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi s8(const uint8_t* p) {
        return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi and_(Vi v, int m) {
        return _mm512_and_si512(v, _mm512_set1_epi32(m));
    }
    template <int N>
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi srli(Vi v) {
        return _mm512_srli_epi32(v, N);
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V f32(const uint8_t* p) {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V f16(const uint8_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V bf16(const uint8_t* p) {
        const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
    // n (1 to 16) fp16 values; the masked load touches none of the bytes after them.
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V meta(const uint8_t* p, int n) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1), p));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static V perm(V t, Vi idx) { return _mm512_permutexvar_ps(idx, t); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi lanes(const std::array<int, 16>& a) {
        return _mm512_setr_epi32(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                                 a[14], a[15]);
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi iota() {
        return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi seti(int x) { return _mm512_set1_epi32(x); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi addi(Vi a, Vi b) { return _mm512_add_epi32(a, b); }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi sll(Vi v, int n) {
        return _mm512_sll_epi32(v, _mm_cvtsi32_si128(n));
    }
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static Vi srl(Vi v, int n) {
        return _mm512_srl_epi32(v, _mm_cvtsi32_si128(n));
    }
    // {sum a, sum b, sum c, sum d}: 128-bit quarters added across the four vectors first, then
    // one 8-lane tree.
    [[gnu::always_inline]] KVSCOPE_CODEC_TARGET static __m128 reduce4(V a, V b, V c, V d) {
        const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
        const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
        // quarters: a, b, c, d, each four partial sums
        const __m512 abcd = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
        const __m256 lo = _mm512_castps512_ps256(abcd);
        const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1));
        const __m256 x = _mm256_hadd_ps(lo, hi);  // a01 a23 c01 c23 | b01 b23 d01 d23
        const __m256 y = _mm256_hadd_ps(x, x);    // a c a c | b d b d
        return _mm_unpacklo_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    }
};

}  // namespace

namespace avx512 {

bool covers(const Rows& r) { return covers_passes<V16>(r, 4); }

Order order(Kind k) { return {16, k == Kind::I4 ? 2 : k == Kind::I2 ? 4 : 1}; }

KVSCOPE_CODEC_TARGET void scores(const Rows& r, const Heads& h, float scale) { dispatch<V16, false, false>(r, h, scale); }
KVSCOPE_CODEC_TARGET void values(const Rows& r, const Heads& h) { dispatch<V16, false, true>(r, h, 0.0f); }

}  // namespace avx512
}  // namespace kvscope::ops::codec
