// Scalar references of the codec attention kernels: every row decoded with kv_decode_row (or
// kv_decode_block_row), then attention in double precision.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kv/kv_codec.h"
#include "ops/attention.h"

namespace kvscope::ops {

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
