// Generation invariants on a small synthetic GPT-2: cache on == cache off, batch == alone,
// left padding == packed, determinism, and the sampler.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "arch/gpt2.h"
#include "core/error.h"
#include "model/loader.h"
#include "ops/read.h"
#include "runtime/engine.h"
#include "test_util.h"

using namespace kvscope;

namespace {

struct Fixture {
    Model m;
    Fixture(DType dt = DType::F32) {
        auto dir = test::tiny_model_dir("gen", test::tiny_config());
        m = load_model(dir.string(), dt);
    }
};

std::vector<std::vector<int32_t>> generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts, int n_new,
                                           bool cache, bool left_pad = false, DType kv = DType::F32,
                                           SamplingParams sp = {}) {
    EngineOptions eo;
    eo.n_seq = int(prompts.size());
    for (const auto& p : prompts) eo.max_prompt = std::max(eo.max_prompt, int(p.size()));
    eo.max_new_tokens = n_new;
    eo.use_cache = cache;
    eo.left_pad = left_pad;
    eo.kv_dtype = kv;
    Engine e(*m.weights, eo);
    GenerateOptions go;
    go.max_new_tokens = n_new;
    go.stop_at_eos = false;
    go.sampling = sp;
    return e.generate(prompts, go).tokens;
}

}  // namespace

TEST(Generation, CacheOnAndOffGiveIdenticalGreedyTokensFor64Steps) {
    Fixture f;
    std::vector<std::vector<int32_t>> p = {{3, 14, 15, 92, 65, 35}};
    auto on = generate(f.m, p, 80, true);
    auto off = generate(f.m, p, 80, false);
    ASSERT_EQ(on[0].size(), 80u);
    EXPECT_EQ(on, off);
}

TEST(Generation, CacheOnAndOffAgreeForEveryCachePrecision) {
    for (DType kv : {DType::F16, DType::BF16}) {
        Fixture f;
        std::vector<std::vector<int32_t>> p = {{1, 2, 3, 4}};
        // The no-cache path stores K/V in the same precision, so the tokens are the same.
        EXPECT_EQ(generate(f.m, p, 40, true, false, kv), generate(f.m, p, 40, false, false, kv)) << dtype_name(kv);
    }
}

TEST(Generation, BatchOfUnequalPromptsGivesEachTheTokensItGetsAlone) {
    Fixture f;
    std::vector<std::vector<int32_t>> p = {{5, 6, 7}, {10, 11, 12, 13, 14, 15, 16, 17, 18}, {42}};
    for (bool cache : {true, false})
        for (bool pad : {false, true}) {
            auto batch = generate(f.m, p, 40, cache, pad);
            for (size_t i = 0; i < p.size(); i++) {
                auto alone = generate(f.m, {p[i]}, 40, cache);
                EXPECT_EQ(batch[i], alone[0]) << "prompt " << i << " cache " << cache << " left_pad " << pad;
            }
        }
}

TEST(Generation, SameSeedSameTokensDifferentSeedDifferentTokens) {
    Fixture f;
    std::vector<std::vector<int32_t>> p = {{1, 2, 3}};
    SamplingParams sp{1.0f, 40, 0.95f, 1234};
    auto a = generate(f.m, p, 48, true, false, DType::F32, sp);
    auto b = generate(f.m, p, 48, true, false, DType::F32, sp);
    EXPECT_EQ(a, b);
    sp.seed = 99;
    auto c = generate(f.m, p, 48, true, false, DType::F32, sp);
    EXPECT_NE(a, c);
    // Sampling is the same with the cache off.
    sp.seed = 1234;
    EXPECT_EQ(a, generate(f.m, p, 48, false, false, DType::F32, sp));
}

TEST(Generation, TopKOneIsGreedy) {
    Fixture f;
    std::vector<std::vector<int32_t>> p = {{9, 8, 7}};
    SamplingParams sp{0.8f, 1, 1.0f, 5};
    EXPECT_EQ(generate(f.m, p, 32, true, false, DType::F32, sp), generate(f.m, p, 32, true));
}

TEST(Generation, StopsAtEos) {
    Fixture f;
    EngineOptions eo;
    eo.max_prompt = 2;
    eo.max_new_tokens = 50;
    Engine e(*f.m.weights, eo);
    GenerateOptions go;
    go.max_new_tokens = 50;
    go.sampling = {1.5f, 0, 1.0f, 3};  // hot sampling reaches EOS (id 95) in a 96-token vocabulary
    bool stopped_early = false;
    for (uint64_t seed = 0; seed < 20 && !stopped_early; seed++) {
        go.sampling.seed = seed;
        auto r = e.generate({{1, 2}}, go);
        if (r.tokens[0].size() < 50) {
            EXPECT_EQ(r.tokens[0].back(), f.m.cfg.eos_id);
            stopped_early = true;
        }
    }
    EXPECT_TRUE(stopped_early);
}

TEST(Generation, PromptPastTheContextIsRefused) {
    Fixture f;
    EngineOptions eo;
    eo.max_prompt = 100;
    eo.max_new_tokens = 29;  // 129 > n_ctx 128
    try {
        Engine e(*f.m.weights, eo);
        FAIL();
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("context window"), std::string::npos) << e.what();
    }
}

TEST(Generation, HalfPrecisionWeightsTrackFp32) {
    Fixture f32;
    std::vector<std::vector<int32_t>> p = {{3, 1, 4, 1, 5}};
    for (DType dt : {DType::BF16, DType::F16}) {
        Fixture fh(dt);
        EXPECT_EQ(fh.m.weights->dtype(), dt);
        EngineOptions eo;
        eo.max_prompt = 5;
        eo.all_logits = true;
        Engine a(*f32.m.weights, eo), b(*fh.m.weights, eo);
        auto la = a.all_logits(p[0]), lb = b.all_logits(p[0]);
        double mx = 0;
        for (size_t i = 0; i < la.size(); i++) mx = std::max(mx, double(std::abs(la[i] - lb[i])));
        std::printf("%s weights: max |logit - fp32 logit| = %.3g\n", dtype_name(dt), mx);
        EXPECT_LT(mx, dt == DType::BF16 ? 5e-2 : 1e-2);
        EXPECT_GT(mx, 0.0);
    }
}

// The read-only floor reads what a decode step at that depth reads: every layer's four
// matrices, the K and V rows [0, keys) of every head of the sequence, and the LM head.
TEST(Generation, ReadFloorReadsTheStepsWeightsAndKeys) {
    Fixture f;
    const Gpt2Weights& w = dynamic_cast<const Gpt2Weights&>(*f.m.weights);
    const ModelConfig& c = w.config();
    const int slots = 40;
    KvCache cache({c.n_layer, 2, c.n_kv_head, slots, c.head_dim, DType::F32});
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> k(size_t(c.n_kv_head * c.head_dim)), v(k.size());
    for (int il = 0; il < c.n_layer; il++)
        for (int seq = 0; seq < 2; seq++)
            for (int slot = 0; slot < slots; slot++) {
                for (size_t i = 0; i < k.size(); i++) k[i] = u(rng), v[i] = u(rng);
                cache.write(il, seq, slot, 0, k.data(), v.data());
            }
    Gpt2Model model(w, 1, 1, slots);
    for (int seq : {0, 1})
        for (int keys : {1, 17, slots}) {
            uint32_t want = ops::read_words(w.lm_head.data, w.lm_head.bytes());
            for (int il = 0; il < c.n_layer; il++) {
                const Gpt2Layer& L = w.layers[size_t(il)];
                for (const WeightView* m : {&L.attn_qkv, &L.attn_proj, &L.fc, &L.proj})
                    want += ops::read_words(m->data, m->bytes());
                for (int h = 0; h < c.n_kv_head; h++) {
                    want += ops::read_words(cache.k(il, seq, h), int64_t(keys) * c.head_dim * 4);
                    want += ops::read_words(cache.v(il, seq, h), int64_t(keys) * c.head_dim * 4);
                }
            }
            EXPECT_EQ(model.read_step(cache, seq, keys), want) << "sequence " << seq << ", " << keys << " keys";
        }
    EXPECT_THROW(model.read_step(cache, 0, slots + 1), Error);
    EXPECT_THROW(model.read_step(cache, 0, 0), Error);

}

// Steps at chosen depths, interleaved with the read floor's: a step at depth d is the forward of
// prompt token d at slot d, so its greedy token is the one a generation over the same tokens
// would produce there.
TEST(Generation, StepsAtChosenDepthsMatchTheForwardAndReadFloor) {
    Fixture f;
    const Weights& w = *f.m.weights;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; i++) prompt.push_back(int32_t((i * 37 + 11) % 90));
    EngineOptions eo;
    eo.max_prompt = int(prompt.size());
    eo.max_new_tokens = 1;
    Engine e(w, eo);
    // Every depth once, in a scrambled order, a read-only step after each.
    std::vector<Engine::DepthStep> steps;
    for (int i = 0; i < 40; i++) {
        steps.push_back({(i * 17 + 3) % 40, false});
        steps.push_back({(i * 17 + 3) % 40, true});
    }
    const Engine::TimedSteps r = e.time_steps(prompt, steps);
    ASSERT_EQ(r.ms.size(), steps.size());
    ASSERT_EQ(r.tokens.size(), steps.size());
    for (double t : r.ms) EXPECT_GT(t, 0.0);
    // The greedy token after prompt[0..d], from a teacher-forced run over the prompt: the steps
    // before a deeper one left the keys it reads as the prefill wrote them (up to rounding).
    EngineOptions fo;
    fo.max_prompt = 1;
    fo.max_new_tokens = int(prompt.size());
    Engine forced(w, fo);
    std::vector<int32_t> rest(prompt.begin() + 1, prompt.end());
    rest.push_back(0);
    const std::vector<float> logits = forced.forced_logits({prompt[0]}, rest);
    const int V = w.config().n_vocab;
    for (size_t i = 0; i < steps.size(); i++) {
        if (steps[i].read_only) {
            EXPECT_EQ(r.tokens[i], -1);
            continue;
        }
        const float* row = logits.data() + int64_t(steps[i].depth) * V;
        EXPECT_EQ(r.tokens[i], int32_t(std::max_element(row, row + V) - row)) << "depth " << steps[i].depth;
    }
    EXPECT_THROW(e.time_steps(prompt, {{40, false}}), Error);  // past the prompt
    EXPECT_THROW(e.time_steps(prompt, {{-1, true}}), Error);
    EngineOptions nc = eo;
    nc.use_cache = false;
    Engine no_cache(w, nc);
    EXPECT_THROW(no_cache.time_steps(prompt, {{5, false}}), Error);
}
