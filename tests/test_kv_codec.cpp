// The KV codecs: names, exact row bytes with their scales, the round-trip bound of each scheme
// (at most half a step per element), zero rows, outliers, non-finite input; the attention
// kernel over encoded rows against the scalar reference that decodes them first; and greedy
// generation on stories260K with quantized caches, cache on == cache off, batch == alone.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "kv/kv_cache.h"
#include "kv/kv_codec.h"
#include "model/loader.h"
#include "ops/attention.h"
#include "runtime/engine.h"
#include "test_stories.h"
#include "test_util.h"

using namespace kvscope;

namespace {

const char* kIntCodecs[] = {"int8", "int8-asym", "int8-g32", "int4", "int4-sym", "int4-g64", "int4-g0-sym",
                            "int2", "int2-g64", "int2-sym"};

std::vector<float> random_row(int hd, std::mt19937& rng, float spread = 2.0f) {
    std::normal_distribution<float> d(0.3f, spread);
    std::vector<float> x(static_cast<size_t>(hd));
    for (float& v : x) v = d(rng);
    return x;
}

// The largest error the scheme allows on group [g0, g0 + G) of x: half a step, where the step
// is the range over the levels, widened by the fp16 rounding of the scale (up) and of the
// minimum (down).
double bound(const KvCodec& c, const float* x, int G) {
    const int bits = kv_codec_bits(c);
    double mn = INFINITY, mx = -INFINITY, amax = 0;
    for (int i = 0; i < G; i++) {
        mn = std::min(mn, double(x[i]));
        mx = std::max(mx, double(x[i]));
        amax = std::max(amax, std::abs(double(x[i])));
    }
    const double fp16_rel = 1.0 / 1024;
    double step;
    if (c.zero_point) step = (mx - mn + std::abs(mn) * fp16_rel + 6e-8) / ((1 << bits) - 1);
    else step = amax / ((1 << (bits - 1)) - 1);
    return step * (1 + fp16_rel) / 2 + 1e-7;
}

}  // namespace

TEST(KvCodec, NamesParseAndPrint) {
    EXPECT_EQ(kv_codec_name(parse_kv_codec("int8", "--kv-dtype")), "int8-sym");
    EXPECT_EQ(kv_codec_name(parse_kv_codec("int4", "--kv-dtype")), "int4-g32-asym");
    EXPECT_EQ(kv_codec_name(parse_kv_codec("int2-g64-sym", "--kv-dtype")), "int2-g64-sym");
    EXPECT_EQ(kv_codec_name(parse_kv_codec("float16", "--kv-dtype")), "fp16");
    EXPECT_EQ(kv_format_name(parse_kv_format("fp16", "int8", "")), "k=int8-sym/v=fp16");
    EXPECT_EQ(kv_format_name(parse_kv_format("", "", "")), "fp32");
    for (const char* bad : {"int3", "int4-g12", "int4-x", "fp16-sym", "fp8", "int8-g", ""}) {
        try {
            parse_kv_codec(bad, "--kv-dtype");
            ADD_FAILURE() << bad << " parsed";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("--kv-dtype"), std::string::npos) << e.what();
        }
    }
}

TEST(KvCodec, RowBytesCountTheScales) {
    auto stride = [](const char* s, int hd) { return kv_row_stride(parse_kv_codec(s, "x"), hd); };
    EXPECT_EQ(stride("fp32", 64), 256);
    EXPECT_EQ(stride("bf16", 64), 128);
    EXPECT_EQ(stride("int8", 64), 64 + 2);              // one fp16 scale per row
    EXPECT_EQ(stride("int8-asym", 128), 128 + 4);       // scale and minimum
    EXPECT_EQ(stride("int4", 64), 32 + 2 * 4);          // two groups of 32, scale + minimum each
    EXPECT_EQ(stride("int4-g64-sym", 128), 64 + 2 * 2);
    EXPECT_EQ(stride("int2", 128), 32 + 4 * 4);
    EXPECT_EQ(stride("int2-sym", 64), 16 + 2 * 2);
    // The cache allocates exactly the formula: rows of K and V per layer, sequence, head, slot.
    KvShape sh{3, 2, 4, 10, 64, KvFormat(parse_kv_codec("int8", "x"), parse_kv_codec("int4", "x"))};
    KvCache c(sh);
    EXPECT_EQ(c.bytes_allocated(), int64_t(3) * 2 * 4 * 10 * (66 + 40));
    EXPECT_EQ(kv_cache_bytes(sh), c.bytes_allocated());
    // A group wider than the row is the row (stories260K's head_dim is 8).
    KvShape small{1, 1, 1, 4, 8, DType::I4};
    KvCache s(small);
    EXPECT_EQ(s.bytes_allocated(), 2 * 4 * (4 + 4));
    EXPECT_EQ(kv_codec_name(s.format().k), "int4-asym");
}

TEST(KvCodec, RoundTripWithinHalfAStep) {
    std::mt19937 rng(3);
    for (const char* name : kIntCodecs)
        for (int hd : {64, 128}) {
            const KvCodec c = kv_codec_for(parse_kv_codec(name, "x"), hd, "x");
            const int G = c.group > 0 ? c.group : hd;
            std::vector<uint8_t> row(static_cast<size_t>(kv_row_stride(c, hd)));
            std::vector<float> back(static_cast<size_t>(hd));
            for (int trial = 0; trial < 50; trial++) {
                std::vector<float> x = random_row(hd, rng, trial % 2 ? 0.05f : 3.0f);
                kv_encode_row(c, hd, x.data(), row.data());
                kv_decode_row(c, hd, row.data(), back.data());
                for (int g0 = 0; g0 < hd; g0 += G) {
                    const double b = bound(c, x.data() + g0, G);
                    for (int i = g0; i < g0 + G; i++)
                        ASSERT_LE(std::abs(double(back[size_t(i)]) - x[size_t(i)]), b)
                            << name << " hd " << hd << " element " << i;
                }
            }
        }
}

TEST(KvCodec, ZeroRowsOutliersAndNonFiniteValues) {
    const int hd = 64;
    for (const char* name : kIntCodecs) {
        const KvCodec c = parse_kv_codec(name, "x");
        std::vector<uint8_t> row(static_cast<size_t>(kv_row_stride(c, hd)));
        std::vector<float> x(hd, 0.0f), back(hd, 1.0f);
        kv_encode_row(c, hd, x.data(), row.data());
        kv_decode_row(c, hd, row.data(), back.data());
        for (float v : back) EXPECT_EQ(v, 0.0f) << name;
        // One huge outlier: it is reproduced within its group's half step, and with groups of
        // 32 the other group keeps its own fine step.
        std::mt19937 rng(5);
        x = random_row(hd, rng, 0.1f);
        x[3] = 1000.0f;
        kv_encode_row(c, hd, x.data(), row.data());
        kv_decode_row(c, hd, row.data(), back.data());
        const int G = c.group > 0 ? c.group : hd;
        for (int g0 = 0; g0 < hd; g0 += G)
            for (int i = g0; i < g0 + G; i++)
                EXPECT_LE(std::abs(double(back[size_t(i)]) - x[size_t(i)]), bound(c, x.data() + g0, G)) << name;
        if (G == 32) {
            double worst = 0;
            for (int i = 32; i < 64; i++) worst = std::max(worst, std::abs(double(back[size_t(i)]) - x[size_t(i)]));
            EXPECT_LT(worst, 0.5) << name;
        }
        for (float bad : {NAN, INFINITY, -INFINITY}) {
            x[7] = bad;
            try {
                kv_encode_row(c, hd, x.data(), row.data());
                ADD_FAILURE() << name << " stored " << bad;
            } catch (const std::runtime_error& e) {
                EXPECT_NE(std::string(e.what()).find("finite"), std::string::npos) << e.what();
            }
        }
    }
    // Float codecs store what they are given, NaN included.
    std::vector<float> x(8, NAN), back(8);
    std::vector<uint8_t> row(32);
    kv_encode_row(parse_kv_codec("fp16", "x"), 8, x.data(), row.data());
    kv_decode_row(parse_kv_codec("fp16", "x"), 8, row.data(), back.data());
    EXPECT_TRUE(std::isnan(back[0]));
}

// The kernel decodes inside the dot products and the weighted sum; the reference decodes
// every row with kv_decode_row and attends in double precision.
TEST(KvCodec, AttentionOverEncodedRowsMatchesTheScalarReference) {
    std::mt19937 rng(11);
    std::vector<std::string> codecs(std::begin(kIntCodecs), std::end(kIntCodecs));
    codecs.push_back("fp16");
    for (int hd : {8, 64, 128})
        for (const std::string& kn : codecs)
            for (const std::string& vn : {std::string("int8"), std::string("int4"), kn}) {
                const KvCodec kc = kv_codec_for(parse_kv_codec(kn, "k"), hd, "k");
                const KvCodec vc = kv_codec_for(parse_kv_codec(vn, "v"), hd, "v");
                const int slots = 77, lo = 3, hi = 77;
                std::vector<uint8_t> K(static_cast<size_t>(kv_row_stride(kc, hd) * slots)), V(static_cast<size_t>(kv_row_stride(vc, hd) * slots));
                for (int j = 0; j < slots; j++) {
                    auto k = random_row(hd, rng), v = random_row(hd, rng);
                    kv_encode_row(kc, hd, k.data(), K.data() + j * kv_row_stride(kc, hd));
                    kv_encode_row(vc, hd, v.data(), V.data() + j * kv_row_stride(vc, hd));
                }
                for (int n : {1, 3}) {
                    std::vector<std::vector<float>> q(static_cast<size_t>(n)), out(static_cast<size_t>(n), std::vector<float>(static_cast<size_t>(hd)));
                    const float* qp[8];
                    const void *kp[8], *vp[8];
                    float* op[8];
                    for (int x = 0; x < n; x++) {
                        q[size_t(x)] = random_row(hd, rng, 0.5f);
                        qp[x] = q[size_t(x)].data(), kp[x] = K.data(), vp[x] = V.data(), op[x] = out[size_t(x)].data();
                    }
                    std::vector<float> scores(static_cast<size_t>(n * hi));
                    const float scale = 1.0f / std::sqrt(float(hd));
                    ops::attend_heads_codec(n, qp, kp, vp, kc, vc, hd, lo, hi, scale, scores.data(), op);
                    for (int x = 0; x < n; x++) {
                        std::vector<float> want(static_cast<size_t>(hd));
                        ops::ref::attend_head_codec(qp[x], K.data(), V.data(), kc, vc, hd, lo, hi, scale, want.data());
                        for (int i = 0; i < hd; i++)
                            ASSERT_NEAR(out[size_t(x)][size_t(i)], want[size_t(i)], 2e-4 * (1 + std::abs(want[size_t(i)])))
                                << "K " << kn << " V " << vn << " hd " << hd << " head " << x << " channel " << i;
                    }
                }
            }
}


// Real weights, real text: every codec gives the same greedy tokens with the cache on and
// off (the no-cache path recomputes through a scratch cache in the same codec), and a
// sequence in a batch gets what it gets alone.
TEST(KvCodec, GreedyTokensCacheOnEqualsOffAndBatchEqualsAloneOnStories260K) {
    const std::vector<int32_t> a = {1, 403, 407, 261, 378}, b = {1, 79, 263, 307};
    for (const char* name : {"int8", "int4", "int2", "int4-sym"}) {
        const KvFormat f(parse_kv_codec(name, "x"));
        const auto on = test::stories_greedy(f, true, {a}, 60), off = test::stories_greedy(f, false, {a}, 60);
        EXPECT_EQ(on, off) << name;
        const auto both = test::stories_greedy(f, true, {a, b}, 40), alone_b = test::stories_greedy(f, true, {b}, 40);
        EXPECT_EQ(both[1], alone_b[0]) << name;
    }
    const KvFormat mixed(parse_kv_codec("int8", "k"), parse_kv_codec("int4", "v"));
    EXPECT_EQ(test::stories_greedy(mixed, true, {a}, 60), test::stories_greedy(mixed, false, {a}, 60));
}
