// KIVI-style caches: per-channel key blocks (round trip within half a step per channel, exact
// bytes), the fp16 window and sinks (which rows a token reads in fp16, the cache's bytes by
// the textbook formula), attention over runs against the scalar reference, and on
// stories260K: cache on == cache off, batch == alone with left padding, and a window longer
// than the stream giving the fp16 cache's logits.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
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

std::vector<float> random_rows(int n, int hd, std::mt19937& rng) {
    std::normal_distribution<float> d(0.3f, 2.0f);
    std::vector<float> x(static_cast<size_t>(n) * size_t(hd));
    for (size_t i = 0; i < x.size(); i++) x[i] = d(rng) * (i % size_t(hd) == 5 ? 20.0f : 1.0f);  // channel 5: an outlier channel
    return x;
}

KvFormat spec(const char* s) { return parse_kv_format_spec(s, "--kv-dtypes"); }

}  // namespace

TEST(KvWindow, NamesParseAndPrint) {
    const KvFormat k = parse_kv_format("int4-kivi", "", "", 128, 4);
    EXPECT_EQ(k.k.axis, KvAxis::Channel);
    EXPECT_EQ(k.k.group, 32);
    EXPECT_TRUE(k.k.zero_point);
    EXPECT_EQ(k.v.axis, KvAxis::Token);
    EXPECT_EQ(k.v.group, 32);
    EXPECT_EQ(kv_format_name(k), "k=int4-c32-asym/v=int4-g32-asym+r128+s4");
    const KvFormat s = spec("int2-c64-sym/int2+r32");
    EXPECT_EQ(kv_codec_name(s.k), "int2-c64-sym");
    EXPECT_EQ(s.residual, 32);
    EXPECT_EQ(s.sinks, 0);
    EXPECT_EQ(kv_format_name(spec("int4-kivi+s4+r128")), kv_format_name(k));
    EXPECT_FALSE(spec("int8").windowed());
    EXPECT_TRUE(spec("int8+r16").windowed());
    EXPECT_TRUE(spec("int4-c32/int4").windowed());
    for (const char* bad : {"int4-c7", "int4-c2048", "fp16+r16", "int4+x3", "int4+r", "int4/int4-c32"})
        EXPECT_THROW(spec(bad), std::runtime_error) << bad;
    EXPECT_THROW(parse_kv_format("int4", "", "int4-c32"), std::runtime_error);
    EXPECT_THROW(parse_kv_format("fp16", "", "", 16, 0), std::runtime_error);
    EXPECT_THROW(parse_kv_format("int4", "", "", -1, 0), std::runtime_error);
}

// Each channel of a block of G tokens has its own scale and minimum: every element is within
// half of its channel's step, the outlier channel's range does not widen the others'.
TEST(KvWindow, ChannelBlocksRoundTripWithinHalfAStepPerChannel) {
    std::mt19937 rng(3);
    for (const char* name : {"int8-c32-asym", "int4-c32-asym", "int2-c32-asym", "int4-c16-sym", "int8-c8-sym"}) {
        const KvCodec c = parse_kv_codec(name, "x");
        const int hd = 64, G = c.group, bits = kv_codec_bits(c);
        EXPECT_EQ(kv_row_stride(c, hd), hd * bits / 8) << name;
        EXPECT_EQ(kv_channel_meta_bytes(c, hd), hd * 2 * (c.zero_point ? 2 : 1)) << name;
        EXPECT_EQ(kv_channel_blocks(c, 100), (100 + G - 1) / G) << name;
        EXPECT_DOUBLE_EQ(kv_row_bytes(c, hd), hd * bits / 8.0 + double(kv_channel_meta_bytes(c, hd)) / G) << name;
        const std::vector<float> x = random_rows(G, hd, rng);
        std::vector<uint8_t> rows(size_t(G * kv_row_stride(c, hd))), meta(size_t(kv_channel_meta_bytes(c, hd)));
        kv_encode_block(c, hd, x.data(), hd, rows.data(), kv_row_stride(c, hd), meta.data());
        std::vector<float> back(static_cast<size_t>(hd));
        for (int i = 0; i < hd; i++) {
            double mn = INFINITY, mx = -INFINITY, amax = 0;
            for (int r = 0; r < G; r++) {
                const double v = x[size_t(r * hd + i)];
                mn = std::min(mn, v), mx = std::max(mx, v), amax = std::max(amax, std::abs(v));
            }
            const double step = c.zero_point ? (mx - mn + std::abs(mn) / 1024 + 6e-8) / ((1 << bits) - 1)
                                             : amax / ((1 << (bits - 1)) - 1);
            for (int r = 0; r < G; r++) {
                kv_decode_block_row(c, hd, rows.data() + r * kv_row_stride(c, hd), meta.data(), back.data());
                ASSERT_LE(std::abs(back[size_t(i)] - x[size_t(r * hd + i)]), step * (1 + 1.0 / 1024) / 2 + 1e-6)
                    << name << " channel " << i << " token " << r;
            }
        }
    }
}

// The cache's bytes: codes for every slot, plus per (layer, sequence, KV head) and integer
// side: the Channel scales of ceil(slots / G) blocks, the sinks and the ring in fp16.
TEST(KvWindow, CacheBytesAreTheTextbookFormula) {
    KvShape sh{2, 3, 4, 100, 64, spec("int4-kivi+r16+s4")};
    sh.max_chunk = 8;
    KvCache c(sh);
    const int64_t heads = 2 * 3 * 4, ring = 16 + 32 + 8;
    EXPECT_EQ(c.ring_rows(), ring);
    const int64_t k = 100 * 32 + 4 * 64 * 2 * 2 + (4 + ring) * 64 * 2;  // codes, 4 blocks of scale+min, fp16 rows
    const int64_t v = 100 * (32 + 2 * 2 * 2) + (4 + ring) * 64 * 2;    // codes with 2 groups of scale+min, fp16 rows
    EXPECT_EQ(c.bytes_allocated(), heads * (k + v));
    KvShape plain{2, 3, 4, 100, 64, spec("int8")};
    EXPECT_EQ(kv_cache_bytes(plain), heads * 100 * 2 * (64 + 2));
    KvShape half{2, 3, 4, 100, 64, spec("fp16/int8+r8")};  // the float side has no window
    half.max_chunk = 4;
    EXPECT_EQ(kv_cache_bytes(half), heads * (100 * (128 + 66) + (8 + 4) * 64 * 2));
}

// Which rows a token reads from where: sinks in fp16, whole key blocks older than the window as
// codes, the rest from the fp16 ring; values per token. Attention over those runs equals the
// reference that decodes every row first.
TEST(KvWindow, RunsSplitTheHistoryAndAttentionMatchesTheReference) {
    std::mt19937 rng(5);
    const int hd = 64, slots = 90, pad = 3;
    for (const char* name : {"int4-kivi+r16+s4", "int2-kivi", "int8-c16-asym/int4-sym+r5+s2", "int8+r7", "int4+s3"}) {
        const KvFormat f = spec(name);
        KvShape sh{1, 1, 2, slots, hd, f};
        sh.max_chunk = slots;
        KvCache cache(sh);
        const std::vector<float> k = random_rows(slots, 2 * hd, rng), v = random_rows(slots, 2 * hd, rng);
        for (int j = 0; j < slots; j++) cache.write(0, 0, j, pad, k.data() + j * 2 * hd, v.data() + j * 2 * hd);
        for (int s : {pad, pad + 1, pad + 5, 40, 57, slots - 1}) {
            const int lo = pad, hi = s + 1;
            for (int h = 0; h < 2; h++) {
                KvRuns kr, vr;
                cache.runs(0, 0, 0, h, pad, lo, hi, &kr);
                cache.runs(1, 0, 0, h, pad, lo, hi, &vr);
                for (const KvRuns* rr : {&kr, &vr}) {  // consecutive, covering [lo, hi)
                    int at = lo;
                    for (int r = 0; r < rr->n; r++) {
                        ASSERT_EQ(rr->r[r].j0, at) << name;
                        at = rr->r[r].j1;
                    }
                    ASSERT_EQ(at, hi) << name;
                }
                // Keys: the codes run ends at the last whole block (or token) older than the window.
                const int base = pad + f.sinks;
                int qend = base;
                if (hi > base)
                    qend = f.k.axis == KvAxis::Channel ? base + std::max(0, hi - base - f.residual) / f.k.group * f.k.group
                                                       : std::max(base, hi - f.residual);
                int coded = 0;
                for (int r = 0; r < kr.n; r++)
                    if (kr.r[r].codec.dtype != DType::F16) coded += kr.r[r].j1 - kr.r[r].j0;
                EXPECT_EQ(coded, qend - base) << name << " slot " << s;
                std::vector<float> q = random_rows(1, hd, rng), out(static_cast<size_t>(hd)), want(static_cast<size_t>(hd));
                std::vector<float> scores(static_cast<size_t>(hi));
                const float* qp[1] = {q.data()};
                const KvRuns* kp[1] = {&kr};
                const KvRuns* vp[1] = {&vr};
                float* op[1] = {out.data()};
                const float scale = 0.02f;
                ops::attend_heads_runs(1, qp, kp, vp, hd, lo, hi, scale, scores.data(), op);
                ops::ref::attend_head_runs(q.data(), kr, vr, hd, lo, hi, scale, want.data());
                for (int i = 0; i < hd; i++)
                    ASSERT_NEAR(out[size_t(i)], want[size_t(i)], 2e-4 * (1 + std::abs(want[size_t(i)])))
                        << name << " slot " << s << " head " << h << " channel " << i;
                // Rows inside the window read exactly their fp16 values.
                for (int r = 0; r < vr.n; r++)
                    if (vr.r[r].codec.dtype == DType::F16 && vr.r[r].j0 >= base) {
                        const auto* row = reinterpret_cast<const uint16_t*>(vr.r[r].rows);
                        for (int i = 0; i < hd; i++)
                            ASSERT_EQ(row[i], f32_to_f16(v[size_t(vr.r[r].j0 * 2 * hd + h * hd + i)])) << name;
                    }
            }
        }
    }
}


// Greedy tokens with the cache on (prefill in chunks, then one token per step) equal a full
// recompute at every step (one forward per sequence) for each windowed format; a sequence in a
// left-padded batch gets what it gets alone.
TEST(KvWindow, GreedyTokensCacheOnEqualsOffAndBatchEqualsAloneOnStories260K) {
    std::vector<int32_t> a = {1, 403, 407, 261, 378}, b = {1, 79, 263, 307};
    for (int i = 0; i < 70; i++) a.push_back(int32_t(300 + (i * 37) % 200));  // 75 tokens: three prefill chunks
    for (const char* name : {"int4-kivi+r16+s4", "int2-kivi", "int2-kivi+r32", "int8+r8+s2", "int4-c32-asym/fp16"}) {
        const KvFormat f = spec(name);
        const auto on = test::stories_greedy(f, true, {a}, 50), off = test::stories_greedy(f, false, {a}, 50);
        EXPECT_EQ(on, off) << name;
        const auto both = test::stories_greedy(f, true, {a, b}, 40, true), alone_b = test::stories_greedy(f, true, {b}, 40);
        EXPECT_EQ(both[1], alone_b[0]) << name;
    }
}

// A window longer than the stream keeps every row in fp16, whatever the codec behind it: those
// formats give the same logits bit for bit, and the fp16 cache's up to the order of the
// attention sums (a different order can flip the fp16 rounding of a later row, so the gap is
// of the size fp16 makes, under fp32 against fp16); without the window the codes show.
TEST(KvWindow, AWindowLongerThanTheStreamIsAnFp16Cache) {
    std::vector<int32_t> prompt = {1, 403, 407, 261, 378}, forced;
    for (int i = 0; i < 60; i++) prompt.push_back(int32_t(300 + (i * 53) % 200));
    for (int i = 0; i < 40; i++) forced.push_back(int32_t(260 + (i * 29) % 240));
    auto logits = [&](const KvFormat& f) {
        EngineOptions eo;
        eo.max_prompt = int(prompt.size());
        eo.max_new_tokens = int(forced.size());
        eo.kv_dtype = f;
        Engine e(*test::stories260k().weights, eo);
        return e.forced_logits(prompt, forced);
    };
    auto worst = [](const std::vector<float>& a, const std::vector<float>& b) {
        double w = 0;
        for (size_t i = 0; i < a.size(); i++) w = std::max(w, double(std::abs(a[i] - b[i])));
        return w;
    };
    const std::vector<float> window = logits(spec("int2-kivi+r512"));
    EXPECT_EQ(window, logits(spec("int8+r512")));
    EXPECT_EQ(window, logits(spec("int4-asym+s512")));
    const std::vector<float> f16 = logits(DType::F16), f32 = logits(DType::F32);
    const double fp16_gap = worst(f32, f16);
    EXPECT_LT(worst(window, f16), fp16_gap);
    EXPECT_GT(worst(logits(spec("int2-kivi")), f16), 10 * fp16_gap);
}
