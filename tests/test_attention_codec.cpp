// The codec attention kernels (ops::attend_heads_codec, ops::attend_heads_runs) against the
// scalar references that decode every row first (ops::ref): every codec and group size, head
// sizes the fast kernels take (64, 128, 96 on AVX2) and those they leave to the general one
// (8, 40, 72), GQA groups of 1 to 8 query heads reading one KV head, several KV heads in one
// call, ranges of 1 to 3 keys and ranges starting past 0, runs as a paged cache hands them over
// (blocks of 16 rows anywhere in a pool), per-channel key blocks, fp16 sinks and windows.
// Each test runs twice: on the AVX2 kernels (AVX-512 turned off), and on the AVX-512 kernels
// where the CPU has them.
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/kv_codec.h"
#include "ops/attention.h"
#include "ops/gemv_avx512.h"
#include "ops/tolerances.h"

using namespace kvscope;

namespace {

enum class Isa { Avx2, Avx512 };

class CodecAttention : public ::testing::TestWithParam<Isa> {
protected:
    void SetUp() override {
        saved_ = ops::avx512::enabled();
        if (GetParam() == Isa::Avx512) {
            if (!ops::avx512::available()) GTEST_SKIP() << "this CPU (or OS) has no AVX-512 F/BW/VL";
            ops::avx512::set_enabled(true);
        } else {
            ops::avx512::set_enabled(false);
        }
    }
    void TearDown() override { ops::avx512::set_enabled(saved_); }

private:
    bool saved_ = false;
};

std::vector<float> random_rows(int n, int hd, std::mt19937& rng, float spread = 2.0f) {
    std::normal_distribution<float> d(0.3f, spread);
    std::vector<float> x(size_t(n) * size_t(hd));
    for (size_t i = 0; i < x.size(); i++) x[i] = d(rng) * (i % size_t(hd) == 5 ? 10.0f : 1.0f);  // an outlier channel
    return x;
}

std::vector<uint8_t> encode(const KvCodec& c, int hd, const std::vector<float>& x) {
    const int64_t stride = kv_row_stride(c, hd);
    const int n = int(x.size() / size_t(hd));
    // Exactly n rows: a kernel reading past the last row's bytes is caught by the sanitizer build.
    std::vector<uint8_t> rows(size_t(stride * n));
    for (int j = 0; j < n; j++) kv_encode_row(c, hd, x.data() + size_t(j) * size_t(hd), rows.data() + j * stride);
    return rows;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    const ops::Tolerance t = ops::kCodecAttentionTolerance;
    double worst = 0;
    for (size_t i = 0; i < want.size(); i++) {
        const double err = std::abs(double(got[i]) - want[i]);
        worst = std::max(worst, err);
        ASSERT_LE(err, t.atol + t.rtol * std::abs(want[i])) << what << " channel " << i << " got " << got[i] << " want "
                                                           << want[i];
    }
}

// Whether codec `name` splits head_dim into whole groups.
bool fits(const KvCodec& c, int hd) { return c.axis != KvAxis::Token || c.group == 0 || c.group >= hd || hd % c.group == 0; }
bool fits(const char* name, int hd) { return fits(parse_kv_codec(name, "x"), hd); }

// Codecs for keys and values: per row, groups of 8 to 64, symmetric and with a minimum.
const char* kCodecs[] = {"fp16", "fp32", "bf16", "int8", "int8-asym", "int8-g32", "int8-g8-asym", "int4", "int4-sym",
                         "int4-g8", "int4-g16-sym", "int4-g64", "int4-g0-sym", "int2", "int2-g8-sym", "int2-g16",
                         "int2-g64", "int2-g0-sym"};

// m query heads over one KV head in codec kc / vc, keys [lo, hi): each head against the
// reference, the m heads in one call.
void check_group(const KvCodec& kc, const KvCodec& vc, int hd, int m, int lo, int hi, std::mt19937& rng,
                 const std::string& what) {
    const std::vector<uint8_t> K = encode(kc, hd, random_rows(hi, hd, rng)), V = encode(vc, hd, random_rows(hi, hd, rng));
    const std::vector<float> q = random_rows(m, hd, rng, 0.5f);
    std::vector<float> out(size_t(m) * size_t(hd), NAN), scores(size_t(m) * size_t(hi));
    const float* qp[8];
    const void *kp[8], *vp[8];
    float* op[8];
    for (int x = 0; x < m; x++) qp[x] = q.data() + x * hd, kp[x] = K.data(), vp[x] = V.data(), op[x] = out.data() + x * hd;
    const float scale = 1.0f / std::sqrt(float(hd));
    ops::attend_heads_codec(m, qp, kp, vp, kc, vc, hd, lo, hi, scale, scores.data(), op);
    for (int x = 0; x < m; x++) {
        std::vector<float> want(static_cast<size_t>(hd));
        ops::ref::attend_head_codec(qp[x], K.data(), V.data(), kc, vc, hd, lo, hi, scale, want.data());
        expect_close(std::vector<float>(out.begin() + x * hd, out.begin() + (x + 1) * hd), want,
                     what + " head " + std::to_string(x));
        if (::testing::Test::HasFatalFailure()) return;
    }
}

}  // namespace

TEST_P(CodecAttention, EveryCodecHeadSizeAndGroupMatchesTheReference) {
    std::mt19937 rng(11);
    int variant = 0;
    for (int hd : {64, 128, 96, 72, 40, 8})
        for (const char* kn : kCodecs) {
            // Values: the same codec, and in turn one of the others (K and V are chosen apart).
            const char* other = kCodecs[size_t(variant++) % std::size(kCodecs)];
            for (const char* vn : {kn, other}) {
                if (!fits(kn, hd) || !fits(vn, hd)) continue;
                const KvCodec kc = kv_codec_for(parse_kv_codec(kn, "k"), hd, "k");
                const KvCodec vc = kv_codec_for(parse_kv_codec(vn, "v"), hd, "v");
                for (int m = 1; m <= ops::kMaxHeadGroup; m++)
                    for (auto [lo, hi] : {std::pair{0, 1}, std::pair{4, 6}, std::pair{3, 7}, std::pair{5, 90}}) {
                        if (m > 4 && hi == 90 && hd > 64) continue;  // the largest groups at 64 only: time
                        check_group(kc, vc, hd, m, lo, hi, rng,
                                    std::string("K ") + kn + " V " + vn + " hd " + std::to_string(hd) + " m " +
                                        std::to_string(m) + " [" + std::to_string(lo) + "," + std::to_string(hi) + ")");
                        if (HasFatalFailure()) return;
                    }
            }
        }
}

// Several KV heads in one call, each with its own group of query heads (MHA: groups of one),
// and a peaked softmax (a large q): every head matches the reference.
TEST_P(CodecAttention, SeveralKvHeadsInOneCall) {
    std::mt19937 rng(12);
    const int hd = 64, lo = 2, hi = 300;
    for (const char* name : {"int8", "int4", "int2", "fp16", "int4-sym"})
        for (int group : {1, 2, 3, 4}) {
            const KvCodec c = kv_codec_for(parse_kv_codec(name, "x"), hd, "x");
            const int n = std::min(ops::kMaxHeadGroup, 2 * group), n_kv = (n + group - 1) / group;
            std::vector<std::vector<uint8_t>> K, V;
            for (int h = 0; h < n_kv; h++) {
                K.push_back(encode(c, hd, random_rows(hi, hd, rng)));
                V.push_back(encode(c, hd, random_rows(hi, hd, rng)));
            }
            for (float qscale : {0.5f, 8.0f}) {
                const std::vector<float> q = random_rows(n, hd, rng, qscale);
                std::vector<float> out(size_t(n) * hd), scores(size_t(n) * hi);
                const float* qp[8];
                const void *kp[8], *vp[8];
                float* op[8];
                for (int x = 0; x < n; x++)
                    qp[x] = q.data() + x * hd, kp[x] = K[size_t(x / group)].data(), vp[x] = V[size_t(x / group)].data(),
                    op[x] = out.data() + x * hd;
                ops::attend_heads_codec(n, qp, kp, vp, c, c, hd, lo, hi, 0.125f, scores.data(), op);
                for (int x = 0; x < n; x++) {
                    std::vector<float> want(static_cast<size_t>(hd));
                    ops::ref::attend_head_codec(qp[x], kp[x], vp[x], c, c, hd, lo, hi, 0.125f, want.data());
                    expect_close(std::vector<float>(out.begin() + x * hd, out.begin() + (x + 1) * hd), want,
                                 std::string(name) + " group " + std::to_string(group) + " head " + std::to_string(x));
                    if (HasFatalFailure()) return;
                }
            }
        }
}

// A paged cache's runs: blocks of 16 rows scattered over a pool, the first run starting inside
// its block; m query heads share one KvRuns.
TEST_P(CodecAttention, PagedRunsMatchTheReference) {
    std::mt19937 rng(13);
    const int bt = 16;
    for (int hd : {64, 40})
        for (const char* name : {"fp16", "fp32", "int8", "int4", "int2", "int4-g16-sym", "int8-g8-asym"})
            for (int m : {1, 2, 3, 4, 8})
                for (auto [lo, hi] : {std::pair{0, 3}, std::pair{5, 16}, std::pair{7, 150}}) {
                    if (!fits(name, hd)) continue;
                    const KvCodec c = kv_codec_for(parse_kv_codec(name, "x"), hd, "x");
                    const int64_t stride = kv_row_stride(c, hd);
                    const int blocks = (hi + bt - 1) / bt;
                    std::vector<int> where(size_t(blocks) * 2);  // a pool twice the size, blocks in random places
                    std::iota(where.begin(), where.end(), 0);
                    std::shuffle(where.begin(), where.end(), rng);
                    std::vector<uint8_t> kpool(size_t(stride * bt * blocks * 2)), vpool(kpool.size());
                    const std::vector<uint8_t> K = encode(c, hd, random_rows(hi, hd, rng)),
                                               V = encode(c, hd, random_rows(hi, hd, rng));
                    KvRuns kr, vr;
                    for (int j0 = lo; j0 < hi;) {
                        const int b = j0 / bt, j1 = std::min(hi, (b + 1) * bt);
                        const int64_t at = (int64_t(where[size_t(b)]) * bt + j0 % bt) * stride;
                        std::copy(K.begin() + j0 * stride, K.begin() + j1 * stride, kpool.begin() + at);
                        std::copy(V.begin() + j0 * stride, V.begin() + j1 * stride, vpool.begin() + at);
                        kr.add(KvRun{kpool.data() + at, nullptr, c, stride, j0, j1});
                        vr.add(KvRun{vpool.data() + at, nullptr, c, stride, j0, j1});
                        j0 = j1;
                    }
                    const std::vector<float> q = random_rows(m, hd, rng, 0.5f);
                    std::vector<float> out(size_t(m) * hd), scores(size_t(m) * hi);
                    const float* qp[8];
                    const KvRuns *kp[8], *vp[8];
                    float* op[8];
                    for (int x = 0; x < m; x++) qp[x] = q.data() + x * hd, kp[x] = &kr, vp[x] = &vr, op[x] = out.data() + x * hd;
                    ops::attend_heads_runs(m, qp, kp, vp, hd, lo, hi, 0.2f, scores.data(), op);
                    for (int x = 0; x < m; x++) {
                        std::vector<float> want(static_cast<size_t>(hd));
                        ops::ref::attend_head_codec(qp[x], K.data(), V.data(), c, c, hd, lo, hi, 0.2f, want.data());
                        expect_close(std::vector<float>(out.begin() + x * hd, out.begin() + (x + 1) * hd), want,
                                     std::string(name) + " hd " + std::to_string(hd) + " m " + std::to_string(m) + " [" +
                                         std::to_string(lo) + "," + std::to_string(hi) + ") head " + std::to_string(x));
                        if (HasFatalFailure()) return;
                    }
                }
}

// Windowed formats as the cache hands them over (fp16 sinks, per-channel key blocks or
// per-token codes, the fp16 ring): two KV heads, each read by a group of m query heads.
TEST_P(CodecAttention, WindowedRunsWithGroupsMatchTheReference) {
    std::mt19937 rng(14);
    const int slots = 120, pad = 3, n_kv = 2;
    for (int hd : {64, 128, 40, 8})
        for (const char* name : {"int4-kivi+r16+s4", "int2-kivi", "int8-kivi", "int8-c16-asym/int4-g8-sym+r5+s2",
                                 "int4-c8-sym/int2-g8+r7", "int2-c32-sym/int8", "int4+s3", "int8+r7"})
            for (int m : {1, 2, 3, 4}) {
                KvShape sh{1, 1, n_kv, slots, hd, parse_kv_format_spec(name, "--kv-dtypes")};
                sh.max_chunk = slots;
                if (!fits(sh.format.k, hd) || !fits(sh.format.v, hd)) continue;
                KvCache cache(sh);
                const std::vector<float> k = random_rows(slots, n_kv * hd, rng), v = random_rows(slots, n_kv * hd, rng);
                for (int j = 0; j < slots; j++)
                    cache.write(0, 0, j, pad, k.data() + size_t(j) * n_kv * hd, v.data() + size_t(j) * n_kv * hd);
                for (int s : {pad, pad + 2, 40, 57, slots - 1}) {
                    const int lo = pad, hi = s + 1;
                    KvRuns kr[n_kv], vr[n_kv];
                    for (int h = 0; h < n_kv; h++) {
                        cache.runs(0, 0, 0, h, pad, lo, hi, &kr[h]);
                        cache.runs(1, 0, 0, h, pad, lo, hi, &vr[h]);
                    }
                    const int n = n_kv * m;
                    const std::vector<float> q = random_rows(n, hd, rng, 0.3f);
                    std::vector<float> out(size_t(n) * hd), scores(size_t(n) * hi);
                    const float* qp[8];
                    const KvRuns *kp[8], *vp[8];
                    float* op[8];
                    for (int x = 0; x < n; x++)
                        qp[x] = q.data() + x * hd, kp[x] = &kr[x / m], vp[x] = &vr[x / m], op[x] = out.data() + x * hd;
                    ops::attend_heads_runs(n, qp, kp, vp, hd, lo, hi, 0.05f, scores.data(), op);
                    for (int x = 0; x < n; x++) {
                        std::vector<float> want(static_cast<size_t>(hd));
                        ops::ref::attend_head_runs(qp[x], kr[x / m], vr[x / m], hd, lo, hi, 0.05f, want.data());
                        expect_close(std::vector<float>(out.begin() + x * hd, out.begin() + (x + 1) * hd), want,
                                     std::string(name) + " hd " + std::to_string(hd) + " m " + std::to_string(m) +
                                         " slot " + std::to_string(s) + " head " + std::to_string(x));
                        if (HasFatalFailure()) return;
                    }
                }
            }
}

INSTANTIATE_TEST_SUITE_P(Isa, CodecAttention, ::testing::Values(Isa::Avx2, Isa::Avx512),
                         [](const ::testing::TestParamInfo<Isa>& i) { return i.param == Isa::Avx2 ? "Avx2" : "Avx512"; });
