// Bookkeeping of a paged KV cache, with no tensor memory (the bytes live in KvCache): a pool
// of fixed-size blocks with reference counts, a prefix cache of full blocks, and each
// sequence's block table.
//
// A block is `block_tokens` consecutive slots of one sequence. A full block can be published
// in the prefix cache under the hash of (its parent block's hash, its tokens), as vLLM's
// automatic prefix caching does; a later sequence whose tokens start the same way then takes
// those blocks (one more reference each) instead of computing them again. A block whose
// reference count falls to 0 goes back to the free list, or, when it is cached, to the tail
// of an LRU list: its contents stay findable until allocate() needs the block for something
// else (the list's head first). A block shared by several sequences is never written: a
// sequence about to write into a shared, partly filled last block (after fork()) gets a copy
// first (copy-on-write), and the caller copies the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace kvscope {

// FNV-1a over the parent's hash and the block's token ids; the root's parent is 0.
uint64_t kv_block_hash(uint64_t parent, const int32_t* tokens, int n);

class KvBlockPool {
public:
    KvBlockPool(int n_blocks, int block_tokens);

    int n_blocks() const { return int(ref_.size()); }
    int block_tokens() const { return bt_; }
    int refcount(int b) const { return ref_[size_t(b)]; }
    // Blocks allocate() can still hand out: never used or freed, plus cached and unreferenced.
    int n_available() const { return int(free_.size()) + n_lru_; }
    int n_referenced() const { return n_blocks() - n_available(); }
    int n_cached() const { return int(by_hash_.size()); }
    bool cached(int b) const { return hash_set_[size_t(b)]; }
    int64_t evictions() const { return evictions_; }

    // A block with reference count 1, or -1 ("no room") when every block is referenced. A free
    // block first (the most recently freed); else the least recently released cached block,
    // which leaves the cache.
    int allocate();
    // The same, preferring the free block that lets a sequence's blocks lie one after another
    // in the pool, so that attention reads its history as one stretch (docs/KERNELS.md, paged
    // rows): block prev + 1 after a sequence's last block prev. For a sequence's first block
    // (prev < 0), about to take `want` blocks, the longest run of free blocks: from its start
    // when it starts the pool, else with the room the sequence leaves split in two, half before
    // it (for the sequence ending there to grow into) and half after it (for its own growth).
    int allocate_after(int prev, int want = 1);
    void ref(int b);
    void unref(int b);  // to 0: back to the free list, or the LRU list's tail if cached

    // The cached block with this hash holding these tokens after this parent, with one more
    // reference; -1 when there is none.
    int lookup(uint64_t hash, uint64_t parent, const int32_t* tokens);
    // Makes full, referenced block b findable under hash. False (b stays private) when another
    // block already holds that hash or b is already cached.
    bool publish(int b, uint64_t hash, uint64_t parent, const int32_t* tokens);

private:
    void lru_remove(int b);
    void lru_push(int b);
    void uncache(int b);
    void take_free(int b);  // removes free block b from the stack

    int bt_;
    std::vector<int> ref_;
    std::vector<int> free_;             // a stack: the most recently freed block is reused first
    std::vector<int> free_at_;          // each block's index in free_, -1 when not there
    std::vector<int> prev_, next_;      // the LRU list of cached blocks with no reference
    int lru_head_ = -1, lru_tail_ = -1, n_lru_ = 0;
    std::vector<uint64_t> hash_, parent_;
    std::vector<char> hash_set_;
    std::vector<int32_t> tokens_;       // [n_blocks][block_tokens]: a cached block's tokens
    std::unordered_map<uint64_t, int> by_hash_;
    int64_t evictions_ = 0;
};

// Each sequence's block table over a pool: slot s of sequence q lives in block
// table(q)[s / block_tokens] at offset s % block_tokens.
class KvBlockTables {
public:
    KvBlockTables(KvBlockPool* pool, int n_seq, int max_slots);

    struct Copy {
        int src, dst;  // copy block src's bytes to dst before writing into dst
    };

    int n_seq() const { return int(table_.size()); }
    int max_slots() const { return max_slots_; }
    int block_tokens() const { return pool_->block_tokens(); }
    int used(int seq) const { return used_[size_t(seq)]; }
    const std::vector<int>& table(int seq) const { return table_[size_t(seq)]; }
    int block_of(int seq, int slot) const { return table_[size_t(seq)][size_t(slot / pool_->block_tokens())]; }
    const KvBlockPool& pool() const { return *pool_; }

    // On an empty sequence: takes the cached blocks that hold tokens[0, n) from its start, at
    // most n - 1 tokens' worth (the last token must be computed for its logits). Returns the
    // tokens taken (a multiple of block_tokens); the sequence then holds that many slots.
    int share_prefix(int seq, const int32_t* tokens, int n);
    // Room for n more slots: blocks allocated as the sequence crosses block boundaries; a shared
    // last block that the new slots write into is first replaced by a private copy (*copy set;
    // else copy->src = -1). False, nothing changed, when the pool has no room or the sequence
    // would pass max_slots.
    bool append(int seq, int n, Copy* copy);
    // Publishes the sequence's full blocks in the prefix cache; tokens[0, used) are its tokens.
    void publish(int seq, const int32_t* tokens);
    // dst (empty) shares every block of src, including a partly filled last one.
    void fork(int src, int dst);
    // Drops the sequence's references; its blocks return to the pool.
    void release(int seq);
    // Blocks the sequence would need for n more slots (for a scheduler's admission check).
    int blocks_needed(int seq, int n) const;

private:
    KvBlockPool* pool_;
    int max_slots_;
    std::vector<std::vector<int>> table_;
    std::vector<std::vector<uint64_t>> hashes_;  // hashes of the published leading full blocks
    std::vector<int> used_;
};

}  // namespace kvscope
