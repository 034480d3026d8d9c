// Element-wise kernels and attention against their scalar references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "ops/attention.h"
#include "ops/norm.h"
#include "ops/read.h"
#include "ops/simd.h"

using namespace kvscope;

TEST(Ops, VectorExpWithinTwoUlpOfStdExp) {
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        alignas(32) float out[8];
        _mm256_store_ps(out, ops::simd::exp8(_mm256_set1_ps(x)));
        float r = std::exp(x);
        EXPECT_LE(std::abs(out[0] - r), 3e-7f * r) << x;
    }
}

TEST(Ops, GeluMatchesReference) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int n : {1, 7, 8, 9, 3072, 70001}) {
        std::vector<float> a(static_cast<size_t>(n)), b;
        for (auto& v : a) v = nd(rng);
        a[0] = -30.0f;
        b = a;
        ops::gelu_new(a.data(), n);
        ops::ref::gelu_new(b.data(), n);
        double mx = 0;
        for (int i = 0; i < n; i++) {
            EXPECT_LE(std::abs(a[size_t(i)] - b[size_t(i)]), 1e-6f + 1e-6f * std::abs(b[size_t(i)])) << i;
            mx = std::max(mx, double(std::abs(a[size_t(i)] - b[size_t(i)])));
        }
        std::printf("gelu n=%d: max |avx2 - ref| = %.3g\n", n, mx);
    }
}

TEST(Ops, LayerNormMatchesReference) {
    std::mt19937 rng(4);
    std::normal_distribution<float> nd(1.0f, 2.0f);
    for (int n : {5, 64, 768, 1601}) {
        int rows = 3;
        std::vector<float> x(static_cast<size_t>(rows * n)), w(static_cast<size_t>(n)), b(static_cast<size_t>(n)), y1(x.size()), y2(x.size());
        for (auto& v : x) v = nd(rng);
        for (auto& v : w) v = nd(rng);
        for (auto& v : b) v = nd(rng);
        ops::layernorm(x.data(), rows, n, w.data(), b.data(), 1e-5f, y1.data());
        ops::ref::layernorm(x.data(), rows, n, w.data(), b.data(), 1e-5f, y2.data());
        for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y1[i], y2[i], 2e-5f + 2e-5f * std::abs(y2[i])) << n << " " << i;
    }
}

TEST(Ops, AttentionMatchesReferenceForEveryStorageType) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (DType dt : {DType::F32, DType::F16, DType::BF16})
        for (int hd : {8, 12, 16, 64, 80, 128, 132})
            for (auto [lo, hi] : {std::pair{0, 1}, std::pair{0, 9}, std::pair{3, 40}, std::pair{5, 7}, std::pair{0, 300},
                                  std::pair{37, 1000}})
            // A large q makes the scores span tens of units: a peaked softmax, where the
            // shift by the maximum matters.
            for (float qscale : {1.0f, 40.0f}) {
                // kMaxHeadGroup heads (q, K, V each), checked one at a time and in groups of
                // every size the kernel takes.
                constexpr int G = ops::kMaxHeadGroup;
                const size_t n = size_t(hi) * size_t(hd), esz = dtype_size(dt);
                std::vector<float> q(G * size_t(hd)), out(q.size()), grouped(q.size()), ref(q.size());
                std::vector<float> scores(G * static_cast<size_t>(hi));
                std::vector<uint8_t> K(G * n * esz), V(G * n * esz);
                for (auto& v : q) v = qscale * nd(rng);
                for (size_t i = 0; i < G * n; i++) {
                    float k = nd(rng), v = nd(rng);
                    if (dt == DType::F32) {
                        reinterpret_cast<float*>(K.data())[i] = k;
                        reinterpret_cast<float*>(V.data())[i] = v;
                    } else {
                        auto cv = [&](float f) { return dt == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f); };
                        reinterpret_cast<uint16_t*>(K.data())[i] = cv(k);
                        reinterpret_cast<uint16_t*>(V.data())[i] = cv(v);
                    }
                }
                const float* qs[G];
                const void *ks[G], *vs[G];
                for (int x = 0; x < G; x++) {
                    qs[x] = q.data() + x * hd;
                    ks[x] = K.data() + size_t(x) * n * esz;
                    vs[x] = V.data() + size_t(x) * n * esz;
                    ops::attend_head(qs[x], ks[x], vs[x], dt, hd, lo, hi, 0.125f, scores.data(), out.data() + x * hd);
                    ops::ref::attend_head(qs[x], ks[x], vs[x], dt, hd, lo, hi, 0.125f, ref.data() + x * hd);
                }
                // fp32 scores of magnitude ~50 carry absolute errors ~1e-5 into exp(): the
                // tolerance grows with them (the reference is double throughout).
                const float tol = qscale > 1.0f ? 1e-4f : 1e-5f;
                for (size_t i = 0; i < q.size(); i++)
                    EXPECT_NEAR(out[i], ref[i], tol + tol * std::abs(ref[i]))
                        << dtype_name(dt) << " hd " << hd << " [" << lo << "," << hi << ") q x" << qscale << " head "
                        << i / size_t(hd);
                for (int group = 1; group <= G; group++) {
                    std::fill(grouped.begin(), grouped.end(), NAN);
                    for (int h0 = 0; h0 < G; h0 += group) {
                        const int m = std::min(group, G - h0);
                        float* os[G];
                        for (int x = 0; x < m; x++) os[x] = grouped.data() + (h0 + x) * hd;
                        ops::attend_heads(m, qs + h0, ks + h0, vs + h0, dt, hd, lo, hi, 0.125f, scores.data(), os);
                    }
                    // The same arithmetic in the same order as one head alone: equal bits.
                    for (size_t i = 0; i < q.size(); i++)
                        ASSERT_EQ(grouped[i], out[i]) << "group of " << group << ": " << dtype_name(dt) << " hd " << hd
                                                      << " [" << lo << "," << hi << ") head " << i / size_t(hd);
                }
            }
}

// A paged cache's blocks read through block tables give the reference's attention for every
// float type, block size, head count and head size, whether each head's blocks lie in order
// (one span), in runs of 5 (spans, the prefetches crossing from one to the next) or scattered.
TEST(Ops, AttentionOverBlocksMatchesReference) {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd;
    for (DType dt : {DType::F32, DType::F16, DType::BF16})
        for (int hd : {40, 64})
            for (int bt : {1, 3, 16})
                for (auto [lo, hi] :
                     {std::pair{0, 1}, std::pair{0, 37}, std::pair{5, 100}, std::pair{16, 64}, std::pair{0, 300}})
                    for (int n : {1, 2, 3, 8})
                        for (int runs : {0, 5, 1}) {
                            const size_t esz = dtype_size(dt), row = size_t(hd) * esz;
                            const int n_blk = (hi + bt - 1) / bt;
                            // Pool: n heads x n_blk blocks of bt rows; runs of `runs` blocks in a
                            // shuffled order (0: every head's blocks in order).
                            std::vector<int> where(size_t(n) * size_t(n_blk));
                            std::iota(where.begin(), where.end(), 0);
                            if (runs > 0) {
                                std::vector<int> order((where.size() + size_t(runs) - 1) / size_t(runs));
                                std::iota(order.begin(), order.end(), 0);
                                std::shuffle(order.begin(), order.end(), rng);
                                // Run r of the table goes to pool run order[r]; the pool is padded to whole runs.
                                for (size_t i = 0; i < where.size(); i++)
                                    where[i] = order[i / size_t(runs)] * runs + int(i % size_t(runs));
                            }
                            const size_t pool_blocks = (where.size() + 4) / 5 * 5;
                            std::vector<uint8_t> Kp(pool_blocks * size_t(bt) * row), Vp(Kp.size());
                            std::vector<uint8_t> K(size_t(n) * size_t(hi) * row), V(K.size());
                            auto put = [&](uint8_t* dst, float f) {
                                if (dt == DType::F32) std::memcpy(dst, &f, 4);
                                else {
                                    const uint16_t h = dt == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
                                    std::memcpy(dst, &h, 2);
                                }
                            };
                            std::vector<float> q(size_t(n) * size_t(hd)), out(q.size()), ref(q.size());
                            for (auto& v : q) v = 4 * nd(rng);
                            for (int x = 0; x < n; x++)
                                for (int j = 0; j < hi; j++) {
                                    const size_t blk = size_t(where[size_t(x * n_blk + j / bt)]);
                                    const size_t at = (blk * size_t(bt) + size_t(j % bt)) * row;
                                    for (int i = 0; i < hd; i++) {
                                        const float k = nd(rng), v = nd(rng);
                                        put(&Kp[at + size_t(i) * esz], k);
                                        put(&Vp[at + size_t(i) * esz], v);
                                        put(&K[(size_t(x) * size_t(hi) + size_t(j)) * row + size_t(i) * esz], k);
                                        put(&V[(size_t(x) * size_t(hi) + size_t(j)) * row + size_t(i) * esz], v);
                                    }
                                }
                            std::vector<std::vector<const uint8_t*>> kb(static_cast<size_t>(n)), vb(static_cast<size_t>(n));
                            for (int x = 0; x < n; x++)
                                for (int b = 0; b < n_blk; b++) {
                                    const size_t at = size_t(where[size_t(x * n_blk + b)]) * size_t(bt) * row;
                                    kb[size_t(x)].push_back(&Kp[at]);
                                    vb[size_t(x)].push_back(&Vp[at]);
                                }
                            const float* qs[8];
                            float* os[8];
                            const uint8_t* const* kbp[8];
                            const uint8_t* const* vbp[8];
                            for (int x = 0; x < n; x++) {
                                qs[x] = q.data() + x * hd;
                                os[x] = out.data() + x * hd;
                                kbp[x] = kb[size_t(x)].data();
                                vbp[x] = vb[size_t(x)].data();
                                ops::ref::attend_head(qs[x], &K[size_t(x) * size_t(hi) * row], &V[size_t(x) * size_t(hi) * row], dt,
                                                      hd, lo, hi, 0.125f, ref.data() + x * hd);
                            }
                            std::vector<float> scores(size_t(n) * size_t(hi));
                            ops::attend_heads_blocks(n, qs, kbp, vbp, bt, dt, hd, lo, hi, 0.125f, scores.data(), os);
                            for (size_t i = 0; i < q.size(); i++)
                                ASSERT_NEAR(out[i], ref[i], 1e-5f + 1e-5f * std::abs(ref[i]))
                                    << dtype_name(dt) << " hd " << hd << " block " << bt << " [" << lo << "," << hi << ") heads "
                                    << n << " head " << i / size_t(hd) << " runs " << runs;
                        }
}

// The read-only floor's kernel reads every byte: its sum equals a scalar sum of the same words
// (and tail bytes) for every length and alignment, and thread shares add up to the whole.
TEST(Ops, ReadWordsSumsEveryWordAndSharesAddUp) {
    std::mt19937 rng(11);
    std::vector<uint8_t> buf(199997 + 32);  // the longest read at the largest offset ends at the buffer's end
    for (auto& b : buf) b = uint8_t(rng());
    auto ref = [&](size_t off, int64_t n) {
        uint32_t s = 0;
        int64_t i = 0;
        for (; i + 4 <= n; i += 4)
            s += uint32_t(buf[off + i]) | uint32_t(buf[off + i + 1]) << 8 | uint32_t(buf[off + i + 2]) << 16 |
                 uint32_t(buf[off + i + 3]) << 24;
        for (; i < n; i++) s += buf[off + i];
        return s;
    };
    for (int64_t n : {0, 1, 3, 4, 31, 32, 63, 64, 127, 128, 129, 1000, 4103, 65536, 199997})
        for (size_t off : {0, 1, 3, 4, 32}) {
            ASSERT_EQ(ops::read_words(buf.data() + off, n), ref(off, n)) << "bytes " << n << " offset " << off;
            for (int nt = 1; nt <= 3; nt++) {
                uint32_t parts = 0;
                for (int t = 0; t < nt; t++) parts += ops::read_share(buf.data() + off, n, t, nt);
                EXPECT_EQ(parts, ref(off, n)) << "bytes " << n << " offset " << off << " threads " << nt;
            }
        }
}
