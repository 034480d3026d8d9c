// Optimized matmul paths (decode GEMV, prefill GEMM, the dispatching ops::matmul) against
// the scalar reference, and the bulk fp32<->bf16/fp16 conversions against the scalar ones.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>
#include <omp.h>

#include "core/dtype.h"
#include "ops/convert.h"
#include "ops/gemm.h"
#include "ops/gemv.h"
#include "ops/gemv_avx512.h"
#include "ops/matmul.h"
#include "ops/pack.h"
#include "ops/tolerances.h"

namespace kvscope {
namespace {

// A weight matrix stored in `dtype`, values of order 1/sqrt(n_in) so outputs are O(1).
struct TestWeight {
    std::vector<float> f32;
    std::vector<uint16_t> u16;
    std::vector<uint8_t> packed;  // Layout::Packed: the KN matrix repacked by ops::pack_weight
    WeightView view;
};

TestWeight make_weight(DType dtype, Layout layout, int64_t n_in, int64_t n_out, uint32_t seed) {
    std::mt19937 rng(seed);
    const float scale = 1.0f / std::sqrt(float(std::max<int64_t>(1, n_in)));
    std::uniform_real_distribution<float> dist(-scale, scale);
    TestWeight w;
    w.f32.resize(size_t(n_in * n_out));
    for (float& v : w.f32) v = dist(rng);
    if (dtype != DType::F32) {
        w.u16.resize(w.f32.size());
        for (size_t i = 0; i < w.f32.size(); i++)
            w.u16[i] = dtype == DType::BF16 ? f32_to_bf16(w.f32[i]) : f32_to_f16(w.f32[i]);
        w.f32.clear();
    }
    w.view.data = dtype == DType::F32 ? static_cast<const void*>(w.f32.data()) : w.u16.data();
    w.view.dtype = dtype;
    w.view.layout = layout == Layout::Packed ? Layout::KN : layout;
    w.view.n_in = n_in;
    w.view.n_out = n_out;
    if (layout == Layout::Packed) {
        WeightView pv{nullptr, dtype, Layout::Packed, n_in, n_out};
        w.packed.resize(size_t(pv.bytes()) + 1);
        w.view = ops::pack_weight(w.view, dtype, w.packed.data());
    }
    return w;
}

std::vector<float> random_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = dist(rng);
    return v;
}

const char* layout_name(Layout l) { return l == Layout::KN ? "KN" : l == Layout::NK ? "NK" : "Packed"; }

enum class Path { Gemv, Gemm, Dispatch };
const char* path_name(Path p) { return p == Path::Gemv ? "gemv" : p == Path::Gemm ? "gemm" : "matmul"; }

void run(Path p, const float* x, int64_t m, const WeightView& w, const float* bias, float* y) {
    switch (p) {
        case Path::Gemv: ops::gemv(x, m, w, bias, y); break;
        case Path::Gemm: ops::gemm(x, m, w, bias, y); break;
        case Path::Dispatch: ops::matmul(x, m, w, bias, y); break;
    }
}

// Runs one path on one case and compares with the reference; prints the max difference.
void check(Path p, DType dtype, Layout layout, int64_t m, int64_t n_in, int64_t n_out, bool with_bias,
           bool verbose = false) {
    const TestWeight w = make_weight(dtype, layout, n_in, n_out, uint32_t(n_in * 31 + n_out));
    const std::vector<float> x = random_vec(m * n_in, uint32_t(m * 7 + 1));
    const std::vector<float> bias = random_vec(n_out, 99);
    const float* b = with_bias ? bias.data() : nullptr;
    // Canary-filled outputs: the kernels must write every element and nothing past the end.
    std::vector<float> y(size_t(m * n_out + 16), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> r(size_t(m * n_out));
    run(p, x.data(), m, w.view, b, y.data());
    ops::ref::matmul(x.data(), m, w.view, b, r.data());

    const ops::Tolerance tol = ops::matmul_tolerance(dtype);
    double max_diff = 0.0;
    int64_t bad = 0, first_bad = -1;
    for (int64_t i = 0; i < m * n_out; i++) {
        const double d = std::fabs(double(y[size_t(i)]) - r[size_t(i)]);
        if (!(d <= tol.atol + tol.rtol * std::fabs(r[size_t(i)]))) {
            if (first_bad < 0) first_bad = i;
            bad++;
        }
        if (!(d <= max_diff)) max_diff = d;  // NaN propagates into max_diff
    }
    const char* what = path_name(p);
    if (verbose || bad)
        std::printf("  %-6s %-4s %s m=%-4lld %5lldx%-6lld bias=%d  max|diff|=%.3g\n", what, dtype_name(dtype),
                    layout_name(layout), (long long)m, (long long)n_in, (long long)n_out, with_bias,
                    max_diff);
    EXPECT_EQ(bad, 0) << what << " " << dtype_name(dtype) << " " << layout_name(layout) << " m=" << m
                      << " " << n_in << "x" << n_out << ": first bad index " << first_bad << " got "
                      << (first_bad >= 0 ? y[size_t(first_bad)] : 0.0f) << " want "
                      << (first_bad >= 0 ? r[size_t(first_bad)] : 0.0f);
    for (size_t i = size_t(m * n_out); i < y.size(); i++) EXPECT_TRUE(std::isnan(y[i])) << "wrote past y's end";
}

const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16};
const Layout kLayouts[] = {Layout::KN, Layout::NK, Layout::Packed};
// Up to 48 rows the chunked decode path; above, the GEMM, with every row-block remainder (49-53, 130).
const int64_t kRows[] = {1, 2, 3, 4, 5, 6, 7, 8, 16, 17, 48, 49, 50, 51, 53, 130};

struct Shape {
    int64_t n_in, n_out;
};
// Odd sizes exercise every tail: k % 4, k % 8, columns % 8, rows % 4, thread splits.
const Shape kOddShapes[] = {{67, 131}, {1, 1}, {3, 5}, {9, 7}, {16, 16}, {130, 67}, {33, 257}, {300, 41}};
// distilgpt2: attention qkv, attention proj, mlp fc, mlp proj (KN); LM head (NK).
const Shape kModelShapesKN[] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
const Shape kLmHead = {768, 50257};

// These tests hold ops::gemv to its AVX2 kernels, so that they are checked on every CPU;
// MatmulAvx512 below checks the AVX-512 batched-decode kernel where the CPU has it.
class MatmulTest : public ::testing::Test {
protected:
    void SetUp() override { saved_ = ops::avx512::set_enabled(false); }
    void TearDown() override { ops::avx512::set_enabled(saved_); }

private:
    bool saved_ = false;
};

TEST_F(MatmulTest, OddShapesEveryPath) {
    for (Path p : {Path::Gemv, Path::Gemm, Path::Dispatch})
        for (DType dt : kDTypes)
            for (Layout l : kLayouts)
                for (const Shape& s : kOddShapes)
                    for (int64_t m : kRows) check(p, dt, l, m, s.n_in, s.n_out, /*with_bias=*/m % 2 == 1);
}

TEST_F(MatmulTest, ModelShapes) {
    for (DType dt : kDTypes)
        for (Layout l : kLayouts)
            for (const Shape& s : kModelShapesKN) {
                for (int64_t m : {1, 3, 8, 16}) check(Path::Gemv, dt, l, m, s.n_in, s.n_out, m != 8, m == 1);
                for (int64_t m : {17, 64}) check(Path::Gemm, dt, l, m, s.n_in, s.n_out, true, m == 17);
            }
}

TEST_F(MatmulTest, LmHead) {
    for (DType dt : kDTypes)
        for (Layout l : {Layout::NK, Layout::Packed}) {
            for (int64_t m : {1, 5}) check(Path::Gemv, dt, l, m, kLmHead.n_in, kLmHead.n_out, false, true);
            check(Path::Gemm, dt, l, 17, kLmHead.n_in, kLmHead.n_out, false, true);
        }
}

// Packing is a pure rearrangement (plus a rounding when the dtype narrows): the same matrix
// packed from its KN and its NK form gives the same bytes, every element lands where
// WeightView::index says, the padding is zero, and weight_column reads an output back.
TEST_F(MatmulTest, PackingRearrangesExactly) {
    for (DType dt : kDTypes)
        for (const Shape& s : {Shape{7, 33}, Shape{16, 16}, Shape{5, 1}, Shape{40, 50}}) {
            std::mt19937 rng(uint32_t(s.n_in * 100 + s.n_out));
            std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
            std::vector<float> kn(size_t(s.n_in * s.n_out)), nk(kn.size());
            for (int64_t k = 0; k < s.n_in; k++)
                for (int64_t o = 0; o < s.n_out; o++) nk[size_t(o * s.n_in + k)] = kn[size_t(k * s.n_out + o)] = dist(rng);
            WeightView pv{nullptr, dt, Layout::Packed, s.n_in, s.n_out};
            std::vector<uint8_t> a(size_t(pv.bytes()), 0xAB), b(a.size(), 0xCD);
            WeightView pa = ops::pack_weight({kn.data(), DType::F32, Layout::KN, s.n_in, s.n_out}, dt, a.data());
            ops::pack_weight({nk.data(), DType::F32, Layout::NK, s.n_in, s.n_out}, dt, b.data());
            EXPECT_EQ(a, b) << dtype_name(dt) << " " << s.n_in << "x" << s.n_out;
            // A tensor may start at any byte of a checkpoint: an odd address packs the same.
            std::vector<uint8_t> odd(kn.size() * 4 + 1), c(a.size(), 0xEF);
            std::memcpy(odd.data() + 1, kn.data(), kn.size() * 4);
            ops::pack_weight({odd.data() + 1, DType::F32, Layout::KN, s.n_in, s.n_out}, dt, c.data());
            EXPECT_EQ(a, c) << "unaligned source, " << dtype_name(dt);
            EXPECT_EQ(pa.elements(), s.n_in * packed_panels(s.n_out) * kPanel);
            auto stored = [&](int64_t i) {
                if (dt == DType::F32) return reinterpret_cast<const float*>(a.data())[i];
                const uint16_t h = reinterpret_cast<const uint16_t*>(a.data())[i];
                return dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
            };
            auto rounded = [&](float v) {
                return dt == DType::F32 ? v : dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
            };
            std::vector<bool> used(size_t(pa.elements()), false);
            for (int64_t k = 0; k < s.n_in; k++)
                for (int64_t o = 0; o < s.n_out; o++) {
                    ASSERT_EQ(stored(pa.index(k, o)), rounded(kn[size_t(k * s.n_out + o)]));
                    used[size_t(pa.index(k, o))] = true;
                }
            for (int64_t i = 0; i < pa.elements(); i++) {
                if (!used[size_t(i)]) {
                    EXPECT_EQ(stored(i), 0.0f) << "padding at " << i;
                }
            }
            std::vector<float> col(size_t(s.n_in));
            for (int64_t o = 0; o < s.n_out; o++) {
                ops::weight_column(pa, o, col.data());
                for (int64_t k = 0; k < s.n_in; k++) ASSERT_EQ(col[size_t(k)], rounded(kn[size_t(k * s.n_out + o)]));
            }
        }
}

TEST_F(MatmulTest, DispatchAroundThreshold) {
    for (DType dt : kDTypes) {
        const int64_t t = ops::gemv_max_rows(dt);
        for (Layout l : kLayouts)
            for (int64_t m : {t - 1, t, t + 1})
                if (m > 0) check(Path::Dispatch, dt, l, m, 768, 300, true);
    }
}

// The kernels split work over omp_get_max_threads() of the caller: results must be right
// for any team size, including more threads than cores and teams that leave threads idle
// (53 rows: the GEMM path, where the team copies x and meets at a barrier first).
TEST_F(MatmulTest, AnyThreadCount) {
    const int saved = omp_get_max_threads();
    for (int nt : {1, 2, 3, 7}) {
        omp_set_num_threads(nt);
        for (Path p : {Path::Gemv, Path::Gemm})
            for (DType dt : kDTypes)
                for (Layout l : kLayouts)
                    for (int64_t m : {1, 5, 20, 53}) check(p, dt, l, m, 259, 517, true);
    }
    omp_set_num_threads(saved);
}

// Every count of panels per thread, 1 to 2 * max_per_thread panels for teams of 1 and 2
// (parts of unequal length, fewer panels than parts), must cover each column exactly once, for
// every m in rows; the bias on every other panel count (those of parity bias_parity).
void check_every_panel_count(int64_t max_per_thread, std::initializer_list<int64_t> rows, int64_t n_in,
                             int64_t bias_parity) {
    const int saved = omp_get_max_threads();
    for (int nt : {1, 2}) {
        omp_set_num_threads(nt);
        for (DType dt : kDTypes)
            for (int64_t panels = 1; panels <= 2 * max_per_thread; panels++)
                for (int64_t m : rows)
                    check(Path::Gemv, dt, Layout::Packed, m, n_in, panels * kPanel - 5, panels % 2 == bias_parity);
    }
    omp_set_num_threads(saved);
}

// Decode at batch 1-3 reads up to 4 (one row) or 2 panels of a thread's run side by side,
// one from each part. n_in is large enough for a 2-thread split (the kernels stay on one
// thread below 65536 multiply-adds).
TEST_F(MatmulTest, FewRowsEveryPanelCount) { check_every_panel_count(13, {1, 2, 3}, 4099, 0); }

// Batched decode (4 to 48 rows) cuts a thread's run into 3 parts whose panels alternate chunk
// by chunk.
TEST_F(MatmulTest, ChunkedPartsEveryPanelCount) { check_every_panel_count(7, {4, 8, 13, 48}, 1027, 1); }

TEST_F(MatmulTest, EmptyInput) {
    // n_in == 0: y is the bias (or zero), on both paths.
    const std::vector<float> bias = {1.0f, 2.0f, 3.0f};
    for (Path p : {Path::Gemv, Path::Gemm})
        for (Layout l : kLayouts) {
            WeightView w{nullptr, DType::F32, l, 0, 3};
            std::vector<float> y(6, -1.0f);
            run(p, nullptr, 2, w, bias.data(), y.data());
            EXPECT_EQ(y, (std::vector<float>{1, 2, 3, 1, 2, 3})) << path_name(p);
        }
}

TEST_F(MatmulTest, RejectsUnsupportedDType) {
    WeightView w{nullptr, DType::I8, Layout::KN, 4, 4};
    float x[4] = {}, y[4] = {};
    EXPECT_ANY_THROW(ops::matmul(x, 1, w, nullptr, y));
}

// ---- conversions ---------------------------------------------------------------------------

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// fp32 inputs that stress rounding: specials, denormals of both formats, ties, and random
// bit patterns (which include NaNs with payloads of both signs).
std::vector<float> tricky_floats(size_t n_random) {
    std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 1e30f, -1e30f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::signaling_NaN(), std::numeric_limits<float>::denorm_min(),
                            -std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            5.96e-8f, 2.98e-8f, 6.1e-5f, 3.0e-5f,  // fp16 denormal range and ties
                            from_bits(0x3f808000), from_bits(0x3f818000), from_bits(0x3f80ffff),
                            from_bits(0x7f7fffff), from_bits(0x7f7f8000), from_bits(0x00008000),
                            from_bits(0x7f800001), from_bits(0xff800001), from_bits(0x7fbfffff)};
    std::mt19937 rng(7);
    for (size_t i = 0; i < n_random; i++) v.push_back(from_bits(rng()));
    return v;
}

// The AVX-512 kernel for 4 to 12 rows of x on Packed weights (ops::avx512, used by default
// where the CPU has it; more rows go to AVX2): every row count on both sides of that limit
// (one pass over 3 or 2 panels side by side), odd and model shapes, any team size, and every
// count of panels per thread against the side-by-side parts.
class MatmulAvx512 : public ::testing::Test {
protected:
    void SetUp() override {
        if (!ops::avx512::available()) GTEST_SKIP() << "this CPU (or OS) has no AVX-512 F/BW/VL";
        saved_ = ops::avx512::set_enabled(true);
        ASSERT_TRUE(ops::avx512::enabled());
    }
    void TearDown() override {
        if (ops::avx512::available()) ops::avx512::set_enabled(saved_);
    }

private:
    bool saved_ = false;
};

TEST_F(MatmulAvx512, EveryRowCountOddAndModelShapes) {
    for (DType dt : kDTypes) {
        for (const Shape& s : kOddShapes)
            for (int64_t m = 4; m <= 48; m++) check(Path::Gemv, dt, Layout::Packed, m, s.n_in, s.n_out, m % 2 == 1);
        for (const Shape& s : kModelShapesKN)
            for (int64_t m : {4, 8, 12, 13, 48}) check(Path::Gemv, dt, Layout::Packed, m, s.n_in, s.n_out, m != 8);
        check(Path::Gemv, dt, Layout::Packed, 8, kLmHead.n_in, kLmHead.n_out, false);
    }
}

TEST_F(MatmulAvx512, AnyThreadCountEveryPanelCount) {
    const int saved = omp_get_max_threads();
    for (int nt : {1, 2, 3, 7}) {
        omp_set_num_threads(nt);
        for (DType dt : kDTypes)
            for (int64_t m : {5, 8, 11, 20}) check(Path::Gemv, dt, Layout::Packed, m, 259, 517, true);
    }
    omp_set_num_threads(saved);
    check_every_panel_count(7, {4, 8, 9, 12}, 4099, 0);
}

TEST(ConvertTest, F32ToBf16MatchesScalarAllTails) {
    const std::vector<float> src = tricky_floats(4000);
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(15), int64_t(16),
                      int64_t(17), int64_t(31), int64_t(33), int64_t(src.size())}) {
        for (int64_t off : {0, 1, 3}) {  // unaligned starts
            if (off + n > int64_t(src.size())) continue;
            std::vector<uint16_t> out(size_t(n + 1), 0xabcd);
            ops::f32_to_bf16(src.data() + off, out.data(), n);
            for (int64_t i = 0; i < n; i++)
                ASSERT_EQ(out[size_t(i)], f32_to_bf16(src[size_t(off + i)]))
                    << "n=" << n << " i=" << i << " bits=0x" << std::hex << bits(src[size_t(off + i)]);
            EXPECT_EQ(out[size_t(n)], 0xabcd) << "wrote past the end, n=" << n;
        }
    }
}

TEST(ConvertTest, F32ToF16MatchesScalarAllTails) {
    const std::vector<float> src = tricky_floats(4000);
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(15), int64_t(16),
                      int64_t(17), int64_t(31), int64_t(33), int64_t(src.size())}) {
        for (int64_t off : {0, 1, 3}) {
            if (off + n > int64_t(src.size())) continue;
            std::vector<uint16_t> out(size_t(n + 1), 0xabcd);
            ops::f32_to_f16(src.data() + off, out.data(), n);
            for (int64_t i = 0; i < n; i++)
                ASSERT_EQ(out[size_t(i)], f32_to_f16(src[size_t(off + i)]))
                    << "n=" << n << " i=" << i << " bits=0x" << std::hex << bits(src[size_t(off + i)]);
            EXPECT_EQ(out[size_t(n)], 0xabcd) << "wrote past the end, n=" << n;
        }
    }
}

// Every one of the 65536 16-bit patterns (NaNs, Infs, denormals), decoded in bulk, must give
// the scalar result bit for bit, and encoding the result again must give the pattern back
// (NaNs: the quieted pattern, as the scalar round trip does).
TEST(ConvertTest, Bf16AndF16AllPatternsRoundTrip) {
    std::vector<uint16_t> all(65536);
    for (size_t i = 0; i < all.size(); i++) all[i] = uint16_t(i);
    for (int64_t n : {int64_t(1), int64_t(5), int64_t(8), int64_t(13), int64_t(65536)}) {
        std::vector<float> f(size_t(n) + 1, 42.0f);
        std::vector<uint16_t> back(static_cast<size_t>(n));

        ops::bf16_to_f32(all.data() + 65536 - n, f.data(), n);
        ops::f32_to_bf16(f.data(), back.data(), n);
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = all[size_t(65536 - n + i)];
            ASSERT_EQ(bits(f[size_t(i)]), bits(bf16_to_f32(h))) << "bf16 0x" << std::hex << h;
            ASSERT_EQ(back[size_t(i)], f32_to_bf16(bf16_to_f32(h))) << "bf16 0x" << std::hex << h;
            if (!std::isnan(f[size_t(i)])) {
                ASSERT_EQ(back[size_t(i)], h);
            }
        }
        EXPECT_EQ(f[size_t(n)], 42.0f);

        ops::f16_to_f32(all.data() + 65536 - n, f.data(), n);
        ops::f32_to_f16(f.data(), back.data(), n);
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = all[size_t(65536 - n + i)];
            ASSERT_EQ(bits(f[size_t(i)]), bits(f16_to_f32(h))) << "f16 0x" << std::hex << h;
            ASSERT_EQ(back[size_t(i)], f32_to_f16(f16_to_f32(h))) << "f16 0x" << std::hex << h;
            if (!std::isnan(f[size_t(i)])) {
                ASSERT_EQ(back[size_t(i)], h);
            }
        }
        EXPECT_EQ(f[size_t(n)], 42.0f);
    }
}

}  // namespace
}  // namespace kvscope
