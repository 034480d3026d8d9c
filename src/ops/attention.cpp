#include "ops/attention.h"

#include <cmath>
#include <vector>

#include "ops/matmul_simd.h"
#include "ops/simd.h"

namespace kvscope::ops {

namespace {

// Dot product of q with 8-float blocks of one key, in two accumulators; the scalar tail too.
template <DType T>
inline __m256 dot_blocks(const float* q, const void* K, int64_t base, int hd8) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= hd8; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), simd::load8<T>(K, base + i + 8), a1);
    }
    if (i < hd8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
    return _mm256_add_ps(a0, a1);
}

template <DType T>
void attend(const float* q, const void* K, const void* V, int hd, int lo, int hi, float scale, float* scores,
            float* out) {
    const int hd8 = hd / 8 * 8;
    auto tail = [&](int j) {
        float s = 0.0f;
        for (int i = hd8; i < hd; i++) s += q[i] * simd::load1<T>(K, int64_t(j) * hd + i);
        return s;
    };
    // Scores: one dot product per cached key (a contiguous stream of head_dim values each),
    // four keys at a time so that one shuffle tree finishes four horizontal sums.
    int j = lo;
    for (; j + 4 <= hi; j += 4) {
        const __m256 d0 = dot_blocks<T>(q, K, int64_t(j) * hd, hd8), d1 = dot_blocks<T>(q, K, int64_t(j + 1) * hd, hd8);
        const __m256 d2 = dot_blocks<T>(q, K, int64_t(j + 2) * hd, hd8), d3 = dot_blocks<T>(q, K, int64_t(j + 3) * hd, hd8);
        __m128 s4 = mm::hsum4(d0, d1, d2, d3);
        if (hd8 < hd) s4 = _mm_add_ps(s4, _mm_setr_ps(tail(j), tail(j + 1), tail(j + 2), tail(j + 3)));
        _mm_storeu_ps(scores + j, _mm_mul_ps(s4, _mm_set1_ps(scale)));
    }
    for (; j < hi; j++) scores[j] = (simd::hsum(dot_blocks<T>(q, K, int64_t(j) * hd, hd8)) + tail(j)) * scale;
    float mx = -INFINITY;
    for (int k = lo; k < hi; k++) mx = scores[k] > mx ? scores[k] : mx;

    float sum = 0.0f;
    j = lo;
    __m256 vs = _mm256_setzero_ps();
    const __m256 vmx = _mm256_set1_ps(mx);
    for (; j + 8 <= hi; j += 8) {
        __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx));
        _mm256_storeu_ps(scores + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    sum = simd::hsum(vs);
    for (; j < hi; j++) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = 1.0f / sum;
    const __m256 vi = _mm256_set1_ps(inv);
    // Weighted sum of values, 64 columns per pass (8 accumulators): one pass for GPT-2's
    // head_dim of 64, so V is streamed once.
    int i = 0;
    for (; i + 64 <= hd; i += 64) {
        __m256 o[8];
        for (int b = 0; b < 8; b++) o[b] = _mm256_setzero_ps();
        for (int k = lo; k < hi; k++) {
            const __m256 p = _mm256_set1_ps(scores[k]);
            const int64_t base = int64_t(k) * hd + i;
            for (int b = 0; b < 8; b++) o[b] = _mm256_fmadd_ps(p, simd::load8<T>(V, base + 8 * b), o[b]);
        }
        for (int b = 0; b < 8; b++) _mm256_storeu_ps(out + i + 8 * b, _mm256_mul_ps(o[b], vi));
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 o = _mm256_setzero_ps();
        for (int k = lo; k < hi; k++)
            o = _mm256_fmadd_ps(_mm256_set1_ps(scores[k]), simd::load8<T>(V, int64_t(k) * hd + i), o);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(o, vi));
    }
    for (; i < hd; i++) {
        float acc = 0.0f;
        for (int k = lo; k < hi; k++) acc += scores[k] * simd::load1<T>(V, int64_t(k) * hd + i);
        out[i] = acc * inv;
    }
}

}  // namespace

void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* scores, float* out) {
    switch (dt) {
        case DType::F32: attend<DType::F32>(q, K, V, head_dim, lo, hi, scale, scores, out); break;
        case DType::F16: attend<DType::F16>(q, K, V, head_dim, lo, hi, scale, scores, out); break;
        case DType::BF16: attend<DType::BF16>(q, K, V, head_dim, lo, hi, scale, scores, out); break;
        default: break;
    }
}

namespace ref {

static float at(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::F32: return static_cast<const float*>(p)[i];
        case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        default: return 0.0f;
    }
}

void attend_head(const float* q, const void* K, const void* V, DType dt, int hd, int lo, int hi, float scale,
                 float* out) {
    std::vector<double> s(size_t(hi - lo));
    double mx = -INFINITY, sum = 0;
    for (int j = lo; j < hi; j++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += double(q[i]) * at(K, dt, int64_t(j) * hd + i);
        s[size_t(j - lo)] = d * scale;
        mx = std::max(mx, s[size_t(j - lo)]);
    }
    for (auto& v : s) sum += (v = std::exp(v - mx));
    for (int i = 0; i < hd; i++) {
        double acc = 0;
        for (int j = lo; j < hi; j++) acc += s[size_t(j - lo)] * at(V, dt, int64_t(j) * hd + i);
        out[i] = float(acc / sum);
    }
}

}  // namespace ref
}  // namespace kvscope::ops
