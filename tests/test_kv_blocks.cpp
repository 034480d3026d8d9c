// Exact tests of the paged cache's bookkeeping: allocation, growth across block boundaries,
// "no room", prefix hashing and reuse, copy-on-write, LRU eviction, reference counts.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "kv/kv_blocks.h"

namespace kvscope {
namespace {

std::vector<int32_t> iota_tokens(int n, int start = 0) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    std::iota(t.begin(), t.end(), start);
    return t;
}

TEST(KvBlockPool, AllocatesFreesAndSaysNoRoom) {
    KvBlockPool pool(3, 4);
    EXPECT_EQ(pool.n_available(), 3);
    const int a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
    EXPECT_EQ(a, 0);
    EXPECT_EQ(b, 1);
    EXPECT_EQ(c, 2);
    EXPECT_EQ(pool.allocate(), -1);
    EXPECT_EQ(pool.n_referenced(), 3);
    pool.ref(b);
    pool.unref(b);
    EXPECT_EQ(pool.refcount(b), 1);
    pool.unref(b);
    EXPECT_EQ(pool.refcount(b), 0);
    EXPECT_EQ(pool.n_available(), 1);
    EXPECT_EQ(pool.allocate(), b);  // the freed block is reused
    EXPECT_THROW(KvBlockPool(0, 4), std::exception);
    EXPECT_THROW(KvBlockPool(4, 0), std::exception);
}

TEST(KvBlockTables, GrowsAcrossBlockBoundaries) {
    KvBlockPool pool(4, 4);
    KvBlockTables t(&pool, 2, 16);
    KvBlockTables::Copy cp{};
    ASSERT_TRUE(t.append(0, 3, &cp));  // slots 0-2: one block
    EXPECT_EQ(cp.src, -1);
    EXPECT_EQ(t.table(0).size(), 1u);
    ASSERT_TRUE(t.append(0, 1, &cp));  // slot 3 fills it
    EXPECT_EQ(t.table(0).size(), 1u);
    ASSERT_TRUE(t.append(0, 1, &cp));  // slot 4 opens a second
    EXPECT_EQ(t.table(0).size(), 2u);
    EXPECT_EQ(t.block_of(0, 4), t.table(0)[1]);
    EXPECT_EQ(t.used(0), 5);
    EXPECT_EQ(t.blocks_needed(0, 3), 0);
    EXPECT_EQ(t.blocks_needed(0, 4), 1);
    // Sequence 1 takes the last two blocks; then nothing fits and nothing changes.
    ASSERT_TRUE(t.append(1, 8, &cp));
    EXPECT_EQ(pool.n_available(), 0);
    EXPECT_FALSE(t.append(0, 4, &cp));
    EXPECT_EQ(t.used(0), 5);
    EXPECT_EQ(t.table(0).size(), 2u);
    EXPECT_TRUE(t.append(0, 3, &cp));  // within its last block: no new block needed
    EXPECT_FALSE(t.append(0, 9, &cp));  // past max_slots
    t.release(0);
    t.release(1);
    EXPECT_EQ(pool.n_available(), 4);
    for (int b = 0; b < 4; b++) EXPECT_EQ(pool.refcount(b), 0);
}

// Sequences growing in turn keep each one's blocks one after another while the pool has room
// (attention then reads each history as one stretch): a sequence's first blocks go to the
// longest run of free blocks (from its start in a fresh pool, else with the room left over
// split before and after them), each later block right after the sequence's last; when that
// one is taken, any free block.
TEST(KvBlockTables, KeepsEachSequencesBlocksTogether) {
    KvBlockPool pool(32, 4);
    KvBlockTables t(&pool, 3, 128);
    KvBlockTables::Copy cp{};
    auto run = [](int from, int n) {
        std::vector<int> r(static_cast<size_t>(n));
        std::iota(r.begin(), r.end(), from);
        return r;
    };
    ASSERT_TRUE(t.append(0, 8, &cp));  // the run [0, 32) starts the pool: 0, 1
    ASSERT_TRUE(t.append(1, 8, &cp));  // [2, 32) leaves 28 blocks of room: from 2 + 28 / 2
    ASSERT_TRUE(t.append(2, 8, &cp));  // [2, 16) is longer than [18, 32): from 2 + 12 / 2
    EXPECT_EQ(t.table(0), run(0, 2));
    EXPECT_EQ(t.table(1), run(16, 2));
    EXPECT_EQ(t.table(2), run(8, 2));
    for (int step = 0; step < 24; step++)  // a token each, in turn: 8 blocks each
        for (int q = 0; q < 3; q++) ASSERT_TRUE(t.append(q, 1, &cp));
    EXPECT_EQ(t.table(0), run(0, 8));
    EXPECT_EQ(t.table(1), run(16, 8));
    EXPECT_EQ(t.table(2), run(8, 8));
    ASSERT_TRUE(t.append(2, 1, &cp));  // block 16 is sequence 1's: another free block
    const int b = t.table(2).back();
    EXPECT_GE(b, 24);
    EXPECT_EQ(pool.refcount(b), 1);
    EXPECT_EQ(pool.n_available(), 32 - 25);
    for (int q = 0; q < 3; q++) t.release(q);
    EXPECT_EQ(pool.n_available(), 32);
    ASSERT_TRUE(t.append(0, 128, &cp));  // the whole pool again, in order from block 0
    EXPECT_EQ(t.table(0), run(0, 32));
}

TEST(KvBlockTables, SharesCachedPrefixBlocks) {
    KvBlockPool pool(8, 4);
    KvBlockTables t(&pool, 3, 32);
    KvBlockTables::Copy cp{};
    const auto a = iota_tokens(10);  // two full blocks and two tokens
    ASSERT_TRUE(t.append(0, 10, &cp));
    t.publish(0, a.data());
    EXPECT_EQ(pool.n_cached(), 2);
    // The same 10 tokens: both full blocks are shared, the rest computed.
    EXPECT_EQ(t.share_prefix(1, a.data(), 10), 8);
    EXPECT_EQ(t.table(1)[0], t.table(0)[0]);
    EXPECT_EQ(t.table(1)[1], t.table(0)[1]);
    EXPECT_EQ(pool.refcount(t.table(0)[0]), 2);
    // A prompt of exactly 8 tokens shares only the first block: its last token must run.
    EXPECT_EQ(t.share_prefix(2, a.data(), 8), 4);
    t.release(2);
    // A different second block shares only the first.
    auto b = a;
    b[5] = 99;
    EXPECT_EQ(t.share_prefix(2, b.data(), 10), 4);
    t.release(2);
    // Same second block's tokens after a different first block: the chain differs, nothing shared.
    auto c = a;
    c[0] = 77;
    EXPECT_EQ(t.share_prefix(2, c.data(), 10), 0);
    t.release(0);
    t.release(1);
    t.release(2);
    EXPECT_EQ(pool.n_available(), 8);
    EXPECT_EQ(pool.n_cached(), 2);  // still findable until evicted
    EXPECT_EQ(t.share_prefix(0, a.data(), 10), 8);
    t.release(0);
    for (int i = 0; i < 8; i++) EXPECT_EQ(pool.refcount(i), 0);
}

TEST(KvBlockPool, HashChainsOverParent) {
    const auto a = iota_tokens(4);
    EXPECT_EQ(kv_block_hash(0, a.data(), 4), kv_block_hash(0, a.data(), 4));
    EXPECT_NE(kv_block_hash(0, a.data(), 4), kv_block_hash(1, a.data(), 4));
    EXPECT_NE(kv_block_hash(0, a.data(), 4), kv_block_hash(0, a.data(), 3));
    // A colliding hash with other tokens is refused at lookup (tokens are compared).
    KvBlockPool pool(2, 4);
    const int blk = pool.allocate();
    ASSERT_TRUE(pool.publish(blk, 42, 0, a.data()));
    const auto other = iota_tokens(4, 100);
    EXPECT_EQ(pool.lookup(42, 0, other.data()), -1);
    EXPECT_EQ(pool.lookup(42, 7, a.data()), -1);
    EXPECT_EQ(pool.lookup(42, 0, a.data()), blk);
    EXPECT_EQ(pool.refcount(blk), 2);
    EXPECT_FALSE(pool.publish(pool.allocate(), 42, 0, a.data()));  // the hash is taken
}

TEST(KvBlockPool, EvictsUnreferencedCachedBlocksLeastRecentlyReleasedFirst) {
    KvBlockPool pool(3, 2);
    KvBlockTables t(&pool, 3, 8);
    KvBlockTables::Copy cp{};
    const auto a = iota_tokens(2, 0), b = iota_tokens(2, 10), c = iota_tokens(2, 20);
    for (int s = 0; s < 3; s++) {
        ASSERT_TRUE(t.append(s, 2, &cp));
        t.publish(s, (s == 0 ? a : s == 1 ? b : c).data());
    }
    const int ba = t.table(0)[0], bb = t.table(1)[0], bc = t.table(2)[0];
    t.release(1);  // b first, then a, then c
    t.release(0);
    t.release(2);
    EXPECT_EQ(pool.n_available(), 3);
    EXPECT_EQ(pool.n_cached(), 3);
    // A hit moves a out of the LRU list; the next allocation evicts b, the oldest release.
    std::vector<int32_t> a3 = {0, 1, 5};
    EXPECT_EQ(t.share_prefix(0, a3.data(), 3), 2);
    EXPECT_EQ(t.table(0)[0], ba);
    EXPECT_EQ(pool.allocate(), bb);
    EXPECT_EQ(pool.evictions(), 1);
    EXPECT_FALSE(pool.cached(bb));
    EXPECT_EQ(pool.n_cached(), 2);
    std::vector<int32_t> b3 = {10, 11, 5};
    EXPECT_EQ(t.share_prefix(1, b3.data(), 3), 0);  // b's prefix is gone
    EXPECT_EQ(pool.allocate(), bc);
    EXPECT_EQ(pool.allocate(), -1);  // a is referenced: no room
    pool.unref(bb);
    pool.unref(bc);
    t.release(0);
    t.release(1);
    for (int i = 0; i < 3; i++) EXPECT_EQ(pool.refcount(i), 0);
}

TEST(KvBlockTables, CopyOnWriteOfASharedPartlyFilledBlock) {
    KvBlockPool pool(6, 4);
    KvBlockTables t(&pool, 2, 16);
    KvBlockTables::Copy cp{};
    ASSERT_TRUE(t.append(0, 6, &cp));  // a full block and half of the next
    t.fork(0, 1);
    const int full = t.table(0)[0], part = t.table(0)[1];
    EXPECT_EQ(pool.refcount(full), 2);
    EXPECT_EQ(pool.refcount(part), 2);
    EXPECT_EQ(t.blocks_needed(1, 1), 1);
    ASSERT_TRUE(t.append(1, 1, &cp));  // writes slot 6 into the shared block: copy first
    EXPECT_EQ(cp.src, part);
    EXPECT_GE(cp.dst, 0);
    EXPECT_NE(cp.dst, part);
    EXPECT_EQ(t.table(1)[1], cp.dst);
    EXPECT_EQ(t.table(1)[0], full);  // the full block stays shared
    EXPECT_EQ(pool.refcount(part), 1);
    ASSERT_TRUE(t.append(0, 1, &cp));  // sequence 0 now owns its block alone: no copy
    EXPECT_EQ(cp.src, -1);
    EXPECT_EQ(t.table(0)[1], part);
    // A fork at a block boundary needs no copy: the next slot opens a new block.
    t.release(1);
    ASSERT_TRUE(t.append(0, 1, &cp));
    t.fork(0, 1);
    ASSERT_TRUE(t.append(1, 1, &cp));
    EXPECT_EQ(cp.src, -1);
    t.release(0);
    t.release(1);
    for (int i = 0; i < 6; i++) EXPECT_EQ(pool.refcount(i), 0);
    EXPECT_EQ(pool.n_available(), 6);
}

TEST(KvBlockTables, CopyOnWriteThatCannotBeServedChangesNothing) {
    KvBlockPool pool(3, 4);
    KvBlockTables t(&pool, 2, 16);
    KvBlockTables::Copy cp{};
    ASSERT_TRUE(t.append(0, 2, &cp));
    t.fork(0, 1);
    EXPECT_FALSE(t.append(0, 10, &cp));  // a copy and two more blocks: one too many
    EXPECT_EQ(t.used(0), 2);
    EXPECT_EQ(pool.refcount(t.table(0)[0]), 2);
    ASSERT_TRUE(t.append(0, 4, &cp));  // slots 2-5: a private copy of the block, then one more
    EXPECT_EQ(cp.dst, t.table(0)[0]);
    EXPECT_EQ(cp.src, t.table(1)[0]);
    EXPECT_EQ(pool.n_available(), 0);
    EXPECT_FALSE(t.append(1, 3, &cp));  // would need a new block: none left
    EXPECT_EQ(t.used(1), 2);
    EXPECT_TRUE(t.append(1, 2, &cp));  // its block is no longer shared: written in place
    EXPECT_EQ(cp.src, -1);
    t.release(0);
    t.release(1);
    EXPECT_EQ(pool.n_available(), 3);
}

}  // namespace
}  // namespace kvscope
