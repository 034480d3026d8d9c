// The paged layout and prefix sharing give the contiguous cache's greedy tokens on stories260K.
#include <gtest/gtest.h>

#include <vector>

#include "test_stories.h"

namespace kvscope {
namespace {

struct Paged {
    int block = 0;
    bool prefix = false;
};

GenerateResult stories_run(const KvFormat& f, bool cache, const std::vector<std::vector<int32_t>>& prompts, int n,
                           Paged p, int runs = 1) {
    EngineOptions eo;
    eo.n_seq = int(prompts.size());
    eo.max_prompt = 0;
    for (const auto& q : prompts) eo.max_prompt = std::max(eo.max_prompt, int(q.size()));
    eo.max_new_tokens = n;
    eo.use_cache = cache;
    eo.kv_dtype = f;
    eo.kv_block = p.block;
    eo.prefix_cache = p.prefix;
    Engine e(*test::stories260k().weights, eo);
    GenerateOptions go;
    go.max_new_tokens = n;
    go.stop_at_eos = false;
    GenerateResult r;
    for (int i = 0; i < runs; i++) r = e.generate(prompts, go);
    return r;
}

std::vector<int32_t> tokens(int n, int salt) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; i++) t.push_back(int32_t(1 + (i * 37 + salt * 11) % 500));
    return t;
}

TEST(KvPaged, EqualsContiguousForUnequalPrompts) {
    const std::vector<std::vector<int32_t>> prompts = {tokens(5, 1), tokens(33, 2), tokens(16, 3)};
    for (DType d : {DType::F32, DType::I8}) {
        for (bool cache : {true, false}) {
            const auto want = stories_run(d, cache, prompts, 40, {}).tokens;
            for (int bt : {1, 7, 16}) EXPECT_EQ(stories_run(d, cache, prompts, 40, {bt, false}).tokens, want) << bt;
        }
    }
}

TEST(KvPaged, PrefixSharingSkipsPrefillAndKeepsTokens) {
    // Three prompts share a 40-token prefix (two full 16-token blocks), one does not.
    std::vector<std::vector<int32_t>> prompts;
    for (int s : {0, 1, 2}) {
        auto p = tokens(40, 9);
        const auto tail = tokens(3 + s * 5, 20 + s);
        p.insert(p.end(), tail.begin(), tail.end());
        prompts.push_back(p);
    }
    prompts.push_back(tokens(20, 4));
    for (DType d : {DType::F32, DType::I8}) {
        const auto want = stories_run(d, true, prompts, 24, {}).tokens;
        const GenerateResult r = stories_run(d, true, prompts, 24, {16, true});
        EXPECT_EQ(r.tokens, want);
        EXPECT_EQ(r.prefix_tokens_reused, 2 * 32);  // prompts 1 and 2 take the two full blocks
        EXPECT_EQ(r.prefill_forwards, 2);
        // A second generation finds every full block of the first in the cache.
        const GenerateResult again = stories_run(d, true, prompts, 24, {16, true}, 2);
        EXPECT_EQ(again.tokens, want);
        EXPECT_EQ(again.prefix_tokens_reused, 32 + 32 + 48 + 16);
    }
}

TEST(KvPaged, RefusesWindowedFormats) {
    KvFormat f = DType::I4;
    f.residual = 8;
    EXPECT_THROW(stories_run(f, true, {tokens(8, 1)}, 4, {16, false}), std::exception);
}

}  // namespace
}  // namespace kvscope
