// The codec attention kernels on 8-lane AVX2 vectors (attention_codec_kernels.h): every CPU
// kvscope runs on. A meta pass is 32 channels; int4 codes come 16 to a unit (8 bytes widened
// once, low and high nibbles), int2 codes 32 (four shifts of the same widened bytes).
#include <array>
#include <cstring>

#include <immintrin.h>

#include "ops/attention_codec.h"
#include "ops/matmul_simd.h"

#define KVSCOPE_CODEC_TARGET
#include "ops/attention_codec_kernels.h"

namespace kvscope::ops::codec {
namespace {

struct V8 {
    using V = __m256;
    using Vi = __m256i;
    static constexpr int L = 8;

    // Blocks per values slice for M heads: M x SB sums in registers, with room for the
    // decoded vector, the weights and the scales (16 ymm registers).
    template <int M>
    static constexpr int slice_blocks() {
        return M == 1 ? 8 : M == 2 ? 4 : M <= 4 ? 2 : 1;
    }

    [[gnu::always_inline]] static V zero() { return _mm256_setzero_ps(); }
    [[gnu::always_inline]] static V set1(float x) { return _mm256_set1_ps(x); }
    [[gnu::always_inline]] static V load(const float* p) { return _mm256_loadu_ps(p); }
    [[gnu::always_inline]] static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    [[gnu::always_inline]] static V add(V a, V b) { return _mm256_add_ps(a, b); }
    [[gnu::always_inline]] static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    [[gnu::always_inline]] static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    [[gnu::always_inline]] static V cvt(Vi v) { return _mm256_cvtepi32_ps(v); }
    [[gnu::always_inline]] static Vi u8(const uint8_t* p) {
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    [[gnu::always_inline]] static Vi s8(const uint8_t* p) {
        return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    [[gnu::always_inline]] static Vi and_(Vi v, int m) { return _mm256_and_si256(v, _mm256_set1_epi32(m)); }
    template <int N>
    [[gnu::always_inline]] static Vi srli(Vi v) {
        return _mm256_srli_epi32(v, N);
    }
    [[gnu::always_inline]] static V f32(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
    [[gnu::always_inline]] static V f16(const uint8_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    [[gnu::always_inline]] static V bf16(const uint8_t* p) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
    // 8 codes in natural order from one word: lane i shifted right by b x i.
    [[gnu::always_inline]] static Vi nat4(const uint8_t* p) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(v)), sh), _mm256_set1_epi32(0xF));
    }
    [[gnu::always_inline]] static Vi nat2(const uint8_t* p) {
        uint16_t v;
        std::memcpy(&v, p, 2);
        const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(v), sh), _mm256_set1_epi32(3));
    }
    // n (1, 2, 4 or 8) fp16 values, read without touching the bytes after them (a row may end
    // the cache's allocation).
    [[gnu::always_inline]] static V meta(const uint8_t* p, int n) {
        __m128i h;
        if (n == 8) {
            h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        } else if (n == 4) {
            h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
        } else if (n == 2) {
            uint32_t v;
            std::memcpy(&v, p, 4);
            h = _mm_cvtsi32_si128(int(v));
        } else {
            uint16_t v;
            std::memcpy(&v, p, 2);
            h = _mm_cvtsi32_si128(v);
        }
        return _mm256_cvtph_ps(h);
    }
    [[gnu::always_inline]] static V perm(V t, Vi idx) { return _mm256_permutevar8x32_ps(t, idx); }
    [[gnu::always_inline]] static Vi lanes(const std::array<int, 8>& a) {
        return _mm256_setr_epi32(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    }
    [[gnu::always_inline]] static Vi iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
    [[gnu::always_inline]] static Vi seti(int x) { return _mm256_set1_epi32(x); }
    [[gnu::always_inline]] static Vi addi(Vi a, Vi b) { return _mm256_add_epi32(a, b); }
    [[gnu::always_inline]] static Vi sll(Vi v, int n) { return _mm256_sll_epi32(v, _mm_cvtsi32_si128(n)); }
    [[gnu::always_inline]] static Vi srl(Vi v, int n) { return _mm256_srl_epi32(v, _mm_cvtsi32_si128(n)); }
    [[gnu::always_inline]] static __m128 reduce4(V a, V b, V c, V d) { return mm::hsum4(a, b, c, d); }
};

}  // namespace

namespace avx2 {

bool covers(const Rows& r) { return covers_passes<V8>(r, 4); }

Order order(Kind k) { return {8, k == Kind::I4 ? 2 : k == Kind::I2 ? 4 : 1}; }

void scores(const Rows& r, const Heads& h, float scale) { dispatch<V8, false, false>(r, h, scale); }
void values(const Rows& r, const Heads& h) { dispatch<V8, false, true>(r, h, 0.0f); }
void scores_any(const Rows& r, const Heads& h, float scale) { dispatch<V8, true, false>(r, h, scale); }
void values_any(const Rows& r, const Heads& h) { dispatch<V8, true, true>(r, h, 0.0f); }

}  // namespace avx2
}  // namespace kvscope::ops::codec
