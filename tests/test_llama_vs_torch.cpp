// Golden test: the Hugging Face Llama loader and forward pass against an independent PyTorch
// implementation (tools/torch_llama_ref.py, Debian python3-torch, float64) on small random
// directories that PyTorch's side writes: grouped-query attention (4 query heads, 2 KV heads),
// an untied output head, rotate-half RoPE, sharded safetensors with an index, Qwen2's q/k/v
// biases and Llama 3's rope_scaling. Every position of every prompt, prefill and decode.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "model/loader.h"
#include "runtime/engine.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

bool have_torch() { return test::run_cmd("/usr/bin/python3 -c 'import torch, numpy'").status == 0; }

std::string tool() { return "/usr/bin/python3 " + test::source_dir() + "/tools/torch_llama_ref.py"; }

fs::path make_dir(const std::string& variant, int shards) {
    fs::path d = test::temp_dir("llama-torch-" + variant) / "model";
    auto r = test::run_cmd(tool() + " --make-random " + d.string() + " --variant " + variant + " --shards " +
                           std::to_string(shards) + " --seed 4");
    EXPECT_EQ(r.status, 0) << r.err;
    return d;
}

std::vector<std::vector<float>> torch_logits(const fs::path& dir, const std::vector<std::vector<int32_t>>& prompts,
                                             const std::string& extra = "") {
    fs::path o = dir.parent_path();
    std::string cmd = tool() + " --model " + dir.string() + " --out " + (o / "ref.json").string() + " --out-bin " +
                      (o / "ref.bin").string() + extra;
    for (const auto& p : prompts) {
        std::string s;
        for (size_t i = 0; i < p.size(); i++) s += (i ? "," : "") + std::to_string(p[i]);
        cmd += " --prompt-ids " + s;
    }
    auto r = test::run_cmd(cmd);
    EXPECT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(read_file(o / "ref.json"));
    const std::string bin = read_file(o / "ref.bin");
    const int64_t V = j["n_vocab"].get<int64_t>();
    std::vector<std::vector<float>> out;
    for (const auto& p : j["prompts"]) {
        const int64_t off = p["bin_offset"].get<int64_t>(), n = p["n_pos"].get<int64_t>();
        std::vector<float> l(size_t(n * V));
        std::memcpy(l.data(), bin.data() + off * 4, size_t(n * V) * 4);
        out.push_back(std::move(l));
    }
    return out;
}

void compare(const fs::path& dir, const std::string& what) {
    const std::vector<std::vector<int32_t>> prompts = {
        {1, 5, 9, 33, 2, 71, 44, 18, 60, 3, 90, 12, 7, 7, 41, 29, 80, 1, 55, 64, 23, 11, 38, 47, 96, 0, 15, 8, 72, 31, 5, 19,
         52, 66, 85, 4, 13, 27, 49, 88},
        {42},
        {3, 3, 3, 17, 64, 2, 9}};
    const auto ref = torch_logits(dir, prompts);
    ASSERT_EQ(ref.size(), prompts.size());
    Model m = load_model(dir.string(), DType::F32);
    const int64_t V = m.cfg.n_vocab;
    for (size_t pi = 0; pi < prompts.size(); pi++) {
        const auto& p = prompts[pi];
        EngineOptions eo;
        eo.max_prompt = int(p.size());
        eo.max_new_tokens = 1;
        eo.all_logits = true;
        Engine e(*m.weights, eo);
        const std::vector<float> prefill = e.all_logits(p);
        EngineOptions fo;
        fo.max_prompt = 1;
        fo.max_new_tokens = int(p.size());
        Engine f(*m.weights, fo);
        std::vector<int32_t> rest(p.begin() + 1, p.end());
        rest.push_back(0);
        const std::vector<float> decode = f.forced_logits({p[0]}, rest);
        double worst = 0;
        for (size_t pos = 0; pos < p.size(); pos++)
            for (int64_t v = 0; v < V; v++) {
                const double r = ref[pi][pos * size_t(V) + size_t(v)];
                for (const std::vector<float>* ours : {&prefill, &decode}) {
                    const double a = (*ours)[pos * size_t(V) + size_t(v)];
                    worst = std::max(worst, std::abs(a - r));
                    ASSERT_LE(std::abs(a - r), 2e-4 + 1e-4 * std::abs(r))
                        << what << ": prompt " << pi << " position " << pos << " logit " << v << ": kvscope " << a
                        << " torch " << r << (ours == &prefill ? " (prefill)" : " (decode)");
                }
            }
        std::printf("%s, prompt %zu: max |kvscope - torch| %.3g over %zu positions\n", what.c_str(), pi, worst, p.size());
    }
}

}  // namespace

TEST(LlamaVsTorch, GqaUntiedShardedRotateHalf) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    const fs::path d = make_dir("llama", 3);
    ASSERT_TRUE(fs::exists(d / "model.safetensors.index.json"));
    ASSERT_TRUE(fs::exists(d / "model-00003-of-00003.safetensors"));
    compare(d, "llama, 3 shards");
}

TEST(LlamaVsTorch, Qwen2Biases) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    compare(make_dir("qwen2", 1), "qwen2");
}

TEST(LlamaVsTorch, Llama3RopeScaling) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    compare(make_dir("llama3", 2), "llama3 rope_scaling");
}

// Cache on and off, and each sequence of a batch alone, give the same greedy tokens.
TEST(LlamaVsTorch, CacheOnOffAndBatchAgree) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    Model m = load_model(make_dir("llama", 1).string(), DType::F32);
    const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 33}, {7, 8}, {11, 12, 13, 14, 15, 16}};
    auto run = [&](const std::vector<std::vector<int32_t>>& ps, bool cache, DType kv) {
        EngineOptions eo;
        eo.n_seq = int(ps.size());
        for (const auto& p : ps) eo.max_prompt = std::max(eo.max_prompt, int(p.size()));
        eo.max_new_tokens = 48;
        eo.use_cache = cache;
        eo.kv_dtype = kv;
        Engine e(*m.weights, eo);
        GenerateOptions go;
        go.max_new_tokens = 48;
        go.stop_at_eos = false;
        return e.generate(ps, go).tokens;
    };
    for (DType kv : {DType::F32, DType::F16, DType::BF16}) {
        const auto on = run(prompts, true, kv);
        EXPECT_EQ(on, run(prompts, false, kv)) << dtype_name(kv);
        for (size_t i = 0; i < prompts.size(); i++) EXPECT_EQ(on[i], run({prompts[i]}, true, kv)[0]) << dtype_name(kv) << " " << i;
    }
}

// StreamingLLM's positions within the cache (kvscope --kv-policy sinks and window) against an
// independent PyTorch decoder that caches pre-RoPE keys and rotates them at their index in the
// cache: every step of a 300-token stream, past the model's 256 positions.
TEST(LlamaVsTorch, SinksAndWindowUsePositionsWithinTheCache) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    const fs::path d = make_dir("llama", 1);
    Model m = load_model(d.string(), DType::F32);
    const int64_t V = m.cfg.n_vocab;
    std::vector<int32_t> ids;
    for (int i = 0; i < 300; i++) ids.push_back(int32_t((i * 37 + 11) % 97));
    for (int sinks : {4, 0}) {
        const int budget = 24;
        const auto ref = torch_logits(d, {ids}, " --stream-budget " + std::to_string(budget) + " --stream-sinks " +
                                                    std::to_string(sinks))[0];
        EngineOptions eo;
        eo.max_prompt = 1;
        eo.max_new_tokens = int(ids.size());
        eo.policy.kind = sinks > 0 ? KvPolicy::Sinks : KvPolicy::Window;
        eo.policy.budget = budget;
        eo.policy.sinks = sinks;
        Engine e(*m.weights, eo);
        std::vector<int32_t> rest(ids.begin() + 1, ids.end());
        rest.push_back(0);
        const std::vector<float> ours = e.forced_logits({ids[0]}, rest);
        double worst = 0;
        for (size_t pos = 0; pos < ids.size(); pos++)
            for (int64_t v = 0; v < V; v++) {
                const double r = ref[pos * size_t(V) + size_t(v)], a = ours[pos * size_t(V) + size_t(v)];
                worst = std::max(worst, std::abs(a - r));
                ASSERT_LE(std::abs(a - r), 2e-4 + 1e-4 * std::abs(r))
                    << (sinks ? "sinks" : "window") << ": position " << pos << " logit " << v << ": kvscope " << a << " torch " << r;
            }
        std::printf("%s %d, budget %d: max |kvscope - torch| %.3g over %zu positions\n", sinks ? "sinks" : "window", sinks,
                    budget, worst, ids.size());
    }
}

TEST(LlamaVsTorch, MissingShardIsNamed) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    const fs::path d = make_dir("llama", 2);
    fs::remove(d / "model-00002-of-00002.safetensors");
    auto r = test::run_cmd(test::kvscope_bin() + " run --model " + d.string() + " --prompt-ids 1 --max-new-tokens 2");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find((d / "model-00002-of-00002.safetensors").string() + ": missing shard"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}
