// kvscope plan on paper: every figure hand-computed here from the published configs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "analysis/plan.h"
#include "core/error.h"
#include "model/config.h"
#include "test_util.h"

using namespace kvscope;
using namespace kvscope::analysis;

namespace {

PlanInput input(const std::string& preset, const std::string& kv = "fp16") {
    PlanInput in;
    EXPECT_TRUE(preset_config(preset, &in.cfg)) << preset;
    EXPECT_TRUE(named_device("H100", &in.device));
    in.kv = kv;
    return in;
}

}  // namespace

TEST(Plan, KvBytesPerTokenOfPublishedModels) {
    // Llama-3-8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes.
    EXPECT_EQ(plan(input("llama-3-8b")).kv_bytes_per_token, 32.0 * 8 * 128 * 2 * 2);
    EXPECT_EQ(plan(input("llama-3-8b")).kv_bytes_per_token, 131072.0);
    // Llama-3-70B: 80 x 8 x 128 x 2 x 2.
    EXPECT_EQ(plan(input("llama-3-70b")).kv_bytes_per_token, 327680.0);
    // GPT-2 small in fp32: 12 x 12 x 64 x 2 x 4.
    EXPECT_EQ(plan(input("gpt2", "fp32")).kv_bytes_per_token, 73728.0);
    // Mistral-7B: 32 x 8 x 128 x 2 x 2, and 4x that without GQA.
    const PlanResult m = plan(input("mistral-7b"));
    EXPECT_EQ(m.kv_bytes_per_token, 131072.0);
    EXPECT_EQ(m.kv_bytes_per_token_mha, 4 * 131072.0);
    // TinyLlama: 22 x 4 x 64 x 2 x 2 = 22528; stories260K-like shapes are in test_llama2c.
    EXPECT_EQ(plan(input("tinyllama-1.1b")).kv_bytes_per_token, 22528.0);
}

TEST(Plan, QuantizedKvCountsItsScales) {
    // int8 per token: 128 codes + one fp16 scale per head row, for K and V of 32 layers x 8 heads.
    EXPECT_EQ(plan(input("llama-3-8b", "int8")).kv_bytes_per_token, 32.0 * 8 * 2 * (128 + 2));
    // int4 in groups of 32 with fp16 scale and zero: 64 bytes of codes + 4 groups x 4 bytes.
    EXPECT_EQ(plan(input("llama-3-8b", "int4")).kv_bytes_per_token, 32.0 * 8 * 2 * (64 + 16));
    EXPECT_EQ(plan(input("llama-3-8b", "fp8")).kv_bytes_per_token, 32.0 * 8 * 2 * 128);
}

TEST(Plan, ParametersAndWeightBytes) {
    // Llama-3-8B: 8,030,261,248 parameters (its model card's 8.03 B).
    const PlanResult r = plan(input("llama-3-8b"));
    EXPECT_EQ(r.params, 8030261248);
    EXPECT_EQ(r.weight_bytes, 2.0 * 8030261248);
    // GPT-2 small: 124,439,808 (the tied head counted once).
    EXPECT_EQ(plan(input("gpt2")).params, 124439808);
}

TEST(Plan, FitsAndTensorParallelism) {
    PlanInput in = input("llama-3-70b");
    in.memory = 80e9;
    in.tp = 2;
    const PlanResult r = plan(in);
    // 70.55 B parameters in bf16 over 2 devices, 80 GB each.
    EXPECT_NEAR(r.weight_bytes_per_device, double(r.params), 1.0);
    EXPECT_EQ(r.kv_heads_per_device, 4);
    EXPECT_EQ(r.kv_bytes_per_token_device, 327680.0 / 2);
    const double free = 80e9 - double(r.params);
    EXPECT_EQ(r.free_bytes, free);
    ASSERT_FALSE(r.fits.empty());
    EXPECT_EQ(r.fits[0].context, 1024);
    EXPECT_EQ(r.fits[0].max_batch, int64_t(free / (163840.0 * 1024)));
    // 8 KV heads over 16 devices: each holds one (a KV head is not split).
    in.tp = 16;
    EXPECT_EQ(plan(in).kv_heads_per_device, 1);
    in.tp = 3;  // 64 heads are not divisible by 3
    EXPECT_THROW(plan(in), Error);
}

TEST(Plan, RooflineDecodeIsBandwidthBoundAtBatchOne) {
    PlanInput in = input("llama-3-8b");
    in.context = 1024;
    const PlanResult r = plan(in);
    // Bytes of a step: the matrices (every parameter but the untied embedding) + 1024 tokens of KV.
    const double mm = 8030261248.0 - 128256.0 * 4096;
    EXPECT_EQ(r.decode_bytes, mm * 2 + 131072.0 * 1024);
    EXPECT_TRUE(r.decode_memory_bound);
    EXPECT_NEAR(r.decode_tok_s, 3.35e12 / r.decode_bytes, 1e-9);
    // At batch 4096 of short sequences the step is compute-bound (long ones stay bound by their KV).
    in.batch = 4096;
    EXPECT_TRUE(plan(in).decode_memory_bound);
    in.context = 16;
    EXPECT_FALSE(plan(in).decode_memory_bound);
}

TEST(Plan, UnitsAndDevices) {
    EXPECT_EQ(parse_bytes("80GiB", "--memory"), 80.0 * 1024 * 1024 * 1024);
    EXPECT_EQ(parse_bytes("24GB", "--memory"), 24e9);
    EXPECT_EQ(parse_rate("3.35TB/s", "--bandwidth"), 3.35e12);
    EXPECT_EQ(parse_flops("989TFLOPS", "--flops"), 989e12);
    EXPECT_EQ(parse_flops("3.6 TFLOP/s", "--flops"), 3.6e12);
    EXPECT_THROW(parse_bytes("80", "--memory"), Error);
    EXPECT_THROW(parse_rate("fast", "--bandwidth"), Error);
    EXPECT_THROW(parse_flops("-1TFLOPS", "--flops"), Error);
    Device d;
    for (const char* n : {"H100", "h200", "A100-80GB", "L4", "RTX 4090", "M2"}) EXPECT_TRUE(named_device(n, &d)) << n;
    EXPECT_FALSE(named_device("TPU", &d));
}

TEST(Plan, CommandLineOnAConfigFileWithJson) {
    auto dir = test::temp_dir("plan");
    const std::string cfg = (dir / "config.json").string();
    std::FILE* f = std::fopen(cfg.c_str(), "w");
    // A Gemma-style config (MQA, explicit head_dim): sized, though kvscope does not run it.
    std::fputs(R"({"model_type": "gemma", "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
                   "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 256000,
                   "max_position_embeddings": 8192, "hidden_act": "gelu"})",
               f);
    std::fclose(f);
    auto r = test::run_cmd(test::kvscope_bin() + " plan --config " + cfg + " --device L4 --json --csv " +
                           (dir / "plan.csv").string());
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["kv_bytes_per_token"]["fp16"].get<double>(), 18.0 * 1 * 256 * 2 * 2);
    EXPECT_EQ(j["device"]["name"], "L4");
    EXPECT_TRUE(std::filesystem::exists(dir / "plan.csv"));
    r = test::run_cmd(test::kvscope_bin() + " plan --model llama-3-70b --tp 8 --memory 80GiB");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("327680 B/token"), std::string::npos) << r.out;
    r = test::run_cmd(test::kvscope_bin() + " plan --model llama-3-8b --device TPU");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("--device TPU"), std::string::npos);
    r = test::run_cmd(test::kvscope_bin() + " run --model llama-3-70b --prompt-ids 1");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("for kvscope info and plan only"), std::string::npos) << r.err;
}
