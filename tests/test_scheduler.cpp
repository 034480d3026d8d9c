// Continuous batching's bookkeeping on tiny budgets, asserted exactly: which tokens each step
// computes, lanes and blocks taken and returned, preemption when blocks run out, prefix reuse,
// and every reference count back to zero when a trace ends.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "runtime/scheduler.h"

namespace kvscope {
namespace {

SchedulerConfig config(ServePolicy p, int kv_tokens, int max_len, int block = 2, int step = 64) {
    SchedulerConfig c;
    c.policy = p;
    c.kv_tokens = kv_tokens;
    c.max_len = max_len;
    c.block_tokens = block;
    c.step_tokens = step;
    c.max_seqs = 8;
    return c;
}

// Items as (req, first, n, logits) for compact comparison.
std::vector<std::tuple<int, int, int, bool>> items(const Scheduler::Plan& p) {
    std::vector<std::tuple<int, int, int, bool>> v;
    for (const auto& it : p.items) v.emplace_back(it.req, it.first, it.n, it.logits);
    return v;
}

using Items = std::vector<std::tuple<int, int, int, bool>>;

TEST(Scheduler, StaticReservesMaxLenPerRequestAndWaitsForALane) {
    Scheduler s(config(ServePolicy::Static, 20, 10));  // two lanes of 10 slots
    EXPECT_EQ(s.config().lanes(), 2);
    s.add({5, 6, 7}, 2);
    s.add({8, 9}, 2);
    s.add({4}, 1);
    EXPECT_EQ(items(s.schedule()), (Items{{0, 0, 3, true}, {1, 0, 2, true}}));
    EXPECT_EQ(s.n_waiting(), 1);  // no third lane
    EXPECT_EQ(s.reserved_tokens(), 20);
    EXPECT_EQ(s.held_tokens(), 5);
    s.commit({11, 12});
    EXPECT_EQ(s.request(0).tokens, (std::vector<int32_t>{5, 6, 7, 11}));
    EXPECT_EQ(items(s.schedule()), (Items{{0, 3, 1, true}, {1, 2, 1, true}}));
    s.commit({13, 14});
    EXPECT_TRUE(s.request(0).finished);
    EXPECT_TRUE(s.request(1).finished);
    EXPECT_EQ(s.n_running(), 0);
    EXPECT_EQ(items(s.schedule()), (Items{{2, 0, 1, true}}));
    s.commit({15});
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(s.request(1).tokens, (std::vector<int32_t>{8, 9, 12, 14}));
}

TEST(Scheduler, LongPromptsArePrefilledInChunksAlongsideDecodes) {
    Scheduler s(config(ServePolicy::Paged, 64, 16, 4, 5));  // 5 tokens per step
    s.add({1, 2}, 3);
    EXPECT_EQ(items(s.schedule()), (Items{{0, 0, 2, true}}));
    s.commit({7});
    s.add({1, 2, 3, 4, 5, 6, 7, 8, 9}, 1);
    // The decode first, then as much of the new prompt as the budget leaves: no logits yet.
    EXPECT_EQ(items(s.schedule()), (Items{{0, 2, 1, true}, {1, 0, 4, false}}));
    s.commit({8});
    EXPECT_EQ(items(s.schedule()), (Items{{0, 3, 1, true}, {1, 4, 4, false}}));
    s.commit({9});
    EXPECT_TRUE(s.request(0).finished);
    EXPECT_EQ(items(s.schedule()), (Items{{1, 8, 1, true}}));
    s.commit({3});
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(s.pool()->n_referenced(), 0);
}

TEST(Scheduler, PagedTakesBlocksAsRequestsGrowAndPreemptsTheNewestWhenTheyRunOut) {
    Scheduler s(config(ServePolicy::Paged, 8, 8, 2));  // 4 blocks of 2 slots
    s.add({1, 2, 3}, 4);
    s.add({4, 5, 6}, 4);
    EXPECT_EQ(items(s.schedule()), (Items{{0, 0, 3, true}, {1, 0, 3, true}}));
    EXPECT_EQ(s.pool()->n_available(), 0);
    EXPECT_EQ(s.reserved_tokens(), 8);
    EXPECT_EQ(s.held_tokens(), 6);
    s.commit({10, 20});
    // Slot 3 is in each request's second block: no new block needed.
    EXPECT_EQ(items(s.schedule()), (Items{{0, 3, 1, true}, {1, 3, 1, true}}));
    s.commit({11, 21});
    // Slot 4 needs a third block for request 0: request 1 (admitted last) gives its blocks back.
    EXPECT_EQ(items(s.schedule()), (Items{{0, 4, 1, true}}));
    EXPECT_EQ(s.preemptions(), 1);
    EXPECT_EQ(s.request(1).computed, 0);
    EXPECT_EQ(s.request(1).lane, -1);
    EXPECT_EQ(s.n_waiting(), 1);
    EXPECT_EQ(s.pool()->n_referenced(), 3);
    s.commit({12});
    EXPECT_EQ(items(s.schedule()), (Items{{0, 5, 1, true}}));  // no room to readmit request 1 yet
    s.commit({13});
    EXPECT_TRUE(s.request(0).finished);
    EXPECT_EQ(s.pool()->n_referenced(), 0);
    // Readmitted, request 1 recomputes its prompt and both tokens it generated, then continues.
    EXPECT_EQ(items(s.schedule()), (Items{{1, 0, 5, true}}));
    EXPECT_EQ(s.request(1).generated, 2);
    s.commit({22});
    EXPECT_EQ(items(s.schedule()), (Items{{1, 5, 1, true}}));
    s.commit({23});
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(s.request(1).tokens, (std::vector<int32_t>{4, 5, 6, 20, 21, 22, 23}));
    EXPECT_EQ(s.request(1).preemptions, 1);
    EXPECT_EQ(s.pool()->n_referenced(), 0);
}

TEST(Scheduler, AdmissionWaitsWhenTheBlocksOfItsFirstChunkAreNotFree) {
    Scheduler s(config(ServePolicy::Paged, 8, 8, 2));
    s.add({1, 2, 3, 4, 5, 6}, 2);  // 3 blocks
    s.add({7, 8, 9, 10}, 1);       // 2 more: only 1 left
    EXPECT_EQ(items(s.schedule()), (Items{{0, 0, 6, true}}));
    EXPECT_EQ(s.n_waiting(), 1);
    s.commit({1});
    EXPECT_EQ(items(s.schedule()), (Items{{0, 6, 1, true}}));
    s.commit({1});
    EXPECT_EQ(items(s.schedule()), (Items{{1, 0, 4, true}}));
}

TEST(Scheduler, PrefixPolicyReusesPublishedBlocksAndComputesOnlyTheRest) {
    Scheduler s(config(ServePolicy::Prefix, 16, 8, 2));
    s.add({1, 2, 3, 4, 5}, 2);
    EXPECT_EQ(items(s.schedule()), (Items{{0, 0, 5, true}}));
    s.commit({6});  // blocks [1 2] and [3 4] are published
    s.add({1, 2, 3, 4, 9}, 2);
    s.add({1, 2, 7}, 1);
    EXPECT_EQ(items(s.schedule()), (Items{{0, 5, 1, true}, {1, 4, 1, true}, {2, 2, 1, true}}));
    EXPECT_EQ(s.request(1).prefix_reused, 4);
    EXPECT_EQ(s.request(2).prefix_reused, 2);
    EXPECT_EQ(s.prefix_tokens_reused(), 6);
    // Shared blocks count once among the held slots.
    EXPECT_EQ(s.held_tokens(), 6 + 1 + 1);
    s.commit({7, 8, 9});
    s.schedule();
    s.commit({1});
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(s.pool()->n_referenced(), 0);
    EXPECT_GT(s.pool()->n_cached(), 0);  // still findable for later requests
}

TEST(Scheduler, RefusesBudgetsThatCannotHoldOneRequest) {
    EXPECT_THROW(Scheduler(config(ServePolicy::Static, 9, 10)), Error);
    EXPECT_THROW(Scheduler(config(ServePolicy::Paged, 8, 10, 2)), Error);
    Scheduler s(config(ServePolicy::Paged, 8, 8, 2));
    EXPECT_THROW(s.add({1, 2, 3, 4, 5, 6, 7}, 2), Error);
    EXPECT_THROW(s.add({}, 2), Error);
    EXPECT_THROW(parse_serve_policy("lru", "--policies"), Error);
}

// Random traces on small pools: every step stays within the budget, held never exceeds
// reserved, every request ends with its own length, and no block stays referenced.
TEST(Scheduler, RandomTracesEndWithEveryReferenceReturned) {
    for (ServePolicy p : {ServePolicy::Static, ServePolicy::Paged, ServePolicy::Prefix}) {
        std::mt19937_64 rng(7);
        for (int trial = 0; trial < 20; trial++) {
            SchedulerConfig c = config(p, 48, 16, 1 + int(rng() % 4), 3 + int(rng() % 10));
            Scheduler s(c);
            std::vector<int> want;
            int added = 0;
            for (int step = 0; step < 2000 && (added < 30 || !s.idle()); step++) {
                if (added < 30 && rng() % 3 == 0) {
                    const int len = 1 + int(rng() % 10), out = 1 + int(rng() % (16 - len));
                    std::vector<int32_t> prompt;
                    for (int i = 0; i < len; i++) prompt.push_back(int32_t(i < 4 ? 1 : rng() % 5));  // shared starts
                    s.add(prompt, out);
                    want.push_back(len + out);
                    added++;
                }
                if (s.idle()) continue;
                const Scheduler::Plan& plan = s.schedule();
                ASSERT_FALSE(plan.items.empty());
                ASSERT_LE(plan.tokens, c.step_tokens);
                ASSERT_LE(s.held_tokens(), s.reserved_tokens());
                ASSERT_LE(s.reserved_tokens(), c.kv_tokens);
                s.commit(std::vector<int32_t>(size_t(plan.n_logits), 3));
            }
            ASSERT_TRUE(s.idle()) << serve_policy_name(p) << " trial " << trial;
            for (int r = 0; r < s.n_requests(); r++) {
                EXPECT_EQ(int(s.request(r).tokens.size()), want[size_t(r)]);
                EXPECT_TRUE(s.request(r).finished);
            }
            if (s.pool()) {
                EXPECT_EQ(s.pool()->n_referenced(), 0);
            }
            EXPECT_EQ(s.reserved_tokens(), 0);
        }
    }
}

}  // namespace
}  // namespace kvscope
