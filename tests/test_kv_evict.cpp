// Eviction policies: each policy's choice on small hand-built attention patterns, the row moves
// that compact a stream, a budget that evicts nothing giving the plain cache's results bit for
// bit, and generation past the context window (stories260K, real weights). StreamingLLM's
// positions within the cache are checked against PyTorch in test_llama_vs_torch.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "core/error.h"
#include "kv/kv_evict.h"
#include "test_stories.h"

namespace kvscope {
namespace {

KvPolicyConfig policy(KvPolicy k, int budget) {
    KvPolicyConfig p;
    p.kind = k;
    p.budget = budget;
    return p;
}

// Writes positions 0..n-1 at slots 0..n-1 of one sequence.
void fill(KvEvictor& e, int n) {
    for (int j = 0; j < n; j++) e.on_write(0, j, j);
}

std::set<int> kept(const KvEvictor& e, int il, int h, int n) {
    const int* p = e.positions(il, 0, h);
    return std::set<int>(p, p + n);
}

// One query (the newest token) of layer il, KV head h with these probabilities over slots [0, n).
void attend(KvEvictor& e, int il, int h, const std::vector<float>& probs, int rank = 0) {
    const float* p[1] = {probs.data()};
    e.observe(il, 0, h, rank, p, 1, 0, int(probs.size()), false);
}

TEST(KvEvict, WindowKeepsTheNewestAndCompactsFromTheTail) {
    KvEvictor e(policy(KvPolicy::Window, 6), 1, 1, 1, 1, 12);
    fill(e, 10);
    std::vector<KvEvictor::Move> moves;
    EXPECT_EQ(e.evict(0, 10, &moves), 6);
    EXPECT_EQ(kept(e, 0, 0, 6), (std::set<int>{4, 5, 6, 7, 8, 9}));
    // Slots 0-3 (positions 0-3) are the victims: rows 6-9 move into them; 4 and 5 stay.
    std::vector<std::pair<int, int>> m;
    for (const auto& x : moves) m.emplace_back(x.from, x.to);
    EXPECT_EQ(m, (std::vector<std::pair<int, int>>{{6, 0}, {7, 1}, {8, 2}, {9, 3}}));
    EXPECT_EQ(e.positions(0, 0, 0)[0], 6);
    EXPECT_EQ(e.positions(0, 0, 0)[4], 4);
    moves.clear();
    EXPECT_EQ(e.evict(0, 6, &moves), 6);  // within the budget: nothing
    EXPECT_TRUE(moves.empty());
    e.on_write(0, 6, 10);
    EXPECT_EQ(e.evict(0, 7, &moves), 6);
    EXPECT_EQ(kept(e, 0, 0, 6), (std::set<int>{5, 6, 7, 8, 9, 10}));
}

TEST(KvEvict, SinksKeepTheFirstTokensAndTheNewest) {
    KvPolicyConfig p = policy(KvPolicy::Sinks, 6);
    p.sinks = 2;
    KvEvictor e(p, 2, 1, 2, 1, 12);
    fill(e, 10);
    std::vector<KvEvictor::Move> moves;
    e.evict(0, 10, &moves);
    for (int il = 0; il < 2; il++)
        for (int h = 0; h < 2; h++) EXPECT_EQ(kept(e, il, h, 6), (std::set<int>{0, 1, 6, 7, 8, 9}));
    EXPECT_EQ(e.positions(0, 0, 0)[0], 0);  // sinks never move
    EXPECT_EQ(e.positions(0, 0, 0)[1], 1);
    EXPECT_EQ(moves.size(), 4u * 4);       // slots 2-5 filled from 6-9 in each of 4 streams
}

TEST(KvEvict, H2OKeepsTheRecentAndTheHeaviestHittersPerHead) {
    KvPolicyConfig p = policy(KvPolicy::H2O, 5);
    p.recent = 2;
    KvEvictor e(p, 1, 1, 2, 1, 12);
    fill(e, 8);
    // Two queries' attention; head 0 favours positions 1 and 4, head 1 positions 0, 2 and 3.
    attend(e, 0, 0, {0.1f, 0.5f, 0, 0, 0.3f, 0.1f, 0, 0}, 1);
    attend(e, 0, 0, {0, 0.2f, 0.1f, 0, 0.1f, 0.05f, 0.05f, 0.5f});
    attend(e, 0, 1, {0.3f, 0, 0.3f, 0.3f, 0, 0, 0.1f, 0});
    std::vector<KvEvictor::Move> moves;
    e.evict(0, 8, &moves);
    // Recent: 6, 7. Heavy (3 more): head 0: 1 (0.7), 4 (0.4), then 5 (0.15) over 0 (0.1) and 2 (0.1).
    EXPECT_EQ(kept(e, 0, 0, 5), (std::set<int>{1, 4, 5, 6, 7}));
    // Head 1: 0, 2, 3 (0.3 each); the rest 0.
    EXPECT_EQ(kept(e, 0, 1, 5), (std::set<int>{0, 2, 3, 6, 7}));
}

TEST(KvEvict, TovaKeepsWhatTheNewestQueryAttendsToSummedOverTheLayersHeads) {
    KvEvictor e(policy(KvPolicy::TOVA, 3), 1, 1, 2, 1, 8);
    fill(e, 5);
    attend(e, 0, 0, {0.1f, 0.4f, 0.1f, 0.2f, 0.2f});
    attend(e, 0, 1, {0.3f, 0.0f, 0.1f, 0.1f, 0.5f});
    // Sums over the heads: 0.4, 0.4, 0.2, 0.3, 0.7: positions 2 and 3 go.
    std::vector<KvEvictor::Move> moves;
    e.evict(0, 5, &moves);
    EXPECT_EQ(kept(e, 0, 0, 3), (std::set<int>{0, 1, 4}));
    EXPECT_EQ(kept(e, 0, 1, 3), (std::set<int>{0, 1, 4}));  // one choice for the whole layer
    // A query earlier in the same forward (rank 1) does not count. Slots now hold positions
    // 0, 1, 4 (4 moved into 2's slot) and 5; the sums 0.2, 1.2, 0.2, 0.4 tie at 0 and 4: the
    // older goes.
    e.on_write(0, 3, 5);
    attend(e, 0, 0, {0.9f, 0, 0, 0.1f}, 1);
    attend(e, 0, 0, {0.1f, 0.6f, 0.1f, 0.2f});
    attend(e, 0, 1, {0.1f, 0.6f, 0.1f, 0.2f});
    e.evict(0, 4, &moves);
    EXPECT_EQ(kept(e, 0, 0, 3), (std::set<int>{1, 4, 5}));
}

TEST(KvEvict, SnapKVScoresByTheObservationWindowMaxPooledOverNeighbours) {
    KvPolicyConfig p = policy(KvPolicy::SnapKV, 4);
    p.window = 2;
    p.pool = 3;
    KvEvictor e(p, 1, 1, 1, 1, 12);
    fill(e, 9);
    // The last two queries (positions 7 and 8, ranks 1 and 0) attend to position 2 mostly; an
    // older one (position 6, rank 2) favours 5 but is outside the window.
    attend(e, 0, 0, {0, 0, 0, 0, 0, 0.9f, 0.1f}, 2);
    attend(e, 0, 0, {0, 0.1f, 0.6f, 0, 0, 0, 0, 0.3f}, 1);
    attend(e, 0, 0, {0, 0, 0.5f, 0, 0, 0, 0.1f, 0.2f, 0.2f}, 0);
    std::vector<KvEvictor::Move> moves;
    e.evict(0, 9, &moves);
    // Window: 7, 8. Raw scores of 0-6: 0, 0.1, 1.1, 0, 0, 0, 0.1; max-pooled over 3 neighbours:
    // 0.1, 1.1, 1.1, 1.1, 0, 0.1, 0.1. Five go: 4, then 0, 5, 6 (0.1), then 1 (the oldest 1.1).
    EXPECT_EQ(kept(e, 0, 0, 4), (std::set<int>{2, 3, 7, 8}));
}

TEST(KvEvict, RefusesBudgetsThatLeaveNothingToEvict) {
    KvPolicyConfig p = policy(KvPolicy::Sinks, 4);
    p.sinks = 4;
    EXPECT_THROW(p.validate(), Error);
    p = policy(KvPolicy::H2O, 8);
    p.recent = 8;
    EXPECT_THROW(p.validate(), Error);
    EXPECT_THROW(parse_kv_policy("lru", "--kv-policy"), Error);
    EXPECT_EQ(parse_kv_budget("0.25", 512, "--kv-budget"), 128);
    EXPECT_EQ(parse_kv_budget("300", 512, "--kv-budget"), 300);
    for (const char* bad : {"", "-3", "1.5", "12x", "0"}) EXPECT_THROW(parse_kv_budget(bad, 512, "--kv-budget"), Error) << bad;
}

// ---- on the real model ------------------------------------------------------------------------

std::vector<int32_t> stream(int n) {
    std::vector<int32_t> t = {1};
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 7;
    EngineOptions eo;
    eo.max_prompt = 1;
    eo.max_new_tokens = n - 1;
    Engine e(*test::stories260k().weights, eo);
    GenerateOptions go;
    go.max_new_tokens = n - 1;
    go.stop_at_eos = false;
    go.sampling = sp;
    const auto g = e.generate({t}, go).tokens[0];
    t.insert(t.end(), g.begin(), g.end());
    return t;
}

std::vector<float> forced(const KvFormat& f, const KvPolicyConfig& p, const std::vector<int32_t>& s, int prompt) {
    EngineOptions eo;
    eo.max_prompt = prompt;
    eo.max_new_tokens = int(s.size()) - prompt;
    eo.kv_dtype = f;
    eo.policy = p;
    Engine e(*test::stories260k().weights, eo);
    return e.forced_logits(std::vector<int32_t>(s.begin(), s.begin() + prompt),
                           std::vector<int32_t>(s.begin() + prompt, s.end()));
}

TEST(KvEvict, BudgetCoveringTheStreamIsThePlainCacheBitForBit) {
    const auto s = stream(120);
    for (DType d : {DType::F32, DType::I8}) {
        const auto plain = forced(d, {}, s, 20);
        for (KvPolicy k : {KvPolicy::Window, KvPolicy::Sinks, KvPolicy::H2O, KvPolicy::SnapKV, KvPolicy::TOVA})
            EXPECT_EQ(forced(d, policy(k, 120), s, 20), plain) << kv_policy_name(k) << " " << dtype_name(d);
        // Greedy generation alike.
        EngineOptions eo;
        eo.max_prompt = 20;
        eo.max_new_tokens = 60;
        eo.kv_dtype = d;
        GenerateOptions go;
        go.max_new_tokens = 60;
        go.stop_at_eos = false;
        const std::vector<std::vector<int32_t>> p = {std::vector<int32_t>(s.begin(), s.begin() + 20)};
        const auto want = Engine(*test::stories260k().weights, eo).generate(p, go).tokens;
        eo.policy = policy(KvPolicy::H2O, 80);
        EXPECT_EQ(Engine(*test::stories260k().weights, eo).generate(p, go).tokens, want) << dtype_name(d);
    }
}

// Past the context window (512) the cache never holds more than its budget and the model keeps
// writing: the bounded policies generate 700 tokens; GPT-2's learned positions refuse.
TEST(KvEvict, BoundedPoliciesGeneratePastTheContextWindow) {
    for (KvPolicy k : {KvPolicy::Window, KvPolicy::Sinks, KvPolicy::H2O, KvPolicy::SnapKV, KvPolicy::TOVA}) {
        EngineOptions eo;
        eo.max_prompt = 1;
        eo.max_new_tokens = 700;
        eo.policy = policy(k, 64);
        Engine e(*test::stories260k().weights, eo);
        GenerateOptions go;
        go.max_new_tokens = 700;
        go.stop_at_eos = false;
        const auto r = e.generate({{1}}, go);
        EXPECT_EQ(r.tokens[0].size(), 700u) << kv_policy_name(k);
        EXPECT_EQ(e.held(0), 64) << kv_policy_name(k);
        EXPECT_EQ(e.kv_bytes(), kv_cache_bytes(engine_kv_shape(test::stories260k().cfg, eo)));
        for (int32_t t : r.tokens[0]) EXPECT_TRUE(t >= 0 && t < 512);
    }
    EngineOptions full;
    full.max_prompt = 1;
    full.max_new_tokens = 700;
    EXPECT_THROW(Engine(*test::stories260k().weights, full), Error);
}

}  // namespace
}  // namespace kvscope
