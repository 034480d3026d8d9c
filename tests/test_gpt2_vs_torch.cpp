// Golden test: kvscope's GPT-2 logits against an independent PyTorch implementation
// (tools/torch_gpt2_ref.py, Debian python3-torch, computing in float64) reading the same
// safetensors, at every position of several prompts.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "model/loader.h"
#include "runtime/engine.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

bool have_torch() {
    static int ok = -1;
    if (ok < 0) ok = test::run_cmd("/usr/bin/python3 -c 'import torch, numpy'").status == 0;
    return ok == 1;
}

struct Reference {
    std::vector<std::vector<float>> logits;  // per prompt: [n_pos * n_vocab]
    std::vector<std::vector<int32_t>> greedy;
};

Reference torch_reference(const fs::path& model, const std::vector<std::vector<int32_t>>& prompts, int greedy) {
    fs::path d = test::temp_dir("torchref");
    std::string cmd = "/usr/bin/python3 " + test::source_dir() + "/tools/torch_gpt2_ref.py --float64 --threads 2 --model " +
                      model.string() + " --out " + (d / "ref.json").string() + " --out-bin " + (d / "ref.bin").string() +
                      " --greedy " + std::to_string(greedy);
    for (const auto& p : prompts) {
        std::string s;
        for (size_t i = 0; i < p.size(); i++) s += (i ? "," : "") + std::to_string(p[i]);
        cmd += " --prompt-ids " + s;
    }
    auto r = test::run_cmd(cmd);
    if (r.status != 0) ADD_FAILURE() << "torch reference failed: " << r.err;
    auto j = nlohmann::json::parse(read_file(d / "ref.json"));
    std::string bin = read_file(d / "ref.bin");
    const int64_t V = j["n_vocab"].get<int64_t>();
    Reference ref;
    for (const auto& p : j["prompts"]) {
        int64_t off = p["bin_offset"].get<int64_t>(), n = p["n_pos"].get<int64_t>();
        std::vector<float> l(size_t(n * V));
        std::memcpy(l.data(), bin.data() + off * 4, size_t(n * V) * 4);
        ref.logits.push_back(std::move(l));
        ref.greedy.push_back(p.value("greedy", std::vector<int32_t>{}));
    }
    return ref;
}

// Compares at every position; prints the max difference per position.
void compare(const fs::path& dir, const std::vector<std::vector<int32_t>>& prompts, double atol, double rtol) {
    Model m = load_model(dir.string(), DType::F32);
    const int greedy_n = 24;
    Reference ref = torch_reference(dir, prompts, greedy_n);
    ASSERT_EQ(ref.logits.size(), prompts.size());
    for (size_t pi = 0; pi < prompts.size(); pi++) {
        const auto& p = prompts[pi];
        EngineOptions eo;
        eo.max_prompt = int(p.size());
        eo.max_new_tokens = greedy_n;
        eo.all_logits = true;
        Engine e(*m.weights, eo);
        std::vector<float> ours = e.all_logits(p);
        ASSERT_EQ(ours.size(), ref.logits[pi].size());
        const int64_t V = m.cfg.n_vocab;
        double worst = 0;
        for (size_t pos = 0; pos < p.size(); pos++) {
            double mx = 0, mref = 0;
            for (int64_t v = 0; v < V; v++) {
                double a = ours[pos * size_t(V) + size_t(v)], r = ref.logits[pi][pos * size_t(V) + size_t(v)];
                mx = std::max(mx, std::abs(a - r));
                mref = std::max(mref, std::abs(r));
                ASSERT_LE(std::abs(a - r), atol + rtol * std::abs(r))
                    << "prompt " << pi << " position " << pos << " logit " << v << ": kvscope " << a << " torch " << r;
            }
            worst = std::max(worst, mx);
            std::printf("  prompt %zu pos %2zu: max |kvscope - torch| = %.3g (max |logit| %.3g)\n", pi, pos, mx, mref);
        }
        std::printf("prompt %zu: worst max abs difference %.3g over %zu positions\n", pi, worst, p.size());
        GenerateOptions go;
        go.max_new_tokens = greedy_n;
        go.stop_at_eos = false;
        auto r = e.generate({p}, go);
        EXPECT_EQ(r.tokens[0], ref.greedy[pi]) << "greedy continuation differs from PyTorch for prompt " << pi;
    }
}

}  // namespace

TEST(Gpt2VsTorch, TinyRandomModelMatchesAtEveryPosition) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    fs::path dir = test::tiny_model_dir("torch-tiny", test::tiny_config(96, 128), 11);
    compare(dir, {{1, 2, 3, 4, 5, 6, 7, 8}, {42}, {90, 3, 3, 3, 17, 64, 2, 9, 11, 80, 1, 5, 33}}, 1e-4, 1e-4);
}

TEST(Gpt2VsTorch, Distilgpt2ShapedSyntheticCheckpointMatches) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    ModelConfig c;
    ASSERT_TRUE(preset_config("distilgpt2", &c));
    fs::path dir = test::tiny_model_dir("torch-distil", c, 5);
    compare(dir, {{464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}, {50256, 40, 1101}}, 2e-4, 1e-4);
    fs::remove_all(dir);
}

TEST(Gpt2VsTorch, CheckpointWrittenByPyTorchSideInHalfPrecisionLoads) {
    if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch: apt-get install python3-torch";
    for (std::string st : {"F16", "BF16"}) {
        fs::path dir = test::temp_dir("torch-written-" + st) / "m";
        auto r = test::run_cmd("/usr/bin/python3 " + test::source_dir() + "/tools/torch_gpt2_ref.py --make-random " +
                               dir.string() + " --shape tiny --seed 3 --st-dtype " + st);
        ASSERT_EQ(r.status, 0) << r.err;
        // Weights stored in 16 bits are widened exactly to fp32 at load: same math as the reference.
        compare(dir, {{1, 2, 3, 4, 5}}, 1e-4, 1e-4);
    }
}
