#include "ops/attention.h"

#include <cmath>
#include <vector>

#include "ops/simd.h"

namespace kvscope::ops {

namespace {

template <DType T>
void attend(const float* q, const void* K, const void* V, int hd, int lo, int hi, float scale, float* scores,
            float* out) {
    // Scores: one dot product per cached key (a contiguous stream of head_dim values each).
    float mx = -INFINITY;
    for (int j = lo; j < hi; j++) {
        const int64_t base = int64_t(j) * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), simd::load8<T>(K, base + i + 8), a1);
        }
        for (; i + 8 <= hd; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
        float s = simd::hsum(_mm256_add_ps(a0, a1));
        for (; i < hd; i++) s += q[i] * simd::load1<T>(K, base + i);
        s *= scale;
        scores[j] = s;
        mx = s > mx ? s : mx;
    }
    float sum = 0.0f;
    int j = lo;
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
    // Weighted sum of values: head_dim accumulators kept in registers for head_dim <= 128.
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    int i = 0;
    for (; i + 32 <= hd; i += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (int j = lo; j < hi; j++) {
            const __m256 p = _mm256_set1_ps(scores[j]);
            const int64_t base = int64_t(j) * hd + i;
            o0 = _mm256_fmadd_ps(p, simd::load8<T>(V, base), o0);
            o1 = _mm256_fmadd_ps(p, simd::load8<T>(V, base + 8), o1);
            o2 = _mm256_fmadd_ps(p, simd::load8<T>(V, base + 16), o2);
            o3 = _mm256_fmadd_ps(p, simd::load8<T>(V, base + 24), o3);
        }
        const __m256 vi = _mm256_set1_ps(inv);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(o0, vi));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(o1, vi));
        _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(o2, vi));
        _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(o3, vi));
    }
    for (; i < hd; i++) {
        float acc = 0.0f;
        for (int j = lo; j < hi; j++) acc += scores[j] * simd::load1<T>(V, int64_t(j) * hd + i);
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
