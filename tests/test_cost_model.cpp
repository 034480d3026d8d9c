// The cost model on distilgpt2, counted by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "analysis/cost_model.h"
#include "analysis/stats.h"
#include "kv/kv_codec.h"
#include "model/gpt2_weights.h"

using namespace kvscope;

static ModelConfig distil() {
    ModelConfig c;
    EXPECT_TRUE(preset_config("distilgpt2", &c));
    return c;
}

TEST(CostModel, Distilgpt2FlopsPerDecodeToken) {
    ModelConfig c = distil();
    // per layer: 768*2304 + 768*768 + 768*3072 + 3072*768 = 7,077,888 MACs; x6 layers; head 768*50257.
    EXPECT_EQ(matmul_flops_per_token(c, false), 2.0 * 6 * 7077888);
    EXPECT_EQ(matmul_flops_per_token(c, true), 2.0 * (6 * 7077888 + 768.0 * 50257));
    Cost k = decode_step_cost(c, DType::F32, DType::F32, 1, 99);
    // attention: 6 layers x 12 heads x 64 x 100 keys x 4 FLOPs
    EXPECT_EQ(k.flops_attn, 6.0 * 12 * 64 * 100 * 4);
    EXPECT_EQ(k.flops_matmul, 162129408.0);
}

TEST(CostModel, Distilgpt2BytesPerDecodeToken) {
    ModelConfig c = distil();
    // matrices: 6 x 7,077,888 + 50257 x 768 = 81,064,704 values; vectors: 6 x 9984 + 1536 = 61,440 fp32.
    EXPECT_EQ(weight_bytes_per_step(c, DType::F32), 81064704.0 * 4 + 61440.0 * 4);
    EXPECT_EQ(weight_bytes_per_step(c, DType::BF16), 81064704.0 * 2 + 61440.0 * 4);
    // 324.5 MB in fp32 (the issue quotes 324.3 MB for the matrices alone).
    EXPECT_NEAR(weight_bytes_per_step(c, DType::F32) / 1e6, 324.5, 0.05);
    Cost k = decode_step_cost(c, DType::F32, DType::F16, 4, 127);
    EXPECT_EQ(k.bytes_kv_read, 4.0 * 128 * 18432);  // fp16 KV: 18,432 bytes per token
    EXPECT_EQ(k.bytes_kv_write, 4.0 * 18432);
}

TEST(CostModel, PrefillCountsEveryTokenAndOneHeadRowPerSequence) {
    ModelConfig c = distil();
    Cost p = prefill_cost(c, DType::F32, DType::F32, 2, 512);
    EXPECT_EQ(p.flops_matmul, 2 * (512 * 2.0 * 6 * 7077888 + 2.0 * 768 * 50257));
    EXPECT_EQ(p.flops_attn, 2 * 6 * 2.0 * 768 * 512 * 513);
    EXPECT_EQ(p.bytes_kv_write, 2.0 * 512 * 36864);
    EXPECT_EQ(p.bytes_kv_read, 2.0 * 512 * 36864);
    // A one-token prefill is a decode step at depth 0.
    Cost a = prefill_cost(c, DType::F32, DType::F32, 1, 1), b = decode_step_cost(c, DType::F32, DType::F32, 1, 0);
    EXPECT_EQ(a.flops(), b.flops());
    EXPECT_EQ(a.bytes(), b.bytes());
    EXPECT_LT(decode_step_cost(c, DType::F32, DType::F32, 1, 64).intensity(), 1.0);   // memory-bound
    EXPECT_GT(prefill_cost(c, DType::F32, DType::F32, 1, 512).intensity(), 100.0);   // compute-bound
}

TEST(Stats, MedianAndP95OnKnownInputs) {
    Summary s = summarize({5, 1, 4, 2, 3});
    EXPECT_EQ(s.median, 3);
    EXPECT_DOUBLE_EQ(s.p95, 4.8);  // linear interpolation: 4 + 0.8 * (5 - 4)
    EXPECT_EQ(s.min, 1);
    EXPECT_EQ(s.max, 5);
    EXPECT_DOUBLE_EQ(s.mean, 3);
    EXPECT_NEAR(s.stddev, 1.5811388, 1e-6);
    EXPECT_EQ(summarize({7}).stddev, 0);
    EXPECT_EQ(percentile({1, 2, 3, 4}, 50), 2.5);
    EXPECT_TRUE(std::isnan(summarize({}).median));
}

// TinyLlama-1.1B by hand: grouped-query K/V projections (4 KV heads of 64) and three MLP
// matrices per layer, an untied head.
TEST(CostModel, TinyLlamaBytesAndFlopsPerDecodeToken) {
    ModelConfig c;
    ASSERT_TRUE(preset_config("tinyllama-1.1b", &c));
    // per layer: q 2048x2048, k and v 2048x256 each, o 2048x2048, gate/up/down 2048x5632 each
    // = 4,194,304 + 1,048,576 + 4,194,304 + 34,603,008 = 44,040,192; head 32000 x 2048.
    const double mats = 22.0 * 44040192 + 32000.0 * 2048;
    const double vecs = 22.0 * 2 * 2048 + 2048;  // two RMSNorms per layer and the final one
    EXPECT_EQ(weight_bytes_per_step(c, DType::BF16), mats * 2 + vecs * 4);
    EXPECT_EQ(matmul_flops_per_token(c, true), 2.0 * mats);
    Cost k = decode_step_cost(c, DType::BF16, DType::F16, 1, 99);
    EXPECT_EQ(k.flops_attn, 22.0 * 32 * 64 * 100 * 4);          // every query head attends
    EXPECT_EQ(k.bytes_kv_read, 100.0 * 2 * 22 * 4 * 64 * 2);    // 4 KV heads are read
}

// A windowed format's step reads its sinks and window as fp16 rows and the rest as codes.
// distilgpt2: 6 layers x 12 heads x 64 channels; int8 per token: 64 codes + a 2-byte scale.
TEST(CostModel, AWindowIsReadAsFp16) {
    ModelConfig c = distil();
    const KvFormat f = parse_kv_format_spec("int8+r32+s4", "--kv-dtypes");
    const double fp16_tok = 2.0 * 6 * 12 * 64 * 2, int8_tok = 2.0 * 6 * 12 * (64 + 2);
    EXPECT_DOUBLE_EQ(decode_step_cost(c, DType::F32, f, 2, 9).bytes_kv_read, 2 * 10 * fp16_tok);  // all in the window
    EXPECT_DOUBLE_EQ(decode_step_cost(c, DType::F32, f, 2, 99).bytes_kv_read, 2 * (36 * fp16_tok + 64 * int8_tok));
    EXPECT_DOUBLE_EQ(decode_step_cost(c, DType::F32, DType::F16, 2, 99).bytes_kv_read, 2 * 100 * fp16_tok);
}
