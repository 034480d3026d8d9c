// Attention over KV rows in any codec (kv/kv_codec.h), decoded inside the kernel: integer
// codes are widened to fp32 8 at a time and scaled per group, never written back as floats.
// Scores: q . x = sum over groups of scale * (q . codes) + min * sum(q of the group), with the
// per-group sums of q computed once per query. Values: acc += (p * scale) * codes per group,
// and p * min summed per group and added once at the end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kv/kv_codec.h"
#include "ops/attention.h"
#include "ops/matmul_simd.h"
#include "ops/simd.h"

namespace kvscope::ops {

namespace {

enum class Kind { F32, F16, BF16, I8S, I8A, I4, I2 };

Kind kind_of(const KvCodec& c) {
    switch (c.dtype) {
        case DType::F32: return Kind::F32;
        case DType::F16: return Kind::F16;
        case DType::BF16: return Kind::BF16;
        case DType::I8: return c.zero_point ? Kind::I8A : Kind::I8S;
        case DType::I4: return Kind::I4;
        case DType::I2: return Kind::I2;
        default: fail("attention: KV codec {} has no kernel", kv_codec_name(c));
    }
}

constexpr bool is_float(Kind k) { return k == Kind::F32 || k == Kind::F16 || k == Kind::BF16; }
constexpr DType float_dtype(Kind k) { return k == Kind::F32 ? DType::F32 : k == Kind::F16 ? DType::F16 : DType::BF16; }
constexpr int bits_of(Kind k) { return k == Kind::I4 ? 4 : k == Kind::I2 ? 2 : 8; }

// Codes [i, i + 8) of a row as fp32 (signed for I8S, unsigned otherwise).
template <Kind K>
[[gnu::always_inline]] inline __m256 codes8(const uint8_t* codes, int i) {
    if constexpr (K == Kind::I8S) {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
    } else if constexpr (K == Kind::I8A) {
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i))));
    } else if constexpr (K == Kind::I4) {
        uint32_t v;
        std::memcpy(&v, codes + i / 2, 4);
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(v)), sh), _mm256_set1_epi32(0xF)));
    } else {
        uint16_t v;
        std::memcpy(&v, codes + i / 4, 2);
        const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(v), sh), _mm256_set1_epi32(3)));
    }
}

// A row's geometry for an integer codec: G channels per group, meta bytes after the codes.
struct RowGeo {
    int hd = 0, G = 0, n_groups = 0;
    int64_t stride = 0, code_bytes = 0;
    bool zp = false;
    float offset = 0;  // symmetric int4/int2: codes are stored as c + 2^(b-1)
};

RowGeo geo_of(const KvCodec& c, int hd) {
    RowGeo g;
    g.hd = hd;
    g.G = c.group > 0 && c.group < hd ? c.group : hd;
    g.n_groups = hd / g.G;
    g.stride = kv_row_stride(c, hd);
    g.code_bytes = int64_t(hd) * kv_codec_bits(c) / 8;
    g.zp = c.zero_point;
    const int b = kv_codec_bits(c);
    g.offset = (!c.zero_point && b < 8) ? float(1 << (b - 1)) : 0.0f;
    return g;
}

// Scale and additive term of group gi of a row: x = s * code + m.
[[gnu::always_inline]] inline void scale_min(const RowGeo& g, const uint8_t* row, int gi, float* s, float* m) {
    const uint8_t* meta = row + g.code_bytes + gi * (g.zp ? 4 : 2);
    uint16_t s16, m16 = 0;
    std::memcpy(&s16, meta, 2);
    if (g.zp) std::memcpy(&m16, meta + 2, 2);
    *s = _cvtsh_ss(s16);
    *m = g.zp ? _cvtsh_ss(m16) : -g.offset * *s;
}

// q . (the codes of group [i0, i0 + G) of a row), unreduced: two accumulators over 16 lanes.
template <Kind K>
[[gnu::always_inline]] inline __m256 dot_codes(const float* q, const uint8_t* row, int i0, int G) {
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    int i = i0;
    const int e = i0 + G;
    for (; i + 16 <= e; i += 16) {
        d0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), codes8<K>(row, i), d0);
        d1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), codes8<K>(row, i + 8), d1);
    }
    if (i < e) d0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), codes8<K>(row, i), d0);
    return _mm256_add_ps(d0, d1);
}

// s[j] = scale * q . K[j] for j in [lo, hi), K rows in integer codec K. Four keys at a time:
// their per-group dot products scaled and summed as vectors, reduced by one shuffle tree.
template <Kind K>
void scores_int(const float* q, const uint8_t* Kr, const RowGeo& g, int lo, int hi, float scale, float* s) {
    float qsum[64];  // per group (at most head_dim / 8 groups; head_dim <= 512)
    for (int gi = 0; gi < g.n_groups; gi++) {
        float t = 0;
        for (int i = gi * g.G; i < (gi + 1) * g.G; i++) t += q[i];
        qsum[gi] = t;
    }
    const bool has_m = g.zp || g.offset != 0;
    auto one = [&](int j, __m256* acc, float* extra) __attribute__((always_inline)) {
        const uint8_t* row = Kr + int64_t(j) * g.stride;
        _mm_prefetch(reinterpret_cast<const char*>(row) + 2048, _MM_HINT_T0);
        *acc = _mm256_setzero_ps();
        *extra = 0;
        for (int gi = 0; gi < g.n_groups; gi++) {
            float sc, mn;
            scale_min(g, row, gi, &sc, &mn);
            *acc = _mm256_fmadd_ps(_mm256_set1_ps(sc), dot_codes<K>(q, row, gi * g.G, g.G), *acc);
            if (has_m) *extra += mn * qsum[gi];
        }
    };
    int j = lo;
    for (; j + 4 <= hi; j += 4) {
        __m256 a[4];
        alignas(16) float ex[4];
        for (int k = 0; k < 4; k++) one(j + k, &a[k], &ex[k]);
        const __m128 d = _mm_add_ps(mm::hsum4(a[0], a[1], a[2], a[3]), _mm_load_ps(ex));
        _mm_storeu_ps(s + j, _mm_mul_ps(d, _mm_set1_ps(scale)));
    }
    for (; j < hi; j++) {
        __m256 a;
        float ex;
        one(j, &a, &ex);
        s[j] = (simd::hsum(a) + ex) * scale;
    }
}

template <DType T>
void scores_float(const float* q, const void* Kr, int hd, int lo, int hi, float scale, float* s) {
    const int64_t stride = int64_t(hd);
    for (int j = lo; j < hi; j++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(Kr, j * stride + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), simd::load8<T>(Kr, j * stride + i + 8), a1);
        }
        if (i < hd) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(Kr, j * stride + i), a0);
        s[j] = simd::hsum(_mm256_add_ps(a0, a1)) * scale;
    }
}

// acc[0, hd) += sum over keys j in [lo, hi) of p[j] * V[j], V rows in integer codec K.
template <Kind K>
void values_int(const float* p, const uint8_t* Vr, const RowGeo& g, int lo, int hi, float* acc) {
    float extra[64] = {};
    const bool has_m = g.zp || g.offset != 0;
    for (int c0 = 0; c0 < g.hd; c0 += 64) {  // 64 channels (8 accumulators) per pass
        const int c1 = std::min(g.hd, c0 + 64), nb = (c1 - c0) / 8;
        // The groups this pass covers: blocks [first[x], first[x + 1]) belong to group g0 + x.
        const int g0 = c0 / g.G, g1 = (c1 - 1) / g.G + 1;
        int first[9];
        for (int x = 0; x <= g1 - g0; x++) first[x] = std::clamp(((g0 + x) * g.G - c0) / 8, 0, nb);
        __m256 o[8];
        for (int b = 0; b < nb; b++) o[b] = _mm256_loadu_ps(acc + c0 + 8 * b);
        for (int j = lo; j < hi; j++) {
            const uint8_t* row = Vr + int64_t(j) * g.stride;
            if (c0 == 0) _mm_prefetch(reinterpret_cast<const char*>(row) + 2048, _MM_HINT_T0);
            for (int gi = g0; gi < g1; gi++) {
                float sc, mn;
                scale_min(g, row, gi, &sc, &mn);
                const __m256 w = _mm256_set1_ps(p[j] * sc);
                if (has_m && gi * g.G >= c0) extra[gi] += p[j] * mn;  // once per group, in its first pass
                for (int b = first[gi - g0]; b < first[gi - g0 + 1]; b++)
                    o[b] = _mm256_fmadd_ps(w, codes8<K>(row, c0 + 8 * b), o[b]);
            }
        }
        for (int b = 0; b < nb; b++) _mm256_storeu_ps(acc + c0 + 8 * b, o[b]);
    }
    if (has_m)
        for (int gi = 0; gi < g.n_groups; gi++)
            for (int i = gi * g.G; i < (gi + 1) * g.G; i++) acc[i] += extra[gi];
}

template <DType T>
void values_float(const float* p, const void* Vr, int hd, int lo, int hi, float* acc) {
    for (int c0 = 0; c0 < hd; c0 += 64) {
        const int nb = (std::min(hd, c0 + 64) - c0) / 8;
        __m256 o[8];
        for (int b = 0; b < nb; b++) o[b] = _mm256_loadu_ps(acc + c0 + 8 * b);
        for (int j = lo; j < hi; j++) {
            const __m256 pj = _mm256_set1_ps(p[j]);
            for (int b = 0; b < nb; b++)
                o[b] = _mm256_fmadd_ps(pj, simd::load8<T>(Vr, int64_t(j) * hd + c0 + 8 * b), o[b]);
        }
        for (int b = 0; b < nb; b++) _mm256_storeu_ps(acc + c0 + 8 * b, o[b]);
    }
}

// Fast paths for head_dim a multiple of 64 and groups of GB 8-channel blocks (GB = 1, 2, 4:
// groups of 8, 16, 32 channels; GB = 8: groups of 64 or more, a multiple of 64): every loop over
// the 8 blocks of a 64-channel pass has a compile-time trip count, so the accumulators stay in
// registers.
template <Kind K, int GB>
void scores_fast(const float* q, const uint8_t* Kr, const RowGeo& g, int lo, int hi, float scale, float* s) {
    float qsum[64];
    for (int gi = 0; gi < g.n_groups; gi++) {
        float t = 0;
        for (int i = gi * g.G; i < (gi + 1) * g.G; i++) t += q[i];
        qsum[gi] = t;
    }
    const bool has_m = g.zp || g.offset != 0;
    const int passes = g.hd / 64;
    auto one = [&](int j, float* extra) __attribute__((always_inline)) {
        const uint8_t* row = Kr + int64_t(j) * g.stride;
        _mm_prefetch(reinterpret_cast<const char*>(row) + 2048, _MM_HINT_T0);
        __m256 acc = _mm256_setzero_ps();
        float ex = 0;
        for (int c = 0; c < passes; c++) {
            #pragma GCC unroll 8
            for (int b0 = 0; b0 < 8; b0 += GB) {
                const int gi = (c * 64 + b0 * 8) / g.G;
                float sc, mn;
                scale_min(g, row, gi, &sc, &mn);
                __m256 d = _mm256_setzero_ps();
                #pragma GCC unroll 8
                for (int b = b0; b < b0 + GB; b++) {
                    const int i = c * 64 + 8 * b;
                    d = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), codes8<K>(row, i), d);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(sc), d, acc);
                if (has_m && (c * 64 + b0 * 8) % g.G == 0) ex += mn * qsum[gi];
            }
        }
        *extra = ex;
        return acc;
    };
    int j = lo;
    for (; j + 4 <= hi; j += 4) {
        alignas(16) float ex[4];
        const __m256 a0 = one(j, &ex[0]), a1 = one(j + 1, &ex[1]), a2 = one(j + 2, &ex[2]), a3 = one(j + 3, &ex[3]);
        const __m128 d = _mm_add_ps(mm::hsum4(a0, a1, a2, a3), _mm_load_ps(ex));
        _mm_storeu_ps(s + j, _mm_mul_ps(d, _mm_set1_ps(scale)));
    }
    for (; j < hi; j++) {
        float ex;
        const __m256 a = one(j, &ex);
        s[j] = (simd::hsum(a) + ex) * scale;
    }
}

template <Kind K, int GB>
void values_fast(const float* p, const uint8_t* Vr, const RowGeo& g, int lo, int hi, float* acc) {
    float extra[64] = {};
    const bool has_m = g.zp || g.offset != 0;
    for (int c0 = 0; c0 < g.hd; c0 += 64) {
        __m256 o[8];
        #pragma GCC unroll 8
        for (int b = 0; b < 8; b++) o[b] = _mm256_loadu_ps(acc + c0 + 8 * b);
        for (int j = lo; j < hi; j++) {
            const uint8_t* row = Vr + int64_t(j) * g.stride;
            if (c0 == 0) _mm_prefetch(reinterpret_cast<const char*>(row) + 2048, _MM_HINT_T0);
            #pragma GCC unroll 8
            for (int b0 = 0; b0 < 8; b0 += GB) {
                const int gi = (c0 + b0 * 8) / g.G;
                float sc, mn;
                scale_min(g, row, gi, &sc, &mn);
                const __m256 w = _mm256_set1_ps(p[j] * sc);
                if (has_m && (c0 + b0 * 8) % g.G == 0) extra[gi] += p[j] * mn;
                #pragma GCC unroll 8
                for (int b = b0; b < b0 + GB; b++) o[b] = _mm256_fmadd_ps(w, codes8<K>(row, c0 + 8 * b), o[b]);
            }
        }
        #pragma GCC unroll 8
        for (int b = 0; b < 8; b++) _mm256_storeu_ps(acc + c0 + 8 * b, o[b]);
    }
    if (has_m)
        for (int gi = 0; gi < g.n_groups; gi++)
            for (int i = gi * g.G; i < (gi + 1) * g.G; i++) acc[i] += extra[gi];
}

// Blocks per group for the fast paths, 0 when they do not apply.
int fast_gb(const RowGeo& g) {
    if (g.hd % 64 != 0) return 0;
    if (g.G % 64 == 0) return 8;
    return g.G == 8 || g.G == 16 || g.G == 32 ? g.G / 8 : 0;
}

template <Kind K>
void scores_int_any(const float* q, const uint8_t* r, const RowGeo& g, int lo, int hi, float scale, float* s) {
    switch (fast_gb(g)) {
        case 1: scores_fast<K, 1>(q, r, g, lo, hi, scale, s); break;
        case 2: scores_fast<K, 2>(q, r, g, lo, hi, scale, s); break;
        case 4: scores_fast<K, 4>(q, r, g, lo, hi, scale, s); break;
        case 8: scores_fast<K, 8>(q, r, g, lo, hi, scale, s); break;
        default: scores_int<K>(q, r, g, lo, hi, scale, s); break;
    }
}

template <Kind K>
void values_int_any(const float* p, const uint8_t* r, const RowGeo& g, int lo, int hi, float* acc) {
    switch (fast_gb(g)) {
        case 1: values_fast<K, 1>(p, r, g, lo, hi, acc); break;
        case 2: values_fast<K, 2>(p, r, g, lo, hi, acc); break;
        case 4: values_fast<K, 4>(p, r, g, lo, hi, acc); break;
        case 8: values_fast<K, 8>(p, r, g, lo, hi, acc); break;
        default: values_int<K>(p, r, g, lo, hi, acc); break;
    }
}

void scores_any(Kind k, const float* q, const void* K, const RowGeo& g, int lo, int hi, float scale, float* s) {
    const auto* r = static_cast<const uint8_t*>(K);
    switch (k) {
        case Kind::F32: scores_float<DType::F32>(q, K, g.hd, lo, hi, scale, s); break;
        case Kind::F16: scores_float<DType::F16>(q, K, g.hd, lo, hi, scale, s); break;
        case Kind::BF16: scores_float<DType::BF16>(q, K, g.hd, lo, hi, scale, s); break;
        case Kind::I8S: scores_int_any<Kind::I8S>(q, r, g, lo, hi, scale, s); break;
        case Kind::I8A: scores_int_any<Kind::I8A>(q, r, g, lo, hi, scale, s); break;
        case Kind::I4: scores_int_any<Kind::I4>(q, r, g, lo, hi, scale, s); break;
        case Kind::I2: scores_int_any<Kind::I2>(q, r, g, lo, hi, scale, s); break;
    }
}

void values_any(Kind k, const float* p, const void* V, const RowGeo& g, int lo, int hi, float* acc) {
    const auto* r = static_cast<const uint8_t*>(V);
    switch (k) {
        case Kind::F32: values_float<DType::F32>(p, V, g.hd, lo, hi, acc); break;
        case Kind::F16: values_float<DType::F16>(p, V, g.hd, lo, hi, acc); break;
        case Kind::BF16: values_float<DType::BF16>(p, V, g.hd, lo, hi, acc); break;
        case Kind::I8S: values_int_any<Kind::I8S>(p, r, g, lo, hi, acc); break;
        case Kind::I8A: values_int_any<Kind::I8A>(p, r, g, lo, hi, acc); break;
        case Kind::I4: values_int_any<Kind::I4>(p, r, g, lo, hi, acc); break;
        case Kind::I2: values_int_any<Kind::I2>(p, r, g, lo, hi, acc); break;
    }
}

// s[j] = scale * q . K[j] over a Channel run: per block, q is folded into the block's
// per-channel scales once (q'_i = q_i s_i, c = sum q_i m_i), then each row is q' . codes + c.
template <Kind K>
void scores_channel(const float* q, const KvRun& run, int hd, float scale, float* s) {
    const KvCodec& c = run.codec;
    const int G = c.group;
    const int64_t mb = kv_channel_meta_bytes(c, hd);
    const float offset = (!c.zero_point && bits_of(K) < 8) ? float(1 << (bits_of(K) - 1)) : 0.0f;
    alignas(32) float qs[512];
    for (int j0 = run.j0; j0 < run.j1; j0 += G) {
        const auto* sc = reinterpret_cast<const uint16_t*>(run.meta + int64_t((j0 - run.j0) / G) * mb);
        float cst = 0;
        for (int i = 0; i < hd; i += 8) {
            const __m256 si = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + i)));
            const __m256 qi = _mm256_loadu_ps(q + i);
            _mm256_store_ps(qs + i, _mm256_mul_ps(qi, si));
            const __m256 mi = c.zero_point ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + hd + i)))
                                           : _mm256_mul_ps(_mm256_set1_ps(-offset), si);
            cst += simd::hsum(_mm256_mul_ps(qi, mi));
        }
        const int j1 = std::min(run.j1, j0 + G);
        const uint8_t* base = run.rows + int64_t(j0 - run.j0) * run.stride;
        int j = j0;
        for (; j + 4 <= j1; j += 4) {
            const uint8_t* r = base + int64_t(j - j0) * run.stride;
            _mm_prefetch(reinterpret_cast<const char*>(r) + 2048, _MM_HINT_T0);
            const __m128 d = mm::hsum4(dot_codes<K>(qs, r, 0, hd), dot_codes<K>(qs, r + run.stride, 0, hd),
                                       dot_codes<K>(qs, r + 2 * run.stride, 0, hd), dot_codes<K>(qs, r + 3 * run.stride, 0, hd));
            _mm_storeu_ps(s + j, _mm_mul_ps(_mm_add_ps(d, _mm_set1_ps(cst)), _mm_set1_ps(scale)));
        }
        for (; j < j1; j++) s[j] = (simd::hsum(dot_codes<K>(qs, base + int64_t(j - j0) * run.stride, 0, hd)) + cst) * scale;
    }
}

void scores_run(const float* q, const KvRun& run, int hd, float scale, float* s) {
    const Kind k = kind_of(run.codec);
    if (run.codec.axis == KvAxis::Channel) {
        switch (k) {
            case Kind::I8S: scores_channel<Kind::I8S>(q, run, hd, scale, s); return;
            case Kind::I8A: scores_channel<Kind::I8A>(q, run, hd, scale, s); return;
            case Kind::I4: scores_channel<Kind::I4>(q, run, hd, scale, s); return;
            case Kind::I2: scores_channel<Kind::I2>(q, run, hd, scale, s); return;
            default: fail("attention: per-channel KV codec {} has no kernel", kv_codec_name(run.codec));
        }
    }
    scores_any(k, q, run.rows, geo_of(run.codec, hd), 0, run.j1 - run.j0, scale, s + run.j0);
}

}  // namespace

void attend_heads_runs(int n, const float* const* q, const KvRuns* const* kruns, const KvRuns* const* vruns, int hd,
                       int lo, int hi, float scale, float* scores, float* const* out) {
    if (hd % 8 != 0 || hd > 512) fail("attention: head_dim {} (codec kernels take multiples of 8 up to 512)", hd);
    for (int x = 0; x < n; x++) {
        float* s = scores + int64_t(x) * hi;
        for (int r = 0; r < kruns[x]->n; r++) scores_run(q[x], kruns[x]->r[r], hd, scale, s);
        const float inv = softmax_inplace(s, lo, hi);
        for (int i = 0; i < hd; i++) out[x][i] = 0.0f;
        for (int r = 0; r < vruns[x]->n; r++) {
            const KvRun& v = vruns[x]->r[r];
            values_any(kind_of(v.codec), s + v.j0, v.rows, geo_of(v.codec, hd), 0, v.j1 - v.j0, out[x]);
        }
        for (int i = 0; i < hd; i++) out[x][i] *= inv;
    }
}

void attend_heads_codec(int n, const float* const* q, const void* const* K, const void* const* V, const KvCodec& kc,
                        const KvCodec& vc, int hd, int lo, int hi, float scale, float* scores, float* const* out) {
    if (hd % 8 != 0 || hd > 512) fail("attention: head_dim {} (codec kernels take multiples of 8 up to 512)", hd);
    const Kind kk = kind_of(kc), vk = kind_of(vc);
    const RowGeo kg = geo_of(kc, hd), vg = geo_of(vc, hd);
    for (int x = 0; x < n; x++) {
        float* s = scores + int64_t(x) * hi;
        scores_any(kk, q[x], K[x], kg, lo, hi, scale, s);
        const float inv = softmax_inplace(s, lo, hi);
        for (int i = 0; i < hd; i++) out[x][i] = 0.0f;
        values_any(vk, s, V[x], vg, lo, hi, out[x]);
        for (int i = 0; i < hd; i++) out[x][i] *= inv;
    }
}

namespace ref {

void attend_head_codec(const float* q, const void* K, const void* V, const KvCodec& kc, const KvCodec& vc, int hd,
                       int lo, int hi, float scale, float* out) {
    const int64_t ks = kv_row_stride(kc, hd), vs = kv_row_stride(vc, hd);
    std::vector<float> k(static_cast<size_t>(hd)), v(static_cast<size_t>(hd));
    std::vector<double> s(size_t(hi - lo));
    double mx = -INFINITY, sum = 0;
    for (int j = lo; j < hi; j++) {
        kv_decode_row(kc, hd, static_cast<const uint8_t*>(K) + j * ks, k.data());
        double d = 0;
        for (int i = 0; i < hd; i++) d += double(q[i]) * k[size_t(i)];
        s[size_t(j - lo)] = d * scale;
        mx = std::max(mx, s[size_t(j - lo)]);
    }
    for (auto& x : s) sum += (x = std::exp(x - mx));
    std::vector<double> acc(size_t(hd), 0.0);
    for (int j = lo; j < hi; j++) {
        kv_decode_row(vc, hd, static_cast<const uint8_t*>(V) + j * vs, v.data());
        for (int i = 0; i < hd; i++) acc[size_t(i)] += s[size_t(j - lo)] * v[size_t(i)];
    }
    for (int i = 0; i < hd; i++) out[i] = float(acc[size_t(i)] / sum);
}

namespace {

// Row j of a run, decoded.
void decode_run_row(const KvRun& run, int hd, int j, float* x) {
    const uint8_t* row = run.rows + int64_t(j - run.j0) * run.stride;
    if (run.codec.axis == KvAxis::Channel)
        kv_decode_block_row(run.codec, hd, row,
                            run.meta + int64_t((j - run.j0) / run.codec.group) * kv_channel_meta_bytes(run.codec, hd), x);
    else kv_decode_row(run.codec, hd, row, x);
}

}  // namespace

void attend_head_runs(const float* q, const KvRuns& K, const KvRuns& V, int hd, int lo, int hi, float scale, float* out) {
    std::vector<float> x(static_cast<size_t>(hd));
    std::vector<double> s(size_t(hi), 0.0), acc(size_t(hd), 0.0);
    double mx = -INFINITY, sum = 0;
    for (int r = 0; r < K.n; r++)
        for (int j = K.r[r].j0; j < K.r[r].j1; j++) {
            decode_run_row(K.r[r], hd, j, x.data());
            double d = 0;
            for (int i = 0; i < hd; i++) d += double(q[i]) * x[size_t(i)];
            s[size_t(j)] = d * scale;
            mx = std::max(mx, s[size_t(j)]);
        }
    for (int j = lo; j < hi; j++) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
    for (int r = 0; r < V.n; r++)
        for (int j = V.r[r].j0; j < V.r[r].j1; j++) {
            decode_run_row(V.r[r], hd, j, x.data());
            for (int i = 0; i < hd; i++) acc[size_t(i)] += s[size_t(j)] * x[size_t(i)];
        }
    for (int i = 0; i < hd; i++) out[i] = float(acc[size_t(i)] / sum);
}

}  // namespace ref
}  // namespace kvscope::ops
